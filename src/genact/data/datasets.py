"""A map-style dataset over video files that never lets one bad file stop a run."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genact.data.cached_clip import CachedClip, read_cached
from genact.data.video import VideoDecodeError, read_video_sides
from genact.io import ShardLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoItem:
    """One video of a split: its file, class index (None when unlabelled),
    optional [start, end) window in seconds, and its frames in a frame cache when
    `genact.data.frame_cache.use_frame_cache` found them there."""

    path: str
    label: int | None = None
    start: float | None = None
    end: float | None = None
    cached: CachedClip | None = None  # its T frames in a frame cache


def video_id(item: VideoItem, num_frames: int | None = None) -> str:
    """A video's name in caption banks, run records and frame caches: its path, plus
    the time window when it has one. With `num_frames`, the key of its T-frame clip in
    caption and feature caches: the file itself (its real absolute path, size and
    modification time, so the same name in two folders, a relative path typed from
    another folder and a file replaced in place are different videos), the window
    and T. The key starts with its format's version, so keys of an older format are
    never taken for these."""
    if num_frames is not None:
        real = os.path.realpath(os.path.expanduser(item.path))
        try:
            st = os.stat(real)
            stamp = f"{st.st_size}|{st.st_mtime_ns}"
        except OSError:  # unreadable: it will be skipped, and nothing is cached for it
            stamp = "missing"
        return f"{CACHE_KEY_VERSION}|{real}|{stamp}|{item.start}|{item.end}|T={num_frames}"
    return (
        item.path
        if item.start is None and item.end is None
        else f"{item.path}|{item.start}|{item.end}"
    )


CACHE_KEY_VERSION = "v2"  # of video_id's cache keys; v1 was the path as typed


def video_item(name: str) -> VideoItem:
    """The (unlabelled) VideoItem that `video_id(item)` (without T) names."""

    def bound(text: str) -> float | None:
        return None if text == "None" else float(text)

    path, *window = name.rsplit("|", 2)
    try:
        if len(window) == 2:
            return VideoItem(path, start=bound(window[0]), end=bound(window[1]))
    except ValueError:  # a '|' in the path itself
        pass
    return VideoItem(name)


def _max_short_side(transform) -> int | None:
    """Frames are shrunk while still uint8 to twice the transform's resize (it does the
    exact resize)."""
    side = getattr(transform, "resize_side", None)
    return 2 * side if isinstance(side, int) else None


class VideoDataset(Dataset):
    """Decodes T frames per item and applies `transform` to the uint8 (T, H, W, 3) clip.

    A sample is a dict: index, path, label (-1 when unlabelled), pixels (whatever the
    transform returns; the raw uint8 clip without one), and one entry per transform
    in `also` (eval only: `{"clip_pixels": clip_transform(clip)}` gives CLIP's input
    from the same decode, each size shrunk as its own decode would shrink it).
    In training, frame sampling and augmentation draw from an RNG seeded by (seed,
    epoch, index): a sample is the same whatever the worker count, and a resumed run
    sees the same data.
    An item with cached frames of the right T is read from the frame cache (its
    eval frames, so training on it has no temporal jitter); a cache read that
    fails falls back to decoding the video. An unreadable video gives a sample
    with `error` set instead of pixels; `collate_videos` drops it and `iterate`
    counts and reports it.
    """

    def __init__(
        self,
        items: list[VideoItem],
        num_frames: int = 8,
        transform: Callable[..., Any] | None = None,
        train: bool = False,
        seed: int = 0,
        also: dict[str, Callable[..., Any]] | None = None,
        tokens: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ):
        if also and train:
            raise ValueError("VideoDataset(also=...) is for eval sampling")
        self.items = items
        self.also = also or {}
        self.tokens = tokens  # (index, epoch) -> a caption's (ids, mask), made in the workers
        self.num_frames = num_frames
        self.transform = transform
        self.train = train
        self.seed = seed
        self.epoch = 0
        # frames are shrunk while still uint8 to twice the transform's resize (it does the exact
        # resize)
        self.sides = tuple(_max_short_side(t) for t in (transform, *self.also.values()))

    def set_epoch(self, epoch: int) -> None:
        """Fresh random draws each epoch (call before iterating)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        sample: dict[str, Any] = {
            "index": index,
            "path": item.path,
            "label": -1 if item.label is None else item.label,
        }
        np_rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        try:
            frames = self._cached(item)
            if frames is None:
                sized = read_video_sides(
                    item.path, self.num_frames, self.sides, self.train, item.start, item.end, np_rng
                )
            else:
                sized = [frames] * len(self.sides)
        except VideoDecodeError as e:
            sample["error"] = str(e)
            return sample
        if self.transform is None:
            sample["pixels"] = torch.from_numpy(sized[0])
        else:
            rng = random.Random(int(np_rng.integers(2**63))) if self.train else None
            sample["pixels"] = self.transform(sized[0], rng)
        for (key, transform), frames in zip(self.also.items(), sized[1:]):
            sample[key] = transform(frames, None)
        if self.tokens is not None:
            sample["caption_ids"], sample["caption_mask"] = self.tokens(index, self.epoch)
        return sample

    def _cached(self, item: VideoItem) -> np.ndarray | None:
        if item.cached is None or item.cached.num_frames != self.num_frames:
            return None
        try:
            return read_cached(item.cached)
        except (OSError, ValueError) as e:
            log.warning("%s: cached frames unreadable (%s); decoding the video", item.path, e)
            return None


def collate_videos(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the good samples; keep (path, error) of the bad ones in `failed`.

    pixels: (B, T, 3, H, W); caption_ids / caption_mask (B, L) when the dataset
    tokenizes captions.
    """
    good = [s for s in samples if "error" not in s]
    batch: dict[str, Any] = {
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "label": torch.tensor([s["label"] for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "failed": [(s["path"], s["error"]) for s in samples if "error" in s],
    }
    if good:
        for key in [k for k in good[0] if k not in batch and isinstance(good[0][k], torch.Tensor)]:
            batch[key] = torch.stack([s[key] for s in good])
    return batch


def make_loader(
    dataset: VideoDataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    drop_last: bool = False,
    batch_sampler: list[list[int]] | None = None,
) -> DataLoader:
    """DataLoader with genact's collate, pinned memory on GPU machines and
    persistent workers; `batch_sampler` (lists of indices) fixes every batch."""
    if batch_sampler is not None:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=collate_videos,
            pin_memory=torch.cuda.is_available(),
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_videos,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
    )


@dataclass
class SkipReport:
    """Counts the videos skipped as unreadable during a pass, keeping their errors."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, failed: Iterable[tuple[str, str]]) -> None:
        for path, error in failed:
            self.skipped.append((path, error))
            # the command's closing line and the run's report name it: once, not per pass
            log.debug("skipping unreadable video %s", error)

    def save(self, log: ShardLog, stage: str) -> None:
        """Append the skipped videos, found in `stage`, to a run's records of unreadable
        videos (RunDir.skipped_log; merged into report.json at the end)."""
        if self.skipped:
            log.append([{"stage": stage, "path": p, "error": e} for p, e in self.skipped])

    def summary(self) -> str:
        if not self.skipped:
            return "all videos decoded"
        examples = "; ".join(e for _, e in self.skipped[:3])
        return f"skipped {len(self.skipped)} unreadable video(s), e.g. {examples}"


def iterate(loader: DataLoader, report: SkipReport) -> Iterator[dict[str, Any]]:
    """Yield non-empty batches of `loader`, recording failed videos in `report`."""
    for batch in loader:
        report.add(batch["failed"])
        if len(batch["path"]):
            yield batch
