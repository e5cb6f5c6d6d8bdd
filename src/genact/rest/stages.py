"""REST's stages around training (Algorithm 1, steps 1-4 and 6), each resumable and
shared out over torchrun processes.

Captioning and CLIP video features are split over processes (every world-th video)
and recorded as they go: captions as per-process JSON lines, features in per-process
embedding caches. A killed run redoes at most one chunk; the results are read back
in video order, so they do not depend on the number of processes. CLIP text
features are shared out the same way. The neighbour search and the retrieval update
give each process a contiguous block of videos, scored against all N videos or all M
texts: neighbour rows go straight into one memory-mapped file (the run directory is
shared, as for the captions), the update's rows are gathered on the main process,
which applies them to the caption bank.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

import numpy as np
import torch

from genact.console import progress_bar
from genact.data.datasets import SkipReport, VideoItem, video_id
from genact.distributed import Dist, barrier, block, gather_to_main, shard
from genact.inference.features import read_rank_caches, stored_keys
from genact.models.clip import FrozenClip
from genact.rest.retrieval import approximate_neighbours, retrieval_update, video_neighbours
from genact.store import EmbeddingCache
from genact.training.bank import GENERATED, CaptionBank
from genact.training.rundir import RunDir

log = logging.getLogger(__name__)
CaptionFn = Callable[[list[VideoItem], SkipReport], dict[int, list[str]]]


def caption_stage(
    name: str,
    run_dir: RunDir,
    items: list[VideoItem],
    indices: list[int],
    *,
    caption_fn: CaptionFn,
    dist: Dist,
    chunk: int = 1024,
    progress: bool = True,
) -> dict[int, list[str]]:
    """Captions of items[i] for i in `indices`, {i: captions}, made by
    `caption_fn(items, report) -> {position: captions}` in chunks, each process on its
    share; videos that fail are recorded once and absent from the result. Records are
    keyed by video (`video_id`), so a resumed stage matches them to videos, not to
    list positions."""
    records = run_dir.caption_records(name, dist.rank)
    done = {
        r["video"] for r in records.read_all() if "video" in r
    }  # (older records, by index, are redone)
    barrier(dist)  # every process has read before any writes
    todo = shard([i for i in indices if video_id(items[i]) not in done], dist)
    bar = progress_bar(total=len(todo), desc=f"captions ({name})", enabled=progress and dist.main)
    for s in range(0, len(todo), chunk):
        part = todo[s : s + chunk]
        report = SkipReport()
        caps = caption_fn([items[i] for i in part], report)
        errors = dict(report.skipped)
        rows = [
            {
                "video": video_id(items[i]),
                **(
                    {"captions": caps[j]}
                    if j in caps
                    else {"error": errors.get(items[i].path, "no caption")}
                ),
            }
            for j, i in enumerate(part)
        ]
        records.append(rows)
        report.save(run_dir.skipped_log(dist.rank), f"captions {name}")
        bar.update(len(part))
    bar.close()
    barrier(dist)
    captions = {
        r["video"]: r["captions"] for r in records.read_all() if "captions" in r and "video" in r
    }
    out = {i: captions[video_id(items[i])] for i in indices if video_id(items[i]) in captions}
    log.info("captions (%s): %d of %d videos captioned", name, len(out), len(indices))
    return out


def text_feature_stage(
    clip: FrozenClip,
    run_dir: RunDir,
    texts: list[str],
    *,
    dist: Dist,
    dtype: str = "float16",
    progress: bool = True,
) -> torch.Tensor:
    """CLIP text features (M, D) float32 of `texts`; each distinct text is encoded once
    over all rounds, by one process (per-process caches under RunDir.text_features)."""
    root = run_dir.text_features
    done = stored_keys(root, clip.dim, dtype, dist)
    todo = shard([t for t in dict.fromkeys(texts) if t not in done], dist)
    clip.cache_texts(
        todo,
        EmbeddingCache(root / f"rank{dist.rank}", clip.dim, dtype),
        progress=progress and dist.main,
    )
    barrier(dist)
    return read_rank_caches(root, clip.dim, dtype, texts)[0]


def neighbour_stage(
    run_dir: RunDir,
    feats: torch.Tensor,
    h: int,
    *,
    dist: Dist,
    progress: bool,
    index: str = "exact",
    nprobe: int = 64,
) -> np.ndarray:
    """Top-h neighbours (N, h) int32, computed once into RunDir.neighbours (memory-mapped),
    each process filling its block of rows; index: exact (`video_neighbours`) or
    faiss-ivf (`approximate_neighbours`). Every process returns the whole array."""
    path = run_dir.neighbours
    n, h = feats.shape[0], min(h, feats.shape[0])
    if path.exists():
        saved = np.load(path, mmap_mode="r")
        if saved.shape == (n, h):
            return saved
    tmp = path.with_name(".neighbours.tmp.npy")
    if dist.main:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(n, h)).flush()
    barrier(dist)
    out = np.load(tmp, mmap_mode="r+")
    if index == "exact":
        video_neighbours(feats, h, dist.device, out=out, progress=progress, rows=block(n, dist))
    else:
        approximate_neighbours(feats, h, nprobe, out=out, progress=progress, rows=block(n, dist))
    out.flush()
    del out
    barrier(dist)
    if dist.main:
        os.replace(tmp, path)
    barrier(dist)
    return np.load(path, mmap_mode="r")


def retrieval_stage(
    bank: CaptionBank,
    round_no: int,
    video_feats: torch.Tensor,
    neighbours: np.ndarray,
    *,
    h: int,
    clip: FrozenClip,
    run_dir: RunDir,
    keep: int,
    dist: Dist,
    feature_dtype: str = "float16",
    progress: bool = True,
) -> dict[str, float] | None:
    """Eqs. 5-6 on the bank (every process holds the same bank): encode captions not
    seen before, keep each video's top `keep` among its own and its first `h`
    neighbours' captions. The main process applies the update to `bank` and returns
    the round's metrics: videos whose list changed, captions new to their video's
    list (the model's new captions included), mean video-caption cosine, distinct
    texts. The other processes return None and leave their bank as it was."""
    text_feats = text_feature_stage(
        clip, run_dir, bank.texts, dist=dist, dtype=feature_dtype, progress=progress
    )
    ids, scores = retrieval_update(
        neighbours[:, :h],
        bank.padded(),
        video_feats,
        text_feats,
        keep,
        dist.device,
        progress=progress,
        rows=block(len(bank.entries), dist),
    )
    parts = gather_to_main((ids, scores), dist)
    if parts is None:
        return None
    ids, scores = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    before = [
        {c.text_id for c in e if not (c.source == GENERATED and c.round == round_no)}
        for e in bank.entries
    ]
    changed = bank.apply_retrieval(ids, scores, round_no)
    kept = scores[torch.isfinite(scores)]
    return {
        "videos_changed": changed,
        "captions_new": sum(len({c.text_id for c in e} - b) for e, b in zip(bank.entries, before)),
        "mean_cosine": round(float(kept.mean()), 5) if kept.numel() else float("nan"),
        "distinct_captions": len(bank.texts),
    }
