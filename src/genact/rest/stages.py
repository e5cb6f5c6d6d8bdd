"""REST's stages around training (Algorithm 1, steps 1-4 and 6), each resumable and
shared out over torchrun processes.

Captioning and CLIP video features are split over processes (every world-th video)
and recorded as they go: captions as per-process JSON lines, features in per-process
embedding caches. A killed run redoes at most one chunk; the results are read back
in video order, so they do not depend on the number of processes. Text features,
neighbours and the retrieval update run on the main process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from genact.data.datasets import SkipReport, VideoItem
from genact.distributed import Dist, barrier, shard
from genact.io import ShardLog
from genact.models.cache import EmbeddingCache
from genact.models.clip import FrozenClip, encode_videos, video_key
from genact.rest.bank import GENERATED, CaptionBank
from genact.rest.retrieval import approximate_neighbours, retrieval_update, video_neighbours

CaptionFn = Callable[[list[VideoItem], SkipReport], dict[int, list[str]]]


def log_skipped(run_dir: Path, d: Dist, stage: str, report: SkipReport, start: int = 0) -> None:
    """Record report.skipped[start:] in the run's list of unreadable videos."""
    new = report.skipped[start:]
    if new:
        ShardLog(run_dir / "logs", "skipped", d.rank).append(
            [{"stage": stage, "path": p, "error": e} for p, e in new]
        )


def caption_stage(
    name: str,
    run_dir: Path,
    items: list[VideoItem],
    indices: list[int],
    caption_fn: CaptionFn,
    d: Dist,
    chunk: int = 1024,
    progress: bool = True,
) -> dict[int, list[str]]:
    """Captions of items[i] for i in `indices`, {i: captions}, made by
    `caption_fn(items, report) -> {position: captions}` in chunks, each process on its
    share; videos that fail are recorded once and absent from the result."""
    records = ShardLog(run_dir / "captions", name, d.rank)
    done = {r["index"] for r in records.read_all()}
    barrier(d)  # every process has read before any writes
    todo = shard([i for i in indices if i not in done], d)
    bar = tqdm(total=len(todo), desc=f"captions ({name})", disable=not (progress and d.main))
    for s in range(0, len(todo), chunk):
        part = todo[s : s + chunk]
        report = SkipReport()
        caps = caption_fn([items[i] for i in part], report)
        errors = dict(report.skipped)
        rows = [
            {"index": i, "captions": caps[j]} if j in caps else {"index": i, "error": errors.get(items[i].path, "no caption")}
            for j, i in enumerate(part)
        ]
        records.append(rows)
        log_skipped(run_dir, d, f"captions {name}", report)
        bar.update(len(part))
    bar.close()
    barrier(d)
    return {r["index"]: r["captions"] for r in sorted(records.read_all(), key=lambda r: r["index"]) if "captions" in r}


def video_feature_stage(
    clip: FrozenClip,
    run_dir: Path,
    items: list[VideoItem],
    num_frames: int,
    d: Dist,
    dtype: str = "float16",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """CLIP video features {item index: (D,)} for every readable item, computed once
    (per-process caches under features/videos/) and read back by every process."""
    root = run_dir / "features" / "videos"
    keys = [video_key(it, num_frames) for it in items]
    done: set[str] = set()
    for sub in sorted(root.glob("rank*")):
        done.update(EmbeddingCache(sub, clip.dim, dtype).rows)
    barrier(d)
    todo = shard([i for i, k in enumerate(keys) if k not in done], d)
    own = EmbeddingCache(root / f"rank{d.rank}", clip.dim, dtype)
    report = SkipReport()
    encode_videos(clip, [items[i] for i in todo], num_frames, own, batch_size, num_workers, report,
                  progress and d.main)
    log_skipped(run_dir, d, "CLIP video features", report)
    barrier(d)
    feats: dict[int, torch.Tensor] = {}
    where = {k: i for i, k in enumerate(keys)}
    for sub in sorted(root.glob("rank*")):
        cache = EmbeddingCache(sub, clip.dim, dtype)
        names = [k for k in cache.rows if k in where]
        feats.update(zip((where[k] for k in names), cache.get(names)))
    return feats


def neighbour_stage(run_dir: Path, feats: torch.Tensor, h: int, device: torch.device, progress: bool,
                    index: str = "exact", nprobe: int = 64) -> np.ndarray:
    """Top-h neighbours (N, h) int32, computed once into `neighbours.npy` (memory-mapped);
    index: exact (`video_neighbours`) or faiss-ivf (`approximate_neighbours`)."""
    path = run_dir / "neighbours.npy"
    h = min(h, feats.shape[0])
    if path.exists():
        saved = np.load(path, mmap_mode="r")
        if saved.shape == (feats.shape[0], h):
            return saved
    tmp = path.with_name(".neighbours.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(feats.shape[0], h))
    if index == "exact":
        video_neighbours(feats, h, device, out=out, progress=progress)
    else:
        approximate_neighbours(feats, h, nprobe, out=out, progress=progress)
    out.flush()
    del out
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def retrieval_stage(
    bank: CaptionBank,
    round_no: int,
    video_feats: torch.Tensor,
    neighbours: np.ndarray,
    h: int,
    clip: FrozenClip,
    text_cache: EmbeddingCache,
    keep: int,
    device: torch.device,
    progress: bool = True,
) -> dict[str, float]:
    """Eqs. 5-6 on the bank: encode captions not seen before, keep each video's top
    `keep` among its own and its first `h` neighbours' captions. Returns the round's
    metrics: videos whose list changed, captions new to their video's list (the
    model's new captions included), mean video-caption cosine, distinct texts."""
    text_feats = clip.encode_texts(bank.texts, text_cache, progress=progress)
    before = [{c.text_id for c in e if not (c.source == GENERATED and c.round == round_no)} for e in bank.entries]
    ids, scores = retrieval_update(neighbours[:, :h], bank.padded(), video_feats, text_feats, keep, device,
                                   progress=progress)
    changed = bank.apply_retrieval(ids, scores, round_no)
    kept = scores[torch.isfinite(scores)]
    return {
        "videos_changed": changed,
        "captions_new": sum(len({c.text_id for c in e} - b) for e, b in zip(bank.entries, before)),
        "mean_cosine": round(float(kept.mean()), 5) if kept.numel() else float("nan"),
        "distinct_captions": len(bank.texts),
    }
