"""Zero-shot evaluation: caption every test video once, classify the captions with
CLIP-TAM, and report top-1 / top-5 per split and mean ± std over splits.

What is scored: captions of a video captioner (`genact eval --method genact`), or of
an image BLIP on the middle frame (`blip-frame`, a one-frame Decoding), or CLIP
video features against the class text features (`clip`).
Captions are cached on disk per model, decoding settings and video, so scoring the
same videos with other class names or templates generates nothing.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genact import __version__
from genact.config import Decoding
from genact.data.datasets import SkipReport
from genact.data.splits import Split
from genact.distributed import Dist
from genact.errors import DataError
from genact.evaluation.clip_tam import caption_scores, mean_std, per_class_accuracy, topk_accuracy
from genact.inference.captions import Captioner, model_fingerprint
from genact.inference.features import encode_videos
from genact.io import atomic_file
from genact.models.clip import FrozenClip, class_embeddings
from genact.store import EmbeddingCache
from genact.training.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class SplitResult:
    top1: float
    top5: float
    num_videos: int
    class_names: list[str]
    per_class: dict[str, float | None]
    videos: list[dict] = field(default_factory=list)  # video, label, caption, top5
    skipped: list[list[str]] = field(default_factory=list)  # [path, error] of the unreadable videos
    # listed in the split file, not found below the data root
    missing: list[str] = field(default_factory=list)


def score_captions(
    split: Split,
    clip: FrozenClip,
    captioner: Captioner,
    *,
    templates: list[str],
    clip_cache: EmbeddingCache | None = None,
    frames: int = 8,
    progress: bool = True,
    video_cosine: bool = True,
    dist: Dist = Dist(),
) -> tuple[SplitResult, torch.Tensor]:
    """Classify a split's videos by their captions (CLIP-TAM); returns the result and
    the (N, D) caption text features classified. With `video_cosine`, each caption's
    CLIP cosine with its video (`frames` per clip) is recorded too. Under torchrun the
    videos are shared out (`dist`, and the captioner's own) and every process returns
    the whole split's result."""
    report = SkipReport()
    # one decode serves both models when CLIP takes the captioner's frames
    shared = video_cosine and frames == captioner.frames
    captions, known = captioner.caption_and_encode(split.items, report, clip if shared else None)
    done = sorted(captions)
    emb = clip.encode_texts([captions[i] for i in done], clip_cache)
    cosine = {}
    if video_cosine:  # how well each caption describes its video (the report plots it)
        vfeats = encode_videos(
            clip,
            [split.items[i] for i in done],
            frames,
            clip_cache,
            progress=progress,
            dist=dist,
            known={j: known[i] for j, i in enumerate(done) if i in known},
        )
        cosine = {done[j]: float(emb[j] @ f) for j, f in vfeats.items()}
    return _result(split, clip, done, emb, templates, clip_cache, report, captions, cosine), emb


def score_clip_features(
    split: Split,
    clip: FrozenClip,
    *,
    templates: list[str],
    clip_cache: EmbeddingCache | None = None,
    frames: int = 8,
    progress: bool = True,
    dist: Dist = Dist(),
) -> tuple[SplitResult, torch.Tensor]:
    """CLIP zero-shot: classify a split's videos by their CLIP video features (mean of
    `frames` frames) against the class text features; returns the result and the
    (N, D) video features."""
    report = SkipReport()
    feats = encode_videos(
        clip, split.items, frames, clip_cache, report=report, progress=progress, dist=dist
    )
    done = sorted(feats)
    emb = torch.stack([feats[i] for i in done]) if done else torch.zeros(0, clip.dim)
    return _result(split, clip, done, emb, templates, clip_cache, report, {}, {}), emb


def _result(
    split: Split,
    clip: FrozenClip,
    done: list[int],
    emb: torch.Tensor,
    templates: list[str],
    clip_cache: EmbeddingCache | None,
    report: SkipReport,
    captions: dict[int, str],
    cosine: dict[int, float],
) -> SplitResult:
    """The SplitResult of the classified items `done` with embeddings `emb` (N, D)."""
    if not done:
        raise DataError(
            f"none of the {len(split.items)} test videos could be read "
            f"(e.g. {report.skipped[0][1] if report.skipped else split.items[0].path})"
        )
    class_emb = class_embeddings(clip, split.class_names, templates, clip_cache)
    scores = caption_scores(emb, class_emb)
    labels = torch.tensor([split.items[i].label for i in done], dtype=torch.long)
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices.tolist()
    videos = [
        {
            "video": split.items[i].path,
            "label": split.class_names[split.items[i].label],
            "caption": captions.get(i),
            "video_caption_cosine": cosine.get(i),
            "top5": [split.class_names[c] for c in t],
        }
        for i, t in zip(done, top)
    ]
    per_class = dict(
        zip(split.class_names, per_class_accuracy(scores, labels, len(split.class_names)))
    )
    return SplitResult(
        topk_accuracy(scores, labels, 1),
        topk_accuracy(scores, labels, 5),
        len(done),
        list(split.class_names),
        per_class,
        videos,
        [list(s) for s in report.skipped],
        list(split.missing),
    )


def strict_json(obj):
    """`obj` with every NaN or infinity replaced by None, so it dumps as strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def summarise(results: dict[str, SplitResult]) -> dict[str, list[float]]:
    """{"top1": [mean, std], "top5": [mean, std]} over splits (std with ddof=0)."""
    return {k: list(mean_std([getattr(r, k) for r in results.values()])) for k in ("top1", "top5")}


def results_table(results: dict[str, SplitResult], summary: dict[str, list[float]]) -> str:
    """A plain-text table of the splits and the mean ± std."""
    lines = [f"{'split':<12} {'videos':>7} {'top-1':>7} {'top-5':>7}"]
    lines += [
        f"{name:<12} {r.num_videos:>7} {r.top1:>7.2f} {r.top5:>7.2f}" for name, r in results.items()
    ]
    if len(results) > 1:
        (m1, s1), (m5, s5) = summary["top1"], summary["top5"]
        lines.append(
            f"{'mean ± std':<12} {'':>7} {m1:>7.2f} {m5:>7.2f}   (± {s1:.2f} / ± {s5:.2f})"
        )
    return "\n".join(lines)


def save_embeddings(path: Path, embeddings: dict[str, torch.Tensor]) -> None:
    """Classified embeddings per split (float16), for the report's t-SNE."""
    with atomic_file(path) as f:  # replaced whole: `genact report` never reads half a file
        np.savez_compressed(f, **{k: v.half().numpy() for k, v in embeddings.items()})


def evaluate(
    splits: dict[str, Split],
    clip: FrozenClip,
    captioner: Captioner | None,
    *,
    method: str,
    templates: list[str],
    out_dir: Path,
    meta: dict,
    cache_dir: Path | None = None,
    frames: int = 8,
    progress: bool = True,
    dist: Dist = Dist(),
) -> dict:
    """Score every split by its captions (score_captions), or by CLIP video features
    when there is no `captioner` (score_clip_features); write `results.json` and
    `embeddings.npz` to the results folder `out_dir` (the main process), and return
    the results (see docs/evaluation.md for the fields). `method` names what was
    scored in results.json. Under torchrun pass `dist` here and to the captioner:
    each process captions and encodes its share of the videos."""
    for name, split in splits.items():  # before any work: a wrong data root finds nothing
        if not split.items:
            example = f" (e.g. {split.missing[0]})" if split.missing else ""
            raise DataError(
                f"{name}: none of the {len(split.missing)} listed test videos was found{example}; "
                "check the data root"
            )
    clip_cache = (
        EmbeddingCache(cache_dir / "clip" / model_fingerprint(clip.source, {}), clip.dim)
        if cache_dir is not None and clip.source is not None
        else None
    )
    results, embeddings = {}, {}
    for name, split in splits.items():
        common = {
            "templates": templates,
            "clip_cache": clip_cache,
            "frames": frames,
            "progress": progress and dist.main,
            "dist": dist,
        }
        results[name], embeddings[name] = (
            score_captions(split, clip, captioner, **common)
            if captioner
            else score_clip_features(split, clip, **common)
        )
        r = results[name]
        log.info("%s: top-1 %.2f, top-5 %.2f (%d videos)", name, r.top1, r.top5, r.num_videos)
    summary = summarise(results)
    out = {
        **meta,
        "method": method,
        "templates": templates,
        "settings": _settings(clip, captioner, frames),
        "mean_std": summary,
        "splits": {k: vars(v) for k, v in results.items()},
    }
    if dist.main:
        results_dir = RunDir(out_dir)
        results_dir.write_results(json.dumps(strict_json(out), indent=1, allow_nan=False) + "\n")
        save_embeddings(results_dir.embeddings, embeddings)
    out["table"] = results_table(results, summary)
    return out


def evaluate_model(
    model: str | Path,
    tests: dict[str, Split],
    clip: FrozenClip,
    *,
    decoding: Decoding,
    out_dir: Path,
    cache_dir: Path,
    meta: dict,
    templates: list[str] | None = None,
    frames: int | None = None,
    progress: bool = True,
    dist: Dist = Dist(),
) -> dict:
    """`evaluate` the captions of `model` (hub id or directory) with `decoding` on
    `tests`; CLIP's video features (for each caption's cosine) take `frames` frames,
    by default the captioner's. results.json's meta gets the model."""
    captioner = Captioner.load(
        str(model), decoding, cache_dir=cache_dir, device=dist.device, progress=progress, dist=dist
    )
    return evaluate(
        tests,
        clip,
        captioner,
        method="genact",
        templates=templates or ["{}"],
        out_dir=out_dir,
        meta={**meta, "model": str(model)},
        cache_dir=cache_dir,
        frames=frames or captioner.frames,
        progress=progress,
        dist=dist,
    )


def _settings(clip: FrozenClip, captioner: Captioner | None, frames: int) -> dict:
    """What the numbers depend on besides the videos and class names: the genact
    version, CLIP's frames and fingerprint, and the captioner's settings."""
    fingerprint = model_fingerprint(clip.source, {}) if clip.source is not None else None
    return {
        "genact": __version__,
        "clip_frames": frames,
        "clip_fingerprint": fingerprint,
        **({"captioner": captioner.settings} if captioner else {}),
    }


def closing_lines(res: dict, data_root: str | Path) -> list[str]:
    """What `genact eval` says last: listed videos not found, and the unreadable ones
    (`skipped N unreadable video(s), e.g. ...`)."""
    splits = res["splits"].values()
    lines = []
    missing = sum(len(r["missing"]) for r in splits)
    if missing:
        lines.append(
            f"{missing} listed video(s) not found below {data_root} (listed per split in "
            "results.json)"
        )
    report = SkipReport([tuple(s) for r in splits for s in r["skipped"]])
    if report.skipped:
        lines.append(report.summary())
    return lines
