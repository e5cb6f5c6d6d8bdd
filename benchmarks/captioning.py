"""Benchmark 2: REST's initial pseudo-captions (N clips x T frames x 3 prompts, beam
search) on four paths fed identical pixels, with their captions compared.

    python benchmarks/captioning.py --out benchmarks/results/captioning_cpu.json

A random-weight BLIP in the BLIP-base layout (ViT-B/16 and the 12-layer BERT decoder,
30,524 word pieces) at 224 px. Every side gets the same preprocessed frames (random
pixels, already normalised), so the comparison is the captioning alone:
- plain loop: what a user writes with transformers, one
  `BlipForConditionalGeneration.generate` per frame and prompt (the same weights,
  transformers' own attention);
- batched generate: the same call on all N x T frames at once, per prompt;
- genact before: one ViT pass per frame serves the three prompts, then transformers'
  generate per prompt with genact's BeamCache (`decoder="transformers"`, the path
  genact took before its own decoder);
- genact: the same encoding, then genact's decoder (models/decoder.py), whose
  cross-attention keys / values are computed once for all beams and prompts.
Each side is warmed up on one frame, the timed runs are interleaved (every side once
per round, `--rounds` rounds, the fastest round kept), and every side's captions
are compared with genact's. The plain loop is timed on `--plain-frames` frames (its
calls are independent, so its rate does not depend on how many) and compared there.
Lengths are forced (min = max new tokens), since random weights never end a caption.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from transformers import BlipForConditionalGeneration

from bench_helpers import random_blip, sync  # benchmarks/ is on sys.path when a script runs
from genact.config import DEFAULT_PROMPTS
from genact.models.precision import autocast
from genact.models.video_blip import VideoBlip, VideoBlipConfig


class Sides:
    """The four captioning paths over one model; each maps frames (F, 3, S, S) to
    captions per prompt (lists of F strings)."""

    def __init__(self, model: VideoBlip, prompts: list[str], beams: int, tokens: int):
        self.model, self.prompts = model, prompts
        # the user's BLIP: the same weights, transformers' own attention (genact's ViT uses SDPA)
        self.blip = BlipForConditionalGeneration(model.blip.config).to(model.device).eval()
        self.blip.load_state_dict(model.blip.state_dict())
        self.search = dict(num_beams=beams, max_new_tokens=tokens, min_new_tokens=tokens)
        self.prompt_ids = [model.tokenizer(p, return_tensors="pt").input_ids for p in prompts]

    def _blip(self, frames: torch.Tensor, ids: torch.Tensor) -> list[str]:
        """BlipForConditionalGeneration.generate as a user calls it (it drops the
        prompt's [SEP] and sets [DEC] itself)."""
        ids = ids.to(frames.device).expand(frames.shape[0], -1).clone()
        out = self.blip.generate(pixel_values=frames, input_ids=ids, **self.search)
        texts = self.model.tokenizer.batch_decode(
            out[:, ids.shape[1] - 1 :], skip_special_tokens=True
        )
        return [t.strip() for t in texts]

    def plain(self, frames: torch.Tensor) -> list[list[str]]:
        return [[self._blip(f[None], ids)[0] for f in frames] for ids in self.prompt_ids]

    def batched(self, frames: torch.Tensor) -> list[list[str]]:
        return [self._blip(frames, ids) for ids in self.prompt_ids]

    def _genact(self, frames: torch.Tensor, decoder: str) -> list[list[str]]:
        memory = self.model.encode_video(frames.unsqueeze(1))  # each frame a one-frame clip
        return self.model.caption_prompts(memory, self.prompts, decoder=decoder, **self.search)

    def before(self, frames: torch.Tensor) -> list[list[str]]:
        return self._genact(frames, "transformers")

    def genact(self, frames: torch.Tensor) -> list[list[str]]:
        return self._genact(frames, "genact")


def timed(fn, frames: torch.Tensor) -> tuple[float, list[list[str]]]:
    device = frames.device
    with torch.no_grad(), autocast(device):
        sync()
        t0 = time.perf_counter()
        out = fn(frames)
        sync()
    return time.perf_counter() - t0, out


def compare(
    sides: Sides, frames: torch.Tensor, plain_frames: int, rounds: int
) -> tuple[dict, dict]:
    """({side: best seconds}, {side: captions differing from genact's, of compared}) over
    interleaved rounds; the plain loop runs on the first `plain_frames` frames."""
    runs = {
        "plain_loop": (sides.plain, frames[:plain_frames]),
        "batched_generate": (sides.batched, frames),
        "genact_before": (sides.before, frames),
        "genact": (sides.genact, frames),
    }
    for fn, _ in runs.values():  # warm-up
        timed(fn, frames[:1])
    best = {name: float("inf") for name in runs}
    captions: dict[str, list[list[str]]] = {}
    for _ in range(rounds):
        for name, (fn, x) in runs.items():
            seconds, captions[name] = timed(fn, x)
            best[name] = min(best[name], seconds)
    ours = captions["genact"]
    differ = {}
    for name, caps in captions.items():
        n = len(caps[0])
        bad = sum(a != b for p, q in zip(caps, ours) for a, b in zip(p, q[:n]))
        differ[name] = {"compared": n * len(caps), "mismatches": bad}
    return best, differ


def rows(best: dict, differ: dict, frames: int, plain_frames: int) -> dict:
    """Seconds and frames / s per side (the plain loop's scaled to all frames) and
    genact's speed-ups."""
    seconds = dict(best)
    seconds["plain_loop"] = best["plain_loop"] * frames / plain_frames
    out = {
        name: {"seconds": round(s, 3), "frames_per_s": round(frames / s, 3), **differ[name]}
        for name, s in seconds.items()
    }
    for name in ("plain_loop", "batched_generate", "genact_before"):
        out["genact"][f"speedup_vs_{name}"] = round(seconds[name] / seconds["genact"], 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clips", type=int, default=4, help="clips of T frames (N)")
    p.add_argument("--frames", type=int, default=8, help="T")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--tokens", type=int, default=20, help="new tokens per caption")
    p.add_argument("--plain-frames", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--hidden", type=int, default=None, help="narrower towers (default: BLIP-base)")
    p.add_argument("--layers", type=int, default=12, help="with --hidden: layers per tower")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    blip, tok = random_blip(args.image_size, args.hidden, args.layers)
    model = VideoBlip(blip, tok, VideoBlipConfig(num_frames=1)).to(device).eval()
    sides = Sides(model, list(DEFAULT_PROMPTS), args.beams, args.tokens)
    g = torch.Generator().manual_seed(0)
    n = args.clips * args.frames
    frames = torch.randn(n, 3, args.image_size, args.image_size, generator=g).to(device)
    best, differ = compare(sides, frames, min(args.plain_frames, n), args.rounds)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "none (CPU run)"
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, GPU: {gpu}"
    )
    result = {
        "machine": machine,
        "settings": {**vars(args), "prompts": len(DEFAULT_PROMPTS)},
        "sides": rows(best, differ, n, min(args.plain_frames, n)),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
