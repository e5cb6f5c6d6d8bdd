"""CLIP feature loops over videos: features of any list of videos (optionally
cached), and the sharded, resumable stage that REST and ReGen runs use (each process
encodes its share into its own cache; every process reads all of them back)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from genact.console import progress_bar
from genact.data.datasets import SkipReport, VideoDataset, VideoItem, iterate, make_loader, video_id
from genact.distributed import Dist, all_gather, barrier, shard
from genact.inference.processing import clip_transform
from genact.models.clip import FrozenClip
from genact.store import EmbeddingCache

log = logging.getLogger(__name__)


def encode_videos(
    clip: FrozenClip,
    items: list[VideoItem],
    num_frames: int = 8,
    cache: EmbeddingCache | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    report: SkipReport | None = None,
    progress: bool = True,
    dist: Dist = Dist(),
    known: dict[int, torch.Tensor] | None = None,
) -> dict[int, torch.Tensor]:
    """CLIP video features of `items` (eval sampling). Returns {item index: (D,)};
    unreadable videos are absent and recorded in `report`. With `dist`, each process
    encodes its share and every process gets all the features and skips back.
    `known` features (computed from the same frames elsewhere: Captioner.
    caption_and_encode) are taken as they are, and cached like computed ones."""
    report = report if report is not None else SkipReport()
    known = known or {}
    if dist.enabled:
        mine = shard(list(range(len(items))), dist)
        own = SkipReport()
        feats = encode_videos(
            clip,
            [items[i] for i in mine],
            num_frames,
            cache,
            batch_size,
            num_workers,
            own,
            progress and dist.main,
            known={j: known[i] for j, i in enumerate(mine) if i in known},
        )
        shares = all_gather(({mine[j]: f for j, f in feats.items()}, own.skipped), dist)
        report.skipped.extend(tuple(s) for _, skipped in shares for s in skipped)
        return {i: f for part, _ in shares for i, f in part.items()}
    keys = [video_id(it, num_frames) for it in items]
    feats: dict[int, torch.Tensor] = dict(known)
    new = [i for i in known if cache is not None and keys[i] not in cache]
    if new:
        cache.put([keys[i] for i in new], torch.stack([known[i] for i in new]))
    todo = [i for i, k in enumerate(keys) if i not in known and (cache is None or k not in cache)]
    if todo:
        dataset = VideoDataset([items[i] for i in todo], num_frames, clip_transform(clip))
        loader = make_loader(dataset, batch_size, num_workers)
        for batch in progress_bar(
            iterate(loader, report), total=len(loader), desc="CLIP video features", enabled=progress
        ):
            f = clip.video_features(batch["pixels"]).cpu()
            idx = [todo[j] for j in batch["index"].tolist()]
            if cache is not None:
                cache.put([keys[i] for i in idx], f)
            feats.update(zip(idx, f))
    if cache is not None:
        done = [i for i, k in enumerate(keys) if k in cache]
        feats.update(zip(done, cache.get([keys[i] for i in done])))
    return feats


def video_feature_stage(
    clip: FrozenClip,
    root: Path,
    items: list[VideoItem],
    *,
    num_frames: int,
    dist: Dist,
    report: SkipReport,
    dtype: str = "float16",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """CLIP video features {item index: (D,)} for every readable item, computed once
    (per-process caches root/rank<r>/) and read back by every process; this process's
    unreadable videos go to `report`."""
    keys = [video_id(it, num_frames) for it in items]
    done = stored_keys(root, clip.dim, dtype, dist)
    todo = shard([i for i, k in enumerate(keys) if k not in done], dist)
    own = EmbeddingCache(root / f"rank{dist.rank}", clip.dim, dtype)
    encode_videos(
        clip,
        [items[i] for i in todo],
        num_frames,
        own,
        batch_size,
        num_workers,
        report,
        progress and dist.main,
    )
    barrier(dist)
    vectors, found = read_rank_caches(root, clip.dim, dtype, keys)
    log.info("CLIP video features: %d of %d videos", int(found.sum()), len(items))
    return {i: vectors[i] for i in found.nonzero().flatten().tolist()}


def stored_keys(root: Path, dim: int, dtype: str, dist: Dist) -> set[str]:
    """The keys in every process's cache under root/rank*/, read by all processes
    before any of them writes."""
    done: set[str] = set()
    for sub in sorted(root.glob("rank*")):
        done.update(EmbeddingCache(sub, dim, dtype).rows)
    barrier(dist)
    return done


def read_rank_caches(
    root: Path, dim: int, dtype: str, keys: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The vectors of `keys` from every process's cache under root/rank*/: float32
    (len(keys), dim) (zeros where absent) and a bool (len(keys),) mask of those found."""
    vectors, found = torch.zeros(len(keys), dim), torch.zeros(len(keys), dtype=torch.bool)
    where: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        where.setdefault(k, []).append(i)
    for sub in sorted(root.glob("rank*")):
        cache = EmbeddingCache(sub, dim, dtype)
        names = [k for k in cache.rows if k in where]
        pos = [i for k in names for i in where[k]]
        vectors[pos] = cache.get([k for k in names for _ in where[k]])
        found[pos] = True
    return vectors, found
