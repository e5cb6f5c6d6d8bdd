"""What a finished run leaves for people: its report (unreadable videos, merged over
processes) and summary (what was trained on, each epoch's last logged training
values, REST's retrieval rounds, the skipped videos)."""

from __future__ import annotations

from typing import Any

from genact.training.metrics import Metrics, loss_rose
from genact.training.rundir import RunDir

# train-record fields that are bookkeeping, not a measurement of the epoch
_NOT_SHOWN = ("kind", "step", "time", "epoch", "lr", "videos_per_s")


def write_report(run_dir: RunDir) -> list[dict]:
    """Merge every process's unreadable-video records into the run's report."""
    rows = run_dir.skipped_log().read_all()
    merged: dict[str, dict] = {}
    for r in rows:
        entry = merged.setdefault(r["path"], {"path": r["path"], "error": r["error"], "stages": []})
        if r["stage"] not in entry["stages"]:
            entry["stages"].append(r["stage"])
    skipped = sorted(merged.values(), key=lambda e: e["path"])
    run_dir.write_report(skipped)
    return skipped


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def epoch_table(train_records: list[dict]) -> str:
    """The last logged values of each epoch: the loss and whatever else the trainer
    logs (ReGen: each reward's mean and spread, the advantage spread, caption stats)."""
    last = {r["epoch"]: r for r in train_records}
    keys = [k for k in dict.fromkeys(k for r in last.values() for k in r) if k not in _NOT_SHOWN]
    rows = [
        [e + 1] + [f"{r[k]:.4f}" if isinstance(r.get(k), float) else r.get(k, "") for k in keys]
        for e, r in sorted(last.items())
    ]
    return markdown_table(["epoch", *keys], rows)


def _rounds_table(rounds: list[dict]) -> str:
    return markdown_table(
        [
            "round",
            "neighbours",
            "videos changed",
            "new captions",
            "mean cosine",
            "distinct captions",
            "init / retrieved / generated",
        ],
        [
            [
                r["step"],
                r["neighbours_used"],
                r["videos_changed"],
                r["captions_new"],
                r["mean_cosine"],
                r["distinct_captions"],
                f"{r.get('captions_init', 0)} / {r.get('captions_retrieved', 0)} / "
                f"{r.get('captions_generated', 0)}",
            ]
            for r in rounds
        ],
    )


def divergence_note(train_records: list[dict]) -> str | None:
    """A warning when the logged caption loss ended far above where it started."""
    losses = [r["loss"] for r in train_records if isinstance(r.get("loss"), (int, float))]
    if len(losses) > 1 and loss_rose(losses[0], losses[-1]):
        return (
            f"**Warning: the training loss rose from {losses[0]:.4f} to {losses[-1]:.4f}** (more "
            "than twice its "
            "first logged value): the run has probably diverged and its model is not to be "
            "trusted; try a lower "
            "optim.lr."
        )
    return None


def write_summary(
    run_dir: RunDir,
    cfg,
    seconds: float,
    num_videos: int,
    num_trained: int,
    *,
    loss_should_fall: bool = True,
) -> None:
    """summary.md: what was trained on, each epoch's training values, each retrieval
    round (REST), skipped videos; a warning first when a caption loss rose (see
    divergence_note)."""
    metrics = Metrics(run_dir, enabled=False)
    skipped = write_report(run_dir)
    lines = [
        f"# Run summary: {run_dir.name}",
        "",
        f"- videos in the split: {num_videos}; trained on: {num_trained}; unreadable: "
        f"{len(skipped)}",
        f"- epochs: {cfg.optim.epochs}; global batch {cfg.optim.global_batch}; lr {cfg.optim.lr} "
        "-> "
        f"{cfg.optim.min_lr}; time {seconds / 60:.1f} min (since the last start, if resumed)",
        f"- final model: `{run_dir.final}`",
        "",
    ]
    train = metrics.read("train")
    note = divergence_note(train) if loss_should_fall else None
    if note:
        lines[1:1] = [note, ""]
    if train:
        lines += ["## Training (last logged values of each epoch)", "", epoch_table(train), ""]
    rounds = metrics.read("round")
    if rounds:
        lines += ["## Retrieval rounds", "", _rounds_table(rounds), ""]
    if skipped:
        lines += ["## Unreadable videos (skipped)", ""]
        lines += [f"- `{s['path']}` ({', '.join(s['stages'])}): {s['error']}" for s in skipped[:50]]
        lines += [
            f"- ... {len(skipped) - 50} more in {run_dir.report.name}" if len(skipped) > 50 else "",
            "",
        ]
    run_dir.write_summary("\n".join(lines).rstrip() + "\n")
