"""Benchmark 1: decoding T sampled frames of a clip, genact's sampler vs full decodes.

    python benchmarks/decode.py                       # 2 s and 30 s clips, T = 8
    python benchmarks/decode.py --out benchmarks/results/decode_cpu.json
    python benchmarks/decode.py --sizes 340x256 32x32 --seconds 2 --earlier

Generates H.264 mp4 clips (x264 crf 23) at 30 fps and 340x256 (Kinetics' usual
size; `--sizes` for others, 32x32 is the miniature world's) with moving content,
then times per clip, with PyAV's frame threading on for both PyAV columns:
- genact: `read_video` (timestamps from packets, seek to the keyframe before each
  sampled frame, convert only the T frames);
- PyAV full decode: every frame decoded and converted to RGB, then T picked (what
  a plain loop over `container.decode(video=0)` does);
- genact as it was before this version (`--earlier`): the same sampler, but codec
  threads for every clip and a new colour-conversion scaler for every frame (what
  small clips such as the miniature world's spent most of their decode on);
- decord `VideoReader.get_batch`, where decord is installed.
Each clip length is written with the encoder's default keyframe interval (250
frames) and with one keyframe per second, as web videos often have.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from genact.data import video
from genact.data.video import read_video, sample_indices, write_video


def moving_frames(n: int, height: int = 256, width: int = 340, seed: int = 0) -> np.ndarray:
    """uint8 (n, H, W, 3): drifting sinusoidal bands plus noise (not trivially compressible)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        base = 127 + 100 * np.sin((x + 3 * i) / 17.0) * np.cos((y - 2 * i) / 23.0)
        for c in range(3):
            out[i, ..., c] = np.clip(base + 40 * c + rng.normal(0, 8, (height, width)), 0, 255)
    return out


def full_decode(path: str, num_frames: int) -> np.ndarray:
    """The plain loop: decode and convert every frame, then pick the T eval frames."""
    with av.open(path) as container:
        container.streams.video[0].thread_type = "AUTO"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([frames[i] for i in sample_indices(len(frames), num_frames, False)])


def decord_decode(path: str, num_frames: int) -> np.ndarray:
    import decord

    vr = decord.VideoReader(path, num_threads=1)
    return vr.get_batch(sample_indices(len(vr), num_frames, False).tolist()).asnumpy()


def genact_decode(path: str, num_frames: int) -> np.ndarray:
    return read_video(path, num_frames)


def _earlier_rgb(frame: av.VideoFrame, max_short_side: int | None = None) -> np.ndarray:
    assert not max_short_side and not getattr(frame, "rotation", 0)  # the benchmark's clips
    return frame.to_ndarray(format="rgb24")  # a new scaler per frame


def earlier_decode(path: str, num_frames: int) -> np.ndarray:
    """genact's sampler with the earlier conversion and codec threads on every clip."""
    rgb, pixels = video._rgb, video.THREADED_DECODE_PIXELS
    video._rgb, video.THREADED_DECODE_PIXELS = _earlier_rgb, 0
    try:
        return read_video(path, num_frames)
    finally:
        video._rgb, video.THREADED_DECODE_PIXELS = rgb, pixels


def time_per_clip(fn, paths: list[str], num_frames: int, repeats: int) -> float:
    fn(paths[0], num_frames)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        for p in paths:
            fn(p, num_frames)
    return (time.perf_counter() - t0) / (repeats * len(paths))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, nargs="+", default=[2, 30])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--clips", type=int, default=3, help="clips per setting")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sizes", nargs="+", default=["340x256"], help="WxH of the clips")
    p.add_argument("--earlier", action="store_true", help="time genact's earlier path too")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    methods = {"genact read_video": genact_decode, "PyAV full decode": full_decode}
    if args.earlier:
        methods["genact, earlier conversion"] = earlier_decode
    try:
        import decord  # noqa: F401

        methods["decord get_batch"] = decord_decode
    except ImportError:
        print("# decord is not installed: its column is left out")
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} CPUs, PyAV {av.__version__}, torch {torch.__version__}"
    print(
        f"# {machine}; T = {args.frames}; ms per clip, mean of {args.clips} clips x {args.repeats}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, seconds, gop in itertools.product(args.sizes, args.seconds, (250, 30)):
            width, height = map(int, size.split("x"))
            n = int(round(seconds * 30))
            if gop >= n and gop != 250:
                continue  # one keyframe either way
            paths = []
            for c in range(args.clips):
                path = Path(tmp) / f"clip-{size}-{seconds}s-g{gop}-{c}.mp4"
                frames = moving_frames(n, height, width, seed=c)
                write_video(path, frames, fps=30, gop=gop, crf=23)
                paths.append(str(path))
            ref = full_decode(paths[0], args.frames)
            for name, fn in methods.items():
                if name != "decord get_batch":
                    assert np.array_equal(fn(paths[0], args.frames), ref), f"{name}: other frames"
            row = {
                "size": size,
                "seconds": seconds,
                "frames_in_clip": n,
                "keyframe_every": gop,
                "T": args.frames,
                "mb_per_clip": round(
                    sum(os.path.getsize(q) for q in paths) / len(paths) / 2**20, 2
                ),
            }
            for name, fn in methods.items():
                row[f"{name} ms"] = round(
                    1000 * time_per_clip(fn, paths, args.frames, args.repeats), 1
                )
            row["speed-up vs full decode"] = round(
                row["PyAV full decode ms"] / row["genact read_video ms"], 1
            )
            if args.earlier:
                row["speed-up vs earlier"] = round(
                    row["genact, earlier conversion ms"] / row["genact read_video ms"], 1
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
