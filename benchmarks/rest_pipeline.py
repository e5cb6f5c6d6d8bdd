"""Every stage of a REST run at BLIP-base / CLIP ViT-B/16 size (random weights) on
synthetic clips: videos/s per stage on this machine, and the wall time a full K400
REST run (240k videos, 60 epochs, 6 rounds) would take here, projected from them.

    python benchmarks/rest_pipeline.py --out bench/rest_pipeline.json          # GPU: the real sizes
    python benchmarks/rest_pipeline.py --videos 4 --size 32 --hidden 64 --layers 2 \
        --neighbour-videos 2048

Stages (Algorithm 1): initial captions (each of T frames under each of 3 prompts,
beam search), CLIP video features, CLIP text features of the bank's captions,
video neighbours (top-H by cosine, quadratic in N), the retrieval update (Eqs.
5-6), training steps (LM loss, AdamW), and caption generation (the refresh of
every round and evaluation both caption each video once with beam search).
Clips are random pixels already in memory, so decoding is not counted here
(benchmarks/decode.py measures it; genact's frame cache takes it off training).
Captions are forced to `--tokens` new tokens, about what REST's captions have.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from bench_helpers import (  # benchmarks/ is on sys.path when a script runs
    DEV,
    WORDS,
    captions,
    random_blip,
    sync,
    tower_settings,
)
from genact.config import DEFAULT_PROMPTS, OptimConfig
from genact.distributed import cpu_threads
from genact.models.clip import FrozenClip
from genact.models.precision import autocast
from genact.models.video_blip import VideoBlip, VideoBlipConfig
from genact.models.word_tokenizers import clip_tokenizer
from genact.rest.retrieval import retrieval_update, video_neighbours
from genact.training.optim import build_optimizer

K400 = {
    "videos": 240_000,
    "epochs": 60,
    "rounds": 6,
    "eval_videos": 42_000,
}  # K600's 3 zero-shot test splits
CAPTIONS_PER_VIDEO = (
    10  # distinct initial captions per video (T = 8 frames x 3 prompts, after merging)
)


def per_second(fn, items: int, batch: int) -> float:
    """Items per second of fn(n) called on batches of `batch` covering `items`, after one
    warm-up call."""
    fn(min(batch, items))
    sync()
    t0 = time.perf_counter()
    for s in range(0, items, batch):
        fn(min(batch, items - s))
    sync()
    return items / (time.perf_counter() - t0)


def build_clip(size: int, hidden: int | None, layers: int) -> FrozenClip:
    tok = clip_tokenizer(WORDS)
    tower = tower_settings(hidden, layers)
    cfg = CLIPConfig(
        vision_config=dict(image_size=size, patch_size=16, **tower),
        text_config=dict(
            vocab_size=len(tok),
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **tower,
        ),
        projection_dim=512 if hidden is None else hidden,
    )
    return FrozenClip(CLIPModel(cfg), tok).to(DEV)


def model_stages(model: VideoBlip, clip: FrozenClip, args) -> dict[str, float]:
    """Videos (or texts) per second of the stages that run the two models."""
    t, size, g = args.frames, args.size, torch.Generator().manual_seed(0)
    clips = lambda n: torch.randn(n, t, 3, size, size, device=DEV)  # noqa: E731
    decode = dict(num_beams=args.beams, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    model.eval()

    def initial(n: int) -> None:
        with torch.no_grad(), autocast(DEV):
            # each frame a one-frame clip
            memory = model.encode_video(clips(n).flatten(0, 1).unsqueeze(1))
            model.caption_prompts(memory, list(DEFAULT_PROMPTS), **decode)

    def generate(n: int) -> None:
        with torch.no_grad(), autocast(DEV):
            model.generate(clips(n), **decode)

    texts = captions(args.videos * CAPTIONS_PER_VIDEO, g)
    rates = {
        "initial captions": per_second(initial, args.videos, args.caption_batch),
        "CLIP video features": per_second(
            lambda n: clip.video_features(clips(n)), args.videos, args.clip_batch
        ),
        "CLIP text features": per_second(lambda n: clip.text_features(texts[:n]), len(texts), 256),
    }
    model.train()
    opt = build_optimizer(model, OptimConfig(lr=1e-5))

    def train(n: int) -> None:
        with autocast(DEV):
            loss = model(clips(n), captions(n, g), label_smoothing=0.2).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    rates["training"] = per_second(train, max(args.videos, 2 * args.train_batch), args.train_batch)
    rates["caption generation"] = per_second(generate, args.videos, args.caption_batch)
    return rates


def retrieval_stages(args) -> dict[str, float]:
    """Seconds of the neighbour search and of one retrieval update over
    `--neighbour-videos` videos."""
    n, g = args.neighbour_videos, torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(n, 512, generator=g), dim=-1)
    t0 = time.perf_counter()
    neighbours = video_neighbours(feats, min(args.neighbours, n), DEV)
    sync()
    seconds = {"video neighbours": time.perf_counter() - t0}
    per_video = 12  # K kept + new captions per round, as the bank holds them
    texts = F.normalize(torch.randn(n * per_video, 512, generator=g), dim=-1)
    ids = torch.arange(n * per_video).view(n, per_video)
    t0 = time.perf_counter()
    retrieval_update(neighbours, ids, feats, texts, args.keep, DEV)
    sync()
    seconds["retrieval update"] = time.perf_counter() - t0
    return seconds


def project(rates: dict[str, float], seconds: dict[str, float], n: int) -> dict[str, float]:
    """Hours per stage of a K400 REST run (and of captioning K600's zero-shot test
    videos) on this machine."""
    v, rounds = K400["videos"], K400["rounds"]
    hours = {
        "initial captions": v / rates["initial captions"],
        "CLIP video features": v / rates["CLIP video features"],
        "CLIP text features": v * (CAPTIONS_PER_VIDEO + rounds - 1) / rates["CLIP text features"],
        "video neighbours": seconds["video neighbours"] * (v / n) ** 2,
        "retrieval update": rounds * seconds["retrieval update"] * v / n,
        "training": K400["epochs"] * v / rates["training"],
        "caption refresh": (rounds - 1) * v / rates["caption generation"],
    }
    hours = {k: s / 3600 for k, s in hours.items()}
    hours["REST total"] = sum(hours.values())
    hours["evaluation captioning (K600 zero-shot, 3 splits)"] = (
        K400["eval_videos"] / rates["caption generation"] / 3600
    )
    return hours


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--videos", type=int, default=64, help="synthetic clips per model stage")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument(
        "--hidden", type=int, default=None, help="narrower towers (default: BLIP-base / ViT-B/16)"
    )
    p.add_argument("--layers", type=int, default=12, help="with --hidden: layers per tower")
    p.add_argument("--caption-batch", type=int, default=32)
    p.add_argument("--clip-batch", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--beams", type=int, default=3)
    p.add_argument("--tokens", type=int, default=15, help="new tokens per caption")
    p.add_argument(
        "--neighbour-videos",
        type=int,
        default=32768,
        help="videos for the neighbour and retrieval stages",
    )
    p.add_argument("--neighbours", type=int, default=2000, help="H")
    p.add_argument("--keep", type=int, default=3, help="K")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: genact's, see cpu_threads)",
    )
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = p.parse_args()
    cpu_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    blip, tok = random_blip(args.size, args.hidden, args.layers)
    model = VideoBlip(blip, tok, VideoBlipConfig(num_frames=args.frames)).to(DEV)
    rates = model_stages(model, build_clip(args.size, args.hidden, args.layers), args)
    seconds = retrieval_stages(args)
    hours = project(rates, seconds, args.neighbour_videos)
    machine = (
        torch.cuda.get_device_name()
        if DEV.type == "cuda"
        else f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(
        f"REST stages on {machine} "
        f"({'BLIP-base' if args.hidden is None else f'hidden {args.hidden}'}, "
        f"{args.frames} x {args.size}px frames, beam {args.beams}, {args.tokens} tokens)"
    )
    for name, rate in rates.items():
        unit = "texts/s" if "text" in name else "videos/s"
        print(f"  {name:<24} {rate:>10.1f} {unit}")
    for name, s in seconds.items():
        print(f"  {name:<24} {s:>10.2f} s for {args.neighbour_videos} videos")
    print("projected for K400 REST (240k videos, 60 epochs, 6 rounds) on this device:")
    for name, h in hours.items():
        print(f"  {name:<50} {h:>10.1f} h")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "machine": machine,
                    "settings": vars(args),
                    "rates": rates,
                    "seconds": seconds,
                    "projected_hours": hours,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
