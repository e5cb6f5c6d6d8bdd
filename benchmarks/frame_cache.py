"""Benchmark 4: training throughput of VideoBlip with and without the frame cache.

    python benchmarks/frame_cache.py
    python benchmarks/frame_cache.py --videos 64 --out benchmarks/results/frame_cache_cpu.json

Generates Kinetics-like clips (10 s, 30 fps, 340x256, H.264), builds a frame cache of
them with `build_frame_cache` (JPEG and raw), then measures, for videos decoded from
the files and for each cache:
- reading the T frames alone (decoding them, or reading them from the cache): videos/s;
- the training input pipeline alone (VideoDataset with the model's training
  transform, genact's DataLoader, `--workers` processes): videos/s;
- training steps of a VideoBlip (forward, backward, AdamW; the loader feeding it):
  videos/s. The model is BLIP-base-shaped but narrow (`--hidden`) so that a CPU
  finishes; on a GPU the full model trains at the rate in docs/performance.md
  (benchmark 5), which the input pipeline has to keep up with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from bench_helpers import captions, random_blip  # benchmarks/ is on sys.path when a script runs
from decode import moving_frames  # noqa: E402
from genact.data import VideoDataset, VideoItem, make_loader, write_video
from genact.data.frame_cache import build_frame_cache, use_frame_cache
from genact.inference.processing import blip_transform
from genact.models.video_blip import VideoBlip, VideoBlipConfig


def small_blip(hidden: int, size: int, frames: int) -> VideoBlip:
    """BLIP-base-shaped, `hidden` wide and 4 layers deep in both towers."""
    return VideoBlip(*random_blip(size, hidden, layers=4), VideoBlipConfig(num_frames=frames))


def loader_rate(items: list[VideoItem], model: VideoBlip, batch: int, workers: int) -> float:
    ds = VideoDataset(items, model.config.num_frames, blip_transform(model, train=True), train=True)
    t0, n = time.perf_counter(), 0
    for b in make_loader(ds, batch, workers, shuffle=True, drop_last=True):
        n += len(b["path"])
    return n / (time.perf_counter() - t0)


def read_rate(items: list[VideoItem], frames: int, workers: int) -> float:
    """Videos/s of reading the T frames alone (decode or cache), no transform."""
    t0, n = time.perf_counter(), 0
    for b in make_loader(VideoDataset(items, frames), 8, workers):
        n += len(b["path"])
    return n / (time.perf_counter() - t0)


def train_rate(items: list[VideoItem], model: VideoBlip, batch: int, workers: int) -> float:
    ds = VideoDataset(items, model.config.num_frames, blip_transform(model, train=True), train=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    model.train()
    t0, n = time.perf_counter(), 0
    for b in make_loader(ds, batch, workers, shuffle=True, drop_last=True):
        opt.zero_grad(set_to_none=True)
        model(b["pixels"], captions(len(b["path"]), g), 0.2).loss.backward()
        opt.step()
        n += len(b["path"])
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--hidden", type=int, default=256, help="width of the ViT and the decoder")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    print(
        f"# {machine}; {args.videos} videos of {args.seconds:g} s, T = {args.frames}, "
        f"{args.workers} workers"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = small_blip(args.hidden, args.size, args.frames)
        side = blip_transform(model, train=True).resize_side
        items = []
        for i in range(args.videos):
            path = tmp / "videos" / f"v{i}.mp4"
            write_video(path, moving_frames(int(args.seconds * 30), seed=i), fps=30, gop=30, crf=23)
            items.append(VideoItem(str(path)))
        sources = {"decoded from the videos": (items, None, 0.0)}
        for fmt in ("jpeg", "raw"):
            t0 = time.perf_counter()
            build_frame_cache(
                items,
                tmp / fmt,
                args.frames,
                side,
                fmt=fmt,
                num_workers=args.workers,
                progress=False,
            )
            build_s = time.perf_counter() - t0
            mb = sum(f.stat().st_size for f in (tmp / fmt).glob("*.bin")) / 2**20
            sources[f"frame cache ({fmt})"] = (
                use_frame_cache(items, tmp / fmt, args.frames, side),
                mb,
                build_s,
            )
        for name, (its, mb, build_s) in sources.items():
            row = {
                "input": name,
                "videos": args.videos,
                "T": args.frames,
                "short_side": side,
                "cache_mb_per_video": None if mb is None else round(mb / args.videos, 3),
                "cache_build_s": round(build_s, 1),
                "read_videos_per_s": round(read_rate(its, args.frames, args.workers), 1),
                "loader_videos_per_s": round(loader_rate(its, model, args.batch, args.workers), 1),
                "train_videos_per_s": round(train_rate(its, model, args.batch, args.workers), 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
