"""Benchmark 2: REST's initial pseudo-captions (N videos x T frames x 3 prompts),
genact vs the plain loop a user would write with Hugging Face `generate`.

    python benchmarks/captioning.py                          # BLIP-base layout, 224 px, 4 videos
    python benchmarks/captioning.py --image-size 384 --videos 2 \
        --out benchmarks/results/captioning_cpu.json

Both sides load the same random-weight image BLIP directory (BLIP-base layout: ViT-B/16
and the 12-layer BERT decoder with 30,524 word pieces) and decode frames with the same
`read_video`, so the comparison is the captioning alone:
- plain: for every frame and prompt, `BlipProcessor(images=frame, text=prompt)` and
  `BlipForConditionalGeneration.generate` (one frame at a time);
- genact: `genact.inference.frame_captions`, as `genact rest` runs it: one
  ViT pass per frame serves the three prompts, and beam search runs on B x T frames
  at once.
Beam search (3 beams) is forced to the same length on both sides (min = max new
tokens), since random weights would otherwise stop at arbitrary lengths.
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
from transformers import BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

from decode import moving_frames  # noqa: E402
from genact.config import DEFAULT_PROMPTS
from genact.data import VideoItem, read_video, write_video
from genact.inference.captions import frame_captions
from genact.models.video_blip import VideoBlip
from helpers import random_blip  # benchmarks/ is on sys.path when a script runs


def save_blip(directory: Path, image_size: int) -> Path:
    """A random BLIP-base-layout captioner with its processor, saved like a hub checkpoint."""
    model, tok = random_blip(image_size, directory / "vocab")
    model.save_pretrained(directory)
    size = {"height": image_size, "width": image_size}
    BlipProcessor(image_processor=BlipImageProcessor(size=size), tokenizer=tok).save_pretrained(
        directory
    )
    return directory


def plain_loop(
    model_dir: Path, paths: list[str], frames: int, prompts, beams: int, tokens: int
) -> int:
    """What a user writes with transformers: one frame and prompt per generate call."""
    model = BlipForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = BlipProcessor.from_pretrained(model_dir)
    n = 0
    with torch.no_grad():
        for path in paths:
            for frame in read_video(path, frames):
                for prompt in prompts:
                    inputs = processor(images=frame, text=prompt, return_tensors="pt")
                    out = model.generate(
                        **inputs, num_beams=beams, max_new_tokens=tokens, min_new_tokens=tokens
                    )
                    n += bool(processor.decode(out[0], skip_special_tokens=True))
    return n


def genact_loop(
    model_dir: Path,
    paths: list[str],
    frames: int,
    prompts,
    beams: int,
    tokens: int,
    batch: int,
    workers: int,
) -> int:
    model = VideoBlip.from_pretrained(model_dir, num_frames=frames)
    out = frame_captions(
        model,
        [VideoItem(p) for p in paths],
        frames,
        prompts,
        batch,
        workers,
        progress=False,
        num_beams=beams,
        max_new_tokens=tokens,
        min_new_tokens=tokens,
    )
    return sum(len(c) for c in out.values())


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224, help="BLIP captioning-base uses 384")
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--tokens", type=int, default=20, help="new tokens per caption")
    p.add_argument("--batch", type=int, default=4, help="genact: videos per batch")
    p.add_argument("--workers", type=int, default=1, help="genact: DataLoader decoding workers")
    p.add_argument("--out", help="write the row as JSON here")
    args = p.parse_args()
    prompts = list(DEFAULT_PROMPTS)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU run)"
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, GPU: {gpu}"
    )
    print(f"# {machine}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_blip(Path(tmp) / "blip", args.image_size)
        paths = []
        for i in range(args.videos):
            paths.append(str(Path(tmp) / f"v{i}.mp4"))
            write_video(paths[-1], moving_frames(90, seed=i), fps=30, crf=23)
        common = (model_dir, paths, args.frames, prompts, args.beams, args.tokens)
        t0 = time.perf_counter()
        genact_loop(*common, args.batch, args.workers)
        t1 = time.perf_counter()
        plain_loop(*common)
        t2 = time.perf_counter()
    frames = args.videos * args.frames
    row = {
        "videos": args.videos,
        "T": args.frames,
        "prompts": len(prompts),
        "image_size": args.image_size,
        "beams": args.beams,
        "new_tokens": args.tokens,
        "genact_batch_videos": args.batch,
        "genact_s": round(t1 - t0, 1),
        "plain_loop_s": round(t2 - t1, 1),
        "genact_frames_per_s": round(frames / (t1 - t0), 2),
        "plain_frames_per_s": round(frames / (t2 - t1), 2),
        "speed_up": round((t2 - t1) / (t1 - t0), 2),
    }
    print(json.dumps(row))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": machine, "rows": [row]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
