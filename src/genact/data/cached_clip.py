"""One video's frames in a frame cache (`genact cache-frames`, data/frame_cache.py):
where they are and how to read them back."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CachedClip:
    """Where one video's cached frames are: a shard file and T + 1 byte offsets."""

    shard: str
    offsets: tuple[int, ...]
    height: int
    width: int
    format: str = "jpeg"

    @property
    def num_frames(self) -> int:
        return len(self.offsets) - 1


def read_cached(clip: CachedClip) -> np.ndarray:
    """The cached frames of one video: uint8 (T, H, W, 3)."""
    with open(clip.shard, "rb") as f:
        f.seek(clip.offsets[0])
        data = f.read(clip.offsets[-1] - clip.offsets[0])
    if len(data) != clip.offsets[-1] - clip.offsets[0]:
        raise OSError(f"{clip.shard}: shorter than its index says (truncated shard?)")
    bounds = [o - clip.offsets[0] for o in clip.offsets]
    parts = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    if clip.format == "raw":
        return np.stack(
            [np.frombuffer(p, np.uint8).reshape(clip.height, clip.width, 3) for p in parts]
        )
    return np.stack([np.asarray(Image.open(io.BytesIO(p)).convert("RGB")) for p in parts])
