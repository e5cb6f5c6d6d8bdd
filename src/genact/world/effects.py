"""The demo's results and the papers' effects, from one or more seeds' `demo.json`:
top-1 per method, and per effect the mean paired difference with its 95% bootstrap
interval, the McNemar p per seed and a verdict; as text for the terminal and as
Markdown for docs/world.md and the README
(`genact demo --full --markdown docs/world.md --markdown README.md`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from genact.errors import ConfigError
from genact.evaluation.clip_tam import mean_std
from genact.evaluation.stats import Effect, paired_effect
from genact.io import atomic_write_text

ROW_NAMES = {
    "clip": "CLIP zero-shot (video feature vs class names)",
    "frame-captioner": "frame captioner + CLIP-TAM ('BLIP')",
    "rest-h1": "REST without retrieval (H = 1)",
    "rest": "REST",
    "rest-no-adapters": "REST without temporal adapters",
    "regen": "ReGen (from REST)",
    "supervised": "supervised on seen class names ('GAR + class labels')",
    "2-shot": "REST + 2-shot fine-tuning",
    "8-shot": "REST + 8-shot fine-tuning",
}

# (effect as the papers state it, better row, worse row, split)
EFFECTS = (
    ("REST > frame captioner", "rest", "frame-captioner", "unseen"),
    ("REST > REST without retrieval (H = 1)", "rest", "rest-h1", "unseen"),
    ("REST > REST without temporal adapters", "rest", "rest-no-adapters", "unseen"),
    ("ReGen > REST", "regen", "rest", "unseen"),
    ("REST + 2-shot > REST (zero-shot)", "2-shot", "rest", "unseen"),
    ("REST + 8-shot > REST (zero-shot)", "8-shot", "rest", "unseen"),
    ("8-shot > 2-shot", "8-shot", "2-shot", "unseen"),
    (
        "REST > supervised on seen classes, generalized (1-vs-36)",
        "rest",
        "supervised",
        "generalized",
    ),
)
SPLITS = {"unseen": "unseen (1-vs-12)", "generalized": "generalized (1-vs-36)"}


def outcomes(demo: dict, row: str, split: str) -> np.ndarray | None:
    """Right (True) / wrong per test video of one seed's demo.json, in `test_videos`
    order (None when the row or split was not run); a skipped video counts as wrong."""
    got = demo["rows"].get(row, {}).get(split)
    return None if got is None else np.array([c == "1" for c in got["right"]], bool)


def effects(demos: list[dict], draws: int = 10_000) -> list[tuple[str, str, Effect]]:
    """(effect, split, Effect) for every effect whose two rows ran on every seed."""
    out = []
    for label, better, worse, split in EFFECTS:
        a = [outcomes(d, better, split) for d in demos]
        b = [outcomes(d, worse, split) for d in demos]
        if all(x is not None for x in a + b):
            effect = paired_effect(a, b, draws=draws)
            if len(demos) > 1:  # and per seed, on its own test videos
                effect.seed_verdicts = [
                    paired_effect([x], [y], draws=draws).verdict for x, y in zip(a, b)
                ]
            out.append((label, split, effect))
    return out


def _top1(demos: list[dict], row: str, split: str) -> list[float]:
    return [d["rows"][row][split]["top1"] for d in demos if split in d["rows"].get(row, {})]


def results_text(demos: list[dict], seeds: list[int]) -> str:
    """Top-1 per method and split (mean +- std over seeds when there are several)."""
    rows = [r for r in ROW_NAMES if any(r in d["rows"] for d in demos)]
    n = len(demos[0]["test_videos"])
    plural = "s" if len(seeds) > 1 else ""
    head = f"top-1 on the world's unseen test videos ({n} per seed; seed{plural} {seeds})"
    lines = [head, f"{'method':<56}" + "".join(f"{SPLITS[s]:>24}" for s in SPLITS)]
    for r in rows:
        cells = []
        for s in SPLITS:
            v = _top1(demos, r, s)
            m, sd = mean_std(v) if v else (None, None)
            cells.append(
                "" if m is None else (f"{m:.1f} +- {sd:.1f}" if len(v) > 1 else f"{m:.1f}")
            )
        lines.append(f"{ROW_NAMES[r]:<56}" + "".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def report_tables(
    demos: list[dict], found: list[tuple[str, str, Effect]]
) -> list[tuple[str, list[str], list]]:
    """The demo's results (top-1 per method and setting, mean ± std over seeds when
    there are several) and the effects with their intervals, as (title, header, rows)
    tables for the HTML report (genact.evaluation.report.build_report)."""
    rows = []
    for name, label in ROW_NAMES.items():
        if any(name in d["rows"] for d in demos):
            cells = []
            for split in SPLITS:
                values = _top1(demos, name, split)
                m, s = mean_std(values) if values else (None, None)
                cells.append(
                    "-" if m is None else f"{m:.1f}" + (f" ± {s:.1f}" if len(values) > 1 else "")
                )
            rows.append([label, *cells])
    effect_rows = [
        [
            label,
            f"{e.mean:+.1f}",
            f"[{e.low:+.1f}, {e.high:+.1f}]",
            e.verdict,
            ", ".join(f"{p:.2g}" for p in e.p_values),
        ]
        for label, _, e in found
    ]
    return [
        (
            f"The demo: top-1 on the world's unseen test videos ({len(demos)} seed(s))",
            ["method", *SPLITS.values()],
            rows,
        ),
        (
            "The papers' effects in the world",
            ["effect", "difference (points)", "95% interval", "verdict", "McNemar p per seed"],
            effect_rows,
        ),
    ]


def effects_text(found: list[tuple[str, str, Effect]]) -> str:
    lines = [
        "the papers' effects: top-1 difference in points, 95% paired bootstrap interval, McNemar "
        "p per seed",
        f"{'effect':<58}{'difference':>11}{'95% interval':>18}  {'verdict':<14} McNemar p",
    ]
    for label, _, e in found:
        ps = " ".join(f"{p:.2g}" for p in e.p_values)
        lines.append(
            f"{label:<58}{e.mean:>+11.1f}{f'[{e.low:+.1f}, {e.high:+.1f}]':>18}  {e.verdict:<14} "
            f"{ps}" + (f"   (per seed: {e.seed_count()})" if e.seed_verdicts else "")
        )
    return "\n".join(lines)


def markdown(
    demos: list[dict], seeds: list[int], found: list[tuple[str, str, Effect]], command: str
) -> dict[str, str]:
    """{"results": ..., "effects": ...}: the two tables as Markdown, each saying the
    command that wrote it."""
    rows = [r for r in ROW_NAMES if any(r in d["rows"] for d in demos)]
    videos = len(demos[0]["test_videos"])
    made = f"Written by `{command}`: {len(seeds)} seeds, {videos} test videos per seed."
    seed_cols = " | ".join(f"seed {s}" for s in seeds)
    results = [
        made,
        "",
        f"| method | split | {seed_cols} | mean ± std |",
        "| --- | --- | " + "--- | " * len(seeds) + "--- |",
    ]
    for r in rows:
        for s in SPLITS:
            v = _top1(demos, r, s)
            if len(v) == len(demos):
                m, sd = mean_std(v)
                results.append(
                    f"| {ROW_NAMES[r]} | {SPLITS[s]} | "
                    + " | ".join(f"{x:.1f}" for x in v)
                    + f" | {m:.1f} ± {sd:.1f} |"
                )
    effects_md = [
        made,
        "",
        "| effect (papers) | difference (points) | 95% interval | verdict | per seed | verdict per "
        "seed | McNemar p per seed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, _, e in found:
        per_seed = ", ".join(f"{d:+.1f}" for d in e.per_seed)
        ps = ", ".join(f"{p:.2g}" for p in e.p_values)
        effects_md.append(
            f"| {label} | {e.mean:+.1f} | [{e.low:+.1f}, {e.high:+.1f}] | **{e.verdict}** | "
            f"{per_seed} | {e.seed_count()} | {ps} |"
        )
    return {"results": "\n".join(results), "effects": "\n".join(effects_md)}


def markers(block: str) -> tuple[str, str]:
    return (
        f"<!-- genact demo --markdown: {block} -->",
        f"<!-- genact demo --markdown: {block} end -->",
    )


BLOCKS = ("results", "effects")


def marked_blocks(path: Path) -> list[str]:
    """The blocks (of BLOCKS) whose two marker lines `path` has; a missing file, or one
    with no markers, is a ConfigError (checked before a --full run starts)."""
    if not path.is_file():
        raise ConfigError(f"--markdown {path}: no such file")
    text = path.read_text()
    found = [b for b in BLOCKS if all(m in text for m in markers(b))]
    if not found:
        raise ConfigError(
            f"--markdown {path}: no '{markers('results')[0]}' or '{markers('effects')[0]}' "
            "marker lines to write between"
        )
    return found


def write_markdown(path: Path, blocks: dict[str, str]) -> list[str]:
    """Replace, in `path`, the text between each block's markers (see `markers`) with
    that block; returns the blocks written (see marked_blocks)."""
    written = marked_blocks(path)
    text = path.read_text()
    for name in written:
        begin, end = markers(name)
        pattern = re.escape(begin) + ".*?" + re.escape(end)
        text = re.sub(pattern, lambda _: f"{begin}\n{blocks[name]}\n{end}", text, flags=re.S)
    atomic_write_text(path, text)
    return written
