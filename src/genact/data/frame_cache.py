"""`genact cache-frames`: every video's T eval frames, decoded once into shards.

REST trains R epochs per round and re-captions every video per round; with the
cache each of those passes reads T small JPEGs (or raw uint8 frames) per video
instead of demuxing and decoding the video again.

A cache directory holds:

    meta.json                 {"version", "num_frames", "short_side", "format", "quality"}
    shard-r000-00000.bin      the frames of up to `shard_videos` videos, back to back
    shard-r000-00000.json     per video: key, the source's size and mtime, byte offsets, (H, W)

Process r of a torchrun job writes the shards named r<r>. A shard's .json is
written atomically after its .bin is complete, and a .bin without one is dropped,
so a killed build resumes with the videos not yet in a finished shard.

Frames are stored at the eval positions (segment centres) resized so that the
shorter side is `short_side`; training on the cache keeps the spatial augmentation
but not the random frame inside each segment. Runs use a cache only when its T and
short side are the ones they need, and per video only while the source file has
the size and modification time it had when cached.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from genact.console import progress_bar
from genact.data.cached_clip import CachedClip
from genact.data.datasets import SkipReport, VideoDataset, VideoItem, video_id
from genact.data.transforms import resize_short_side, to_float_tchw
from genact.distributed import Dist, barrier
from genact.errors import ConfigError
from genact.io import atomic_write_text

log = logging.getLogger(__name__)

VERSION = 1
FORMATS = ("jpeg", "raw")


class _Encode:
    """VideoDataset transform: uint8 (T, H, W, 3) -> (list of T encoded frames, (H', W'))."""

    def __init__(self, short_side: int, fmt: str, quality: int):
        self.short_side, self.format, self.quality = short_side, fmt, quality

    def __call__(self, frames: np.ndarray, rng=None) -> tuple[list[bytes], tuple[int, int]]:
        x = resize_short_side(to_float_tchw(frames), self.short_side)
        x = x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        if self.format == "raw":
            return [f.tobytes() for f in x], x.shape[1:3]
        out = []
        for f in x:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, format="JPEG", quality=self.quality)
            out.append(buf.getvalue())
        return out, x.shape[1:3]


def _source_stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read_meta(root: Path) -> dict | None:
    try:
        return json.loads((root / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_entries(root: str | Path) -> dict[str, dict]:
    """{video key: entry} of every finished shard in cache directory `root`. A video
    cached twice (re-encoded after its file changed, maybe by another process's
    shard) keeps the entry of the shard written last."""
    entries: dict[str, dict] = {}
    indexes = sorted(Path(root).glob("shard-*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    for index in indexes:
        for e in json.loads(index.read_text()):
            e["shard"] = str(index.with_suffix(".bin"))
            entries[e["key"]] = e
    return entries


def _current(entry: dict | None, path: str) -> bool:
    return entry is not None and _source_stat(path) == (entry["size"], entry["mtime_ns"])


def use_frame_cache(
    items: list[VideoItem], root: str | Path | None, num_frames: int, short_side: int
) -> list[VideoItem]:
    """`items` with `frames` set for the videos that cache `root` holds up to date.

    A cache built for another T or short side is not used at all (a warning says
    so and how to rebuild it); a video whose file changed since it was cached is
    decoded as usual. `root` None returns `items` unchanged.
    """
    if not root:
        return items
    meta = _read_meta(Path(root))
    if meta is None:
        log.warning(
            "data.frame_cache=%s holds no frame cache (meta.json missing): decoding videos", root
        )
        return items
    if (meta["num_frames"], meta["short_side"], meta.get("version")) != (
        num_frames,
        short_side,
        VERSION,
    ):
        log.warning(
            "frame cache %s was built for T=%d, short side %d; this run needs T=%d, short side %d: "
            "decoding videos (run genact cache-frames again to rebuild it)",
            root,
            meta["num_frames"],
            meta["short_side"],
            num_frames,
            short_side,
        )
        return items
    entries = load_entries(root)
    out, hits = [], 0
    for it in items:
        e = entries.get(video_id(it))
        if _current(e, it.path):
            it = replace(
                it,
                cached=CachedClip(
                    e["shard"], tuple(e["offsets"]), e["hw"][0], e["hw"][1], meta["format"]
                ),
            )
            hits += 1
        out.append(it)
    log.info(
        "frame cache %s: %d of %d videos cached (the rest are decoded)", root, hits, len(items)
    )
    return out


def _prepare(root: Path, meta: dict, dist: Dist) -> None:
    """Start or continue a cache at `root` with `meta`; another cache there is removed."""
    if dist.main:
        old = _read_meta(root)
        if old is not None and old != meta:
            log.info("frame cache %s was built with %s; rebuilding for %s", root, old, meta)
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "meta.json", json.dumps(meta) + "\n")
    barrier(dist)
    prefix = f"shard-r{dist.rank:03d}-"
    for data in root.glob(prefix + "*.bin"):
        if not data.with_suffix(".json").exists():
            data.unlink()  # cut short by a kill


class _ShardWriter:
    """Appends videos' encoded frames to this process's shards, `per_shard` videos each."""

    def __init__(self, root: Path, rank: int, per_shard: int):
        self.root, self.rank, self.per_shard = root, rank, per_shard
        done = [int(p.stem.rsplit("-", 1)[1]) for p in root.glob(f"shard-r{rank:03d}-*.json")]
        self.next = max(done, default=-1) + 1
        self.file = None
        self.entries: list[dict] = []

    def add(
        self, key: str, stat: tuple[int, int], frames: list[bytes], hw: tuple[int, int]
    ) -> None:
        if self.file is None:
            self.path = self.root / f"shard-r{self.rank:03d}-{self.next:05d}.bin"
            self.file = open(self.path, "wb")
        offsets = [self.file.tell()]
        for f in frames:
            self.file.write(f)
            offsets.append(self.file.tell())
        self.entries.append(
            {"key": key, "size": stat[0], "mtime_ns": stat[1], "offsets": offsets, "hw": list(hw)}
        )
        if len(self.entries) >= self.per_shard:
            self.close()

    def close(self) -> None:
        if self.file is None:
            return
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        atomic_write_text(self.path.with_suffix(".json"), json.dumps(self.entries) + "\n")
        self.file, self.entries, self.next = None, [], self.next + 1


def build_frame_cache(
    items: list[VideoItem],
    root: str | Path,
    num_frames: int,
    short_side: int,
    *,
    fmt: str = "jpeg",
    quality: int = 90,
    shard_videos: int = 1000,
    num_workers: int = 0,
    dist: Dist | None = None,
    progress: bool = True,
) -> tuple[int, SkipReport]:
    """Decode the T eval frames of every video not yet cached up to date into `root`.

    Resumes a build that was killed, adds videos new to the list, re-encodes videos
    whose files changed, and starts over when T, the short side or the format differ
    from the cache's. Returns (videos written by this process, unreadable ones).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"frame cache format {fmt!r}: choose one of {FORMATS}")
    dist = dist or Dist()
    root = Path(root)
    _prepare(
        root,
        {
            "version": VERSION,
            "num_frames": num_frames,
            "short_side": short_side,
            "format": fmt,
            "quality": quality if fmt == "jpeg" else None,
        },
        dist,
    )
    entries = load_entries(root)
    todo = [it for it in items if not _current(entries.get(video_id(it)), it.path)]
    mine = todo[dist.rank :: dist.world]
    log.info(
        "frame cache %s: %d of %d videos cached, %d to decode (%d in this process)",
        root,
        len(items) - len(todo),
        len(items),
        len(todo),
        len(mine),
    )
    writer = _ShardWriter(root, dist.rank, shard_videos)
    report, written = SkipReport(), 0
    dataset = VideoDataset(mine, num_frames, _Encode(short_side, fmt, quality))
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    for sample in progress_bar(loader, total=len(mine), desc="caching frames", enabled=progress):
        if "error" in sample:
            report.add([(sample["path"], sample["error"])])
            continue
        item = mine[sample["index"]]
        stat = _source_stat(item.path)
        frames, hw = sample["pixels"]
        if stat is not None:
            writer.add(video_id(item), stat, frames, tuple(int(v) for v in hw))
            written += 1
    writer.close()
    barrier(dist)
    return written, report
