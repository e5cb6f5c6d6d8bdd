"""Shared test fixtures: tiny random BLIP / CLIP saved to disk (loaded back through the
user's code path, see genact.testing), and small generated videos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genact.data import read_video, write_video
from genact.inference.processing import blip_transform
from genact.models import VideoBlip
from genact.testing import coloured_frames, numbered_frames, save_tiny_blip, save_tiny_clip
from helpers import CAPTIONS

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core: one torch thread each, and the genact
    # processes a test starts inherit it, so the workers do not oversubscribe the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> Path:
    return save_tiny_blip(tmp_path_factory.mktemp("tiny_blip"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def make_video(tmp_path):
    """make_video(name, frames=None, fps=8) writes an mp4 (default: 24 numbered frames)."""

    def make(name: str = "clip.mp4", frames: np.ndarray | None = None, fps: int = 8) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, numbered_frames(24) if frames is None else frames, fps=fps)
        return path

    return make


@pytest.fixture(scope="session")
def fitted(tiny_blip_dir, tmp_path_factory):
    """Two generated videos and a tiny VideoBlip fitted to caption them, saved to disk."""
    root = tmp_path_factory.mktemp("fitted")
    rng = np.random.default_rng(0)
    videos = []
    for i, name in enumerate(["blue.mp4", "red.mp4"]):
        # one blue, one red
        write_video(root / name, coloured_frames(rng, (16, 48, 64), 2 - 2 * i, 180))
        videos.append(root / name)
    torch.manual_seed(0)
    model = VideoBlip.from_pretrained(tiny_blip_dir, num_frames=4)
    t = blip_transform(model)
    pixels = torch.stack([t(read_video(v, 4)) for v in videos])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(80):
        opt.zero_grad()
        model(pixels, CAPTIONS).loss.backward()
        opt.step()
    model.save_pretrained(root / "model")
    return root, videos
