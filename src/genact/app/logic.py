"""What the web app shows, as plain functions over genact's library (no model or data
code of its own): a video's frames, captions and top-5 classes; a run's config,
curves, per-video caption history and an evaluation's per-class accuracy."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from genact.classifier import VideoClassifier
from genact.config import check_template
from genact.data import read_video, video_duration
from genact.data.splits import readable_name
from genact.errors import GenactError
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir

VIEW_SIDE = 160  # frames are shown at least this tall (the miniature world's are 32 px)


@dataclass
class Models:
    """The captioner with CLIP (a VideoClassifier), and the image captioner that
    describes the middle frame (a one-frame VideoClassifier of the image model)."""

    video: VideoClassifier
    image: VideoClassifier

    @classmethod
    def load(
        cls,
        model: str,
        image_model: str,
        clip: str,
        prompt: str | None = None,
        *,
        cache_dir: str | Path | None = None,
    ) -> "Models":
        common = {
            "device": "cpu" if not torch.cuda.is_available() else "auto",
            "prompt": prompt,
            "cache_dir": cache_dir,
        }
        video = VideoClassifier.from_pretrained(model, clip, **common)
        return cls(video, VideoClassifier.from_pretrained(image_model, None, frames=1, **common))


def upscale(frame: np.ndarray, side: int = VIEW_SIDE) -> np.ndarray:
    """A uint8 (H, W, 3) frame enlarged by a whole factor (nearest) to at least `side` tall."""
    k = max(1, -(-side // frame.shape[0]))
    return frame.repeat(k, axis=0).repeat(k, axis=1)


def parse_classes(text: str) -> list[str]:
    """Class names typed one per line (blank lines dropped); an error if none or repeated."""
    names = [readable_name(ln) for ln in text.splitlines() if ln.strip()]
    if not names:
        raise GenactError("type at least one class name, one per line")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise GenactError(f"class name(s) given more than once: {', '.join(repeated)}")
    return names


# seconds: an upload longer than LONG_VIDEO also gets a timeline of TIMELINE_WINDOW windows
LONG_VIDEO, TIMELINE_WINDOW = 30.0, 10.0


def try_video(
    models: Models,
    path: str,
    class_text: str,
    template: str = "{}",
    *,
    frames: int = 8,
    beams: int = 3,
) -> dict:
    """Caption a video with the video model and its middle frame with the image model,
    and classify the video caption into the typed classes (CLIP-TAM), through
    genact.VideoClassifier as `genact classify` does. Returns frames (T uint8 images),
    both captions, the top-5 {class: cosine} (best first), and for a video longer
    than LONG_VIDEO seconds a timeline: [start, end, caption, best class, cosine] rows
    of TIMELINE_WINDOW-second windows."""
    names = parse_classes(class_text)
    template = check_template(template.strip() or "{}")
    clip_frames = read_video(path, frames)  # a VideoDecodeError names the file
    clf = models.video.with_decoding(frames=frames, beams=beams, max_new_tokens=20)
    row = clf(path, candidate_labels=names, template=template, top_k=min(5, len(names)))
    if "error" in row:
        raise GenactError(row["error"])
    image = models.image.with_decoding(beams=beams, max_new_tokens=20).caption(path)
    timeline = []
    if video_duration(path) > LONG_VIDEO:
        segments = clf(path, names, template, top_k=1, window=TIMELINE_WINDOW).get("segments", [])
        timeline = [
            [s["start"], s["end"], s["caption"], s["labels"][0], round(s["scores"][0], 4)]
            for s in segments
        ]
    return {
        "frames": [upscale(f) for f in clip_frames],
        "video_caption": row["caption"],
        "image_caption": image.get("caption", ""),
        "top5": {name: round(score, 4) for name, score in zip(row["labels"], row["scores"])},
        "timeline": timeline,
    }


# ---- looking inside runs ----------------------------------------------------------
def confine(root: str | Path, path: str | Path) -> Path:
    """`path` (relative paths are taken below `root`) as a real path inside the runs
    folder `root`; anything else, links that lead out included, is a GenactError.
    The page reads nothing outside the folder it was given."""
    base = Path(os.path.realpath(root))
    real = Path(os.path.realpath(base / path))
    if real != base and base not in real.parents:
        raise GenactError(f"{path}: outside the runs folder this app serves ({base})")
    return real


def find_runs(root: str | Path) -> list[str]:
    """Run directories and evaluation results folders below `root`."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = {
        p
        for p in [root, *(d for d in root.rglob("*") if d.is_dir())]
        if RunDir(p).is_run() or RunDir(p).has_results()
    }
    return sorted(str(p) for p in found)


def no_runs_message(root: str | Path) -> str:
    """What the run tab says when `root` holds no run or evaluation ("" when it does)."""
    return "" if find_runs(root) else f"No runs or evaluations below `{root}` yet."


def run_kind(path: str | Path) -> str:
    run = RunDir(path)
    if run.has_results():
        return "evaluation"
    if run.has_banks():
        return "REST"
    if not run.is_run():
        raise GenactError(
            f"{run.path}: not a genact run (no config) nor an evaluation (no results)"
        )
    return "ReGen" if "regen" in run.read_config() else "supervised"


def run_config(path: str | Path) -> str:
    """A run's config, or an evaluation's summary: its settings and top-1 / top-5,
    without the per-video lists (40,000 videos would be megabytes of text)."""
    run = RunDir(path)
    if run.is_run():
        return run.config_text()
    res = run.read_results()
    keep = ("top1", "top5", "num_videos")
    res["splits"] = {k: {f: v[f] for f in keep if f in v} for k, v in res["splits"].items()}
    return yaml.safe_dump(res, sort_keys=False, allow_unicode=True)


def curves_figure(path: str | Path):
    """A matplotlib figure: training loss and learning rate by step, ReGen's rewards,
    REST's per-round bank statistics; None when the run logged nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = Metrics(path, enabled=False)
    train, rounds = metrics.read("train"), metrics.read("round")
    if not train:
        return None
    rewards = sorted(
        {k for r in train for k in r if k.startswith("reward") and not k.endswith("_std")}
    )
    panels = [("loss", ["loss"]), ("learning rate", ["lr"])] + (
        [("rewards", rewards)] if rewards else []
    )
    panels += [("bank by round", ["mean_cosine"])] if rounds else []
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        records = rounds if title == "bank by round" else train
        for key in keys:
            ax.plot(
                [r["step"] for r in records],
                [r.get(key, np.nan) for r in records],
                marker=".",
                label=key,
            )
        ax.set_title(title)
        ax.set_xlabel("REST round" if title == "bank by round" else "optimizer step")
        ax.set_ylabel(
            {
                "loss": "training loss",
                "learning rate": "learning rate",
                "rewards": "mean reward",
                "bank by round": "mean video-caption cosine",
            }[title]
        )
        if len(keys) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def bank_videos(path: str | Path, limit: int = 2000) -> list[str]:
    """The first `limit` training videos of a REST run (round 0's bank); others can be
    typed into the page's box."""
    run = RunDir(path)
    return run.bank(0).keys[:limit] if run.has_bank(0) else []


def caption_history(path: str | Path, video: str) -> list[list]:
    """Rows [round, caption, source, round made, CLIP score] of `video` in every round's bank."""
    rows = []
    run = RunDir(path)
    for r in run.bank_rounds():
        bank = run.bank(r)
        if video in bank.keys:
            rows += [
                [
                    r,
                    bank.texts[c.text_id],
                    c.source,
                    c.round,
                    None if math.isnan(c.score) else round(c.score, 6),
                ]
                for c in bank.entries[bank.keys.index(video)]
            ]
    return rows


def video_frames(run: str | Path, video: str, frames: int = 8) -> list[np.ndarray]:
    """A training video's T eval frames, enlarged for the page ([] if unreadable). Only
    a video that the run trained on (its round-0 bank) is read: the page opens no other
    file. A relative path is relative to where the run was started: the run
    directory's nearest parent folder that has it."""
    if not RunDir(run).has_bank(0) or video not in RunDir(run).bank(0).keys:
        raise GenactError(f"{video}: not a training video of {run}")
    path = Path(video.split("|")[0])
    if not path.is_absolute():
        path = next((p / path for p in Path(run).resolve().parents if (p / path).exists()), path)
    try:
        return [upscale(f) for f in read_video(path, frames)]
    except GenactError:
        return []


def per_class(path: str | Path, worst: int = 3) -> tuple[list[list], list[list]]:
    """An evaluation's per-class top-1 (worst first) and, for its `worst` classes,
    example videos with their captions and top-5: ([split, class, top-1], [split, class,
    video, caption, top-5])."""
    res = RunDir(path).read_results()
    table, examples = [], []
    for split, r in res["splits"].items():
        scored = sorted((acc, name) for name, acc in r["per_class"].items() if acc is not None)
        table += [[split, name, round(acc, 2)] for acc, name in scored]
        for _, name in scored[:worst]:
            examples += [
                [split, name, v["video"], v["caption"], ", ".join(v["top5"])]
                for v in r["videos"]
                if v["label"] == name
            ][:2]
    return table, examples
