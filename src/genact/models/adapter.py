"""The temporal adapter (REST §3.2): a zero-initialised depth-wise 3x3x3 convolution
over the patch-token grid of T frames, added to the tokens; CLS untouched."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class TemporalAdapter(nn.Module):
    """Z + DWConv3d(Z) on patch tokens laid out as (B, d, T, H', W'); CLS untouched."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, padding=1, groups=dim)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
        """hidden: (B*T, 1 + H'W', d) -> same shape."""
        cls, patches = hidden[:, :1], hidden[:, 1:]
        bt, p, d = patches.shape
        side = math.isqrt(p)
        grid = patches.reshape(bt // num_frames, num_frames, side, side, d)
        # 27 shifted products, which the compiler fuses into one kernel
        if torch.compiler.is_compiling():
            mixed = self._shifted_sum(grid)  # (cuDNN's depth-wise Conv3d is 3x slower on an H100)
        else:
            mixed = self._temporal_taps(grid)
        return torch.cat([cls, patches + mixed.reshape(bt, p, d)], dim=1)

    def _temporal_taps(self, grid: torch.Tensor) -> torch.Tensor:
        """The depth-wise 3x3x3 convolution of grid (B, T, H', W', d) as three depth-wise
        3x3 convolutions of every frame (one per temporal tap, on the tokens' own
        channels-last layout, so nothing is copied to channels-first), summed with
        their frames shifted by -1, 0, +1; equal to `self.conv` up to rounding."""
        b, t, h, w, d = grid.shape
        frames = grid.reshape(b * t, h, w, d).permute(0, 3, 1, 2)  # channels-last view
        taps = [
            nn.functional.conv2d(frames, self.conv.weight[:, :, k], padding=1, groups=d)
            .permute(0, 2, 3, 1)
            .reshape(b, t, h, w, d)
            for k in range(3)
        ]
        zero = taps[0].new_zeros(b, 1, h, w, d)
        before = torch.cat([zero, taps[0][:, :-1]], dim=1)  # tap 0 reads frame t - 1
        after = torch.cat([taps[2][:, 1:], zero], dim=1)  # tap 2 reads frame t + 1
        return taps[1] + before + after + self.conv.bias

    def _shifted_sum(self, grid: torch.Tensor) -> torch.Tensor:
        """The depth-wise 3x3x3 convolution of grid (B, T, H', W', d), zero-padded, as a
        sum of shifted copies; equal to `self.conv` up to rounding."""
        b, t, h, w, _ = grid.shape
        padded = nn.functional.pad(grid, (0, 0, 1, 1, 1, 1, 1, 1))
        # (27, d), taps in (dt, dy, dx) order
        kernel = self.conv.weight.flatten(1).t().to(grid.dtype)
        out = self.conv.bias.to(grid.dtype).expand_as(grid)
        for i in range(27):
            dt, dy, dx = i // 9, i // 3 % 3, i % 3
            out = out + padded[:, dt : dt + t, dy : dy + h, dx : dx + w] * kernel[i]
        return out
