"""Length-sorted text batches: CLIP text features of a caption bank, genact vs the
batches in input order a user would write.

    python benchmarks/text_batches.py                      # 4,096 captions, ViT-B/16's text tower
    python benchmarks/text_batches.py --out benchmarks/results/text_batches_cpu.json

REST encodes every distinct caption with CLIP's text tower: up to T x 3 frame
captions per video at the start (millions for Kinetics-400), then each round's new
captions. Both sides load the same
random-weight CLIP (text tower of ViT-B/16: width 512, 12 layers, CLIP's real BPE of
49,408 tokens) from one saved directory and encode the same captions in batches of
the same size:
- plain: batches in input order, each tokenised with `padding=True`, then
  `get_text_features`;
- genact: `FrozenClip.text_features`, which tokenises once, sorts by token length and
  pads each batch to its own longest text.
Captions are random caption-like word sequences whose word counts are uniform in a
range: `narrow` (6-14 words, like BLIP's captions) and `wide` (3-30, like a bank that
mixes captioner output with longer web or LLM captions). The script checks that both
sides give the same features.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from genact.models.clip import FrozenClip
from genact.models.text_batches import length_sorted_batches
from genact.testing import clip_tokenizer  # CLIP's real BPE, from open_clip's merges file

WORDS = (
    "a man woman child dog person group of people is are playing riding holding throwing a ball "
    "guitar "
    "bike horse on in the at with field stage street water park near his her while wearing red "
    "blue shirt "
    "dancing running jumping swimming cooking kitchen snow beach slowly together into front crowd"
).split()
RANGES = {"narrow": (6, 14), "wide": (3, 30)}


def captions(n: int, words: tuple[int, int], seed: int = 0) -> list[str]:
    """n random caption-like texts with a word count uniform in `words`."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) for _ in range(n)]


def save_clip(directory: Path) -> Path:
    """Random CLIP with ViT-B/16's text tower (the vision tower is tiny: unused here)."""
    tok = clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
        ),
        projection_dim=512,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@torch.no_grad()
def plain_batches(clip: FrozenClip, texts: list[str], batch: int) -> tuple[torch.Tensor, int]:
    """Batches in input order, padded to each batch's longest text. -> (features, padded tokens)."""
    out, tokens = [], 0
    for s in range(0, len(texts), batch):
        enc = clip.tokenizer(
            texts[s : s + batch], padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        tokens += enc.input_ids.numel()
        feats = clip.model.get_text_features(
            input_ids=enc.input_ids, attention_mask=enc.attention_mask
        )
        out.append(torch.nn.functional.normalize(feats.pooler_output.float(), dim=-1))
    return torch.cat(out), tokens


def sorted_tokens(lengths: list[int], batch: int) -> int:
    """Token positions (padding included) that genact's length-sorted batches run."""
    return sum(len(b) * max(lengths[i] for i in b) for b in length_sorted_batches(lengths, batch))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--texts", type=int, default=4096)
    p.add_argument("--batch", type=int, default=256, help="FrozenClip.text_features' default")
    p.add_argument("--ranges", nargs="+", default=list(RANGES), choices=list(RANGES))
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} "
        f"threads, torch {torch.__version__}"
    )
    print(f"# {machine}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = FrozenClip.from_pretrained(save_clip(Path(tmp) / "clip"))
        for name in args.ranges:
            texts = captions(args.texts, RANGES[name])
            lengths = [
                len(i) for i in clip.tokenizer(texts, truncation=True, max_length=77).input_ids
            ]
            t0 = time.perf_counter()
            plain, plain_tokens = plain_batches(clip, texts, args.batch)
            t1 = time.perf_counter()
            ours = clip.text_features(texts, args.batch)
            t2 = time.perf_counter()
            assert torch.allclose(plain, ours, atol=1e-4), "length-sorted features differ"
            rows.append(
                {
                    "captions": name,
                    "words": RANGES[name],
                    "texts": args.texts,
                    "batch": args.batch,
                    "real_tokens": sum(lengths),
                    "plain_tokens": plain_tokens,
                    "sorted_tokens": sorted_tokens(lengths, args.batch),
                    "plain_s": round(t1 - t0, 1),
                    "genact_s": round(t2 - t1, 1),
                    "plain_texts_per_s": round(args.texts / (t1 - t0)),
                    "genact_texts_per_s": round(args.texts / (t2 - t1)),
                    "speed_up": round((t1 - t0) / (t2 - t1), 2),
                }
            )
            print(json.dumps(rows[-1]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
