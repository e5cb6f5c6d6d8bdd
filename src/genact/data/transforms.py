"""Clip-level augmentations in torch: one random draw per clip, applied to all T frames."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MULTI_SCALES = (1.0, 0.875, 0.75, 0.66)
# CLIP / BLIP statistics; the models pass the ones from their own processor config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_float_tchw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in [0, 1]."""
    x = torch.as_tensor(np.asarray(frames)) if not torch.is_tensor(frames) else frames
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 3, H', W') with min(H', W') == size, aspect kept."""
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    if new == (h, w):
        return x
    return F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=True)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 3, size, size) from the centre."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def multi_scale_crop(
    x: torch.Tensor, size: int, scales=MULTI_SCALES, rng: random.Random = random
) -> torch.Tensor:
    """TSN multi-scale crop: side lengths base*s_h, base*s_w (scales at most one step
    apart), random position, resized to (size, size). (T, 3, H, W) -> (T, 3, size, size)."""
    h, w = x.shape[-2:]
    base = min(h, w)
    pairs = [(i, j) for i in range(len(scales)) for j in range(len(scales)) if abs(i - j) <= 1]
    i, j = rng.choice(pairs)
    ch, cw = max(1, int(base * scales[i])), max(1, int(base * scales[j]))
    top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
    crop = x[..., top : top + ch, left : left + cw]
    return F.interpolate(
        crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _rotate_hue(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Hue rotation by `angle` radians, as a rotation of the chroma plane in YIQ."""
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    c, s = math.cos(angle), math.sin(angle)
    rot = x.new_tensor([[1, 0, 0], [0, c, -s], [0, s, c]])
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq
    return torch.einsum("ij,tjhw->tihw", m, x)


def color_jitter(
    x: torch.Tensor,
    brightness=0.4,
    contrast=0.4,
    saturation=0.4,
    hue=0.1,
    rng: random.Random = random,
) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue, in random order. (T,3,H,W) in [0,1]."""
    ops = ["b", "c", "s", "h"]
    rng.shuffle(ops)
    for op in ops:
        if op == "b":
            x = x * rng.uniform(1 - brightness, 1 + brightness)
        elif op == "c":
            f = rng.uniform(1 - contrast, 1 + contrast)
            x = (x - _gray(x).mean()) * f + _gray(x).mean()
        elif op == "s":
            f = rng.uniform(1 - saturation, 1 + saturation)
            g = _gray(x)
            x = (x - g) * f + g
        else:
            x = _rotate_hue(x, rng.uniform(-hue, hue) * 2 * math.pi)
        x = x.clamp(0, 1)
    return x


@dataclass
class VideoTransform:
    """uint8 frames (T, H, W, 3) -> normalised float (T, 3, size, size).

    train: resize shorter side, multi-scale crop, flip p=0.5, colour jitter p=0.8,
    grayscale p=0.2. eval: resize shorter side to `size`, centre crop.
    """

    size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    train: bool = False
    short_side: int | None = None  # train resize before cropping; default size * 256 / 224
    flip_p: float = 0.5
    jitter_p: float = 0.8
    gray_p: float = 0.2
    seed: int | None = None

    def __post_init__(self) -> None:
        # Without a seed, use the `random` module: DataLoader re-seeds it in every worker.
        self.rng = random.Random(self.seed) if self.seed is not None else random

    @property
    def resize_side(self) -> int:
        """The shorter side a clip is first resized to (train: `short_side`, by
        default size * 256 / 224; eval: `size`); what a frame cache must hold."""
        return (self.short_side or round(self.size * 256 / 224)) if self.train else self.size

    def __call__(
        self, frames: np.ndarray | torch.Tensor, rng: random.Random | None = None
    ) -> torch.Tensor:
        """`rng` makes the draw reproducible per sample (VideoDataset passes one)."""
        rng = rng if rng is not None else self.rng
        x = to_float_tchw(frames)
        if self.train:
            x = resize_short_side(x, self.resize_side)
            x = multi_scale_crop(x, self.size, rng=rng)
            if rng.random() < self.flip_p:
                x = x.flip(-1)
            if rng.random() < self.jitter_p:
                x = color_jitter(x, rng=rng)
            if rng.random() < self.gray_p:
                x = _gray(x).expand(-1, 3, -1, -1)
        else:
            x = center_crop(resize_short_side(x, self.size), self.size)
        mean = x.new_tensor(self.mean).view(1, 3, 1, 1)
        std = x.new_tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()
