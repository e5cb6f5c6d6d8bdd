"""GPU throughput of a BLIP-base-sized VideoBlip and a CLIP ViT-B/16 (random weights).

    python benchmarks/gpu_throughput.py --out gpu.json
    python benchmarks/gpu_throughput.py --batch 32 --frames 8 --size 224 \
        --variants sdpa sdpa+compile

Measures, on one GPU: training steps (LM loss, bf16 autocast, fused AdamW, adapters
after every ViT layer) in videos/s and model FLOPs utilisation against the GPU's
dense bf16 peak; caption generation (beam search) in videos/s; CLIP video features
in videos/s. FLOPs are counted by torch's FlopCounterMode on one step (matrix
products and attention; what MFU conventionally counts). Variants: `eager` is
transformers' own BLIP attention, `sdpa` is genact's (the default in VideoBlip),
`+compile` adds torch.compile of the video encoder (ViT and adapters).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPConfig, CLIPModel
from transformers.models.blip.modeling_blip import BlipAttention

from bench_helpers import (  # benchmarks/ is on sys.path when a script runs
    WORDS,
    captions,
    random_blip,
)
from genact.config import OptimConfig
from genact.models.attention import SdpaBlipAttention
from genact.models.clip import FrozenClip
from genact.models.precision import autocast
from genact.models.video_blip import VideoBlip, VideoBlipConfig
from genact.models.word_tokenizers import clip_tokenizer
from genact.training.optim import build_optimizer

# dense bf16 tensor-core peak, FLOP/s (NVIDIA data sheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "B200": 2250e12}


DEV = "cuda" if torch.cuda.is_available() else "cpu"  # CPU only to smoke-test the script


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def peak_flops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def timed(fn, steps: int, warmup: int) -> float:
    """Seconds per call of fn after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t0) / steps


def build_blip(size: int, frames: int) -> VideoBlip:
    return VideoBlip(*random_blip(size), VideoBlipConfig(num_frames=frames))


def model_flops(model: VideoBlip, pixels: torch.Tensor, caps: list[str]) -> float:
    """FLOPs of one training step (forward + backward). FlopCounterMode counts a grouped
    convolution as a dense one, so the depth-wise adapters are counted by hand: 2 * 27
    per output element forward, twice that backward."""
    adapters, model.adapters = model.adapters, torch.nn.ModuleDict()
    try:
        with FlopCounterMode(display=False) as counter:
            with autocast(pixels.device):
                loss = model(pixels, caps, label_smoothing=0.2).loss
            loss.backward()
    finally:
        model.adapters = adapters
        model.zero_grad(set_to_none=True)
    cfg = model.blip.config.vision_config
    tokens = pixels.shape[0] * pixels.shape[1] * (cfg.image_size // cfg.patch_size) ** 2
    return counter.get_total_flops() + len(adapters) * 3 * 2 * 27 * tokens * cfg.hidden_size


def train_row(model: VideoBlip, batch: int, variant: str, steps: int, peak: float | None) -> dict:
    g = torch.Generator().manual_seed(0)
    t, size = model.config.num_frames, model.blip.config.vision_config.image_size
    pixels = torch.randn(batch, t, 3, size, size, device=DEV)
    caps = captions(batch, g)
    opt = build_optimizer(model, OptimConfig(lr=1e-5))
    model.train()

    def step():
        with autocast(pixels.device):
            loss = model(pixels, caps, label_smoothing=0.2).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    flops = model_flops(model, pixels, caps)
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sec = timed(step, steps, warmup=3 if "compile" in variant else 2)
    row = {
        "what": "train step",
        "variant": variant,
        "batch": batch,
        "videos_per_s": round(batch / sec, 1),
        "step_ms": round(sec * 1e3, 1),
        "tflop_per_step": round(flops / 1e12, 2),
        "achieved_tflops": round(flops / sec / 1e12, 1),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if DEV == "cuda"
        else None,
    }
    if peak:
        row["mfu_pct"] = round(100 * flops / sec / peak, 1)
    return row


def generate_row(model: VideoBlip, batch: int, beams: int, steps: int) -> dict:
    t, size = model.config.num_frames, model.blip.config.vision_config.image_size
    pixels = torch.randn(batch, t, 3, size, size, device=DEV)
    model.eval()

    def run():
        with torch.no_grad(), autocast(pixels.device):
            model.generate(pixels, num_beams=beams, max_new_tokens=20, min_new_tokens=20)

    sec = timed(run, steps, warmup=1)
    return {
        "what": "caption generation",
        "variant": f"beam {beams}, 20 tokens",
        "batch": batch,
        "videos_per_s": round(batch / sec, 1),
        "step_ms": round(sec * 1e3, 1),
    }


def clip_row(size: int, frames: int, batch: int, steps: int) -> dict:
    tok = clip_tokenizer(WORDS)
    model = CLIPModel(
        CLIPConfig(
            vision_config=dict(image_size=size, patch_size=16),
            projection_dim=512,
            text_config=dict(
                vocab_size=len(tok),
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            ),
        )
    )
    clip = FrozenClip(model, tok).to(DEV)
    pixels = torch.randn(batch, frames, 3, size, size, device=DEV)
    sec = timed(lambda: clip.video_features(pixels), steps, warmup=2)
    return {
        "what": "CLIP video features",
        "variant": f"ViT-B/16, {model.config._attn_implementation}",
        "batch": batch,
        "videos_per_s": round(batch / sec, 1),
        "step_ms": round(sec * 1e3, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, default=32, help="videos per training step")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--variants", nargs="+", default=["eager", "sdpa", "sdpa+compile"])
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name() if DEV == "cuda" else platform.processor() or "cpu"
    peak = peak_flops(name)
    rows = []
    if True:
        for variant in args.variants:
            model = build_blip(args.size, args.frames).to(DEV)
            if variant.startswith("eager"):  # back to transformers' own attention
                for m in model.modules():
                    if type(m) is SdpaBlipAttention:
                        m.__class__ = BlipAttention
            if "compile" in variant:
                model.compile_vision()
            rows.append(train_row(model, args.batch, variant, args.steps, peak))
            print(json.dumps(rows[-1]), flush=True)
            del model
            if DEV == "cuda":
                torch.cuda.empty_cache()
        model = build_blip(args.size, args.frames).to(DEV)
        rows.append(generate_row(model, 2 * args.batch, 3, max(args.steps // 2, 2)))
        print(json.dumps(rows[-1]), flush=True)
    rows.append(clip_row(args.size, args.frames, 4 * args.batch, args.steps))
    print(json.dumps(rows[-1]), flush=True)
    meta = {
        "gpu": name,
        "peak_bf16_tflops": peak and peak / 1e12,
        "torch": torch.__version__,
        "frames": args.frames,
        "size": args.size,
        "python": platform.python_version(),
    }
    print(json.dumps(meta))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
