"""What the benchmark scripts share: random-weight BLIP models of the real
configurations (no weights are downloaded) and caption-like word sequences. Nothing
here needs PyAV or the test extra, so `gpu_all.py` runs where only torch and
transformers are installed."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BlipConfig, BlipForConditionalGeneration

from genact.models.video_blip import VideoBlip, VideoBlipConfig
from genact.models.word_tokenizers import blip_tokenizer

WORDS = (
    "a man woman person is playing riding cooking dancing guitar horse food on stage field kitchen "
    "with the of in and outside"
).split()


def tower_settings(hidden: int | None, layers: int) -> dict:
    """Config fields of a tower `hidden` wide and `layers` deep (64-wide heads, 4x MLPs);
    {} (the configuration's defaults, the base models') without `hidden`."""
    if hidden is None:
        return {}
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=4 * hidden,
        num_attention_heads=max(hidden // 64, 1),
    )


def random_blip(size: int, hidden: int | None = None, layers: int = 12):
    """A random-weight image BLIP and its tokenizer: transformers' default BLIP
    configuration (ViT-B/16 and the 12-layer BERT decoder, 30,524 word pieces), or,
    with `hidden`, both towers that wide and `layers` deep (64-wide heads, 4x MLPs)."""
    tok = blip_tokenizer(WORDS)
    torch.manual_seed(0)
    tower = tower_settings(hidden, layers)
    text = dict(
        vocab_size=30524,
        bos_token_id=tok.bos_token_id,
        sep_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        **tower,
    )
    if hidden is not None:
        text["encoder_hidden_size"] = hidden
    cfg = BlipConfig(
        text_config=text,
        vision_config=dict(image_size=size, patch_size=16, initializer_range=0.02, **tower),
    )
    return BlipForConditionalGeneration(cfg), tok


def captions(n: int, g: torch.Generator) -> list[str]:
    return [
        " ".join(WORDS[i] for i in torch.randint(len(WORDS), (12,), generator=g).tolist())
        for _ in range(n)
    ]


def shipped_world(root: Path, train_per_class: int, test_per_class: int) -> tuple[Path, Path, Path]:
    """The miniature world (seed 0) written below root/world, and the shipped tiny BLIP
    and CLIP: (world, blip, clip) directories."""
    from genact.world.demo_runs import foundation_models
    from genact.world.world import WorldConfig, build_world

    world = build_world(
        root / "world",
        WorldConfig(seed=0, train_per_class=train_per_class, test_per_class=test_per_class),
    )
    return (world, *foundation_models(root))


DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# dense bf16 tensor-core peak, FLOP/s (NVIDIA data sheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "B200": 2250e12}


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def blip(size, frames: int | None = None) -> VideoBlip:
    """A random VideoBlip of gpu_all's preset `size` (random_blip's towers) on DEV."""
    net, tok = random_blip(size.size, size.hidden, size.layers)
    return VideoBlip(net, tok, VideoBlipConfig(num_frames=frames or size.frames)).to(DEV)


def seed_table(title: str, rows: dict[str, dict[int, float]], seeds: list[int]) -> str:
    """The sweeps' summary: one line per setting (rows: {setting: {seed: difference in
    points}}) with its difference per seed, the mean, and on how many seeds it is above 0."""
    width = max(len(title), *map(len, rows)) + 2
    lines = [f"{title:<{width}}" + "".join(f"{f'seed {s}':>9}" for s in seeds) + "     mean"]
    for name, by_seed in rows.items():
        diffs = [by_seed[s] for s in seeds]
        mean, above = sum(diffs) / len(diffs), sum(d > 0 for d in diffs)
        cells = "".join(f"{d:+9.1f}" for d in diffs)
        lines.append(f"{name:<{width}}{cells}{mean:+9.1f}  above on {above} of {len(diffs)}")
    return "\n".join(lines)
