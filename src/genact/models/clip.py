"""Frozen CLIP: L2-normalised video and text features (REST §3.4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoTokenizer, CLIPModel

from genact.config import check_template
from genact.console import progress_bar
from genact.models.hub import load_preprocessor_config, load_weights, resolve_model_dir
from genact.models.precision import autocast
from genact.models.text_batches import length_sorted_batches, pad_right
from genact.store import EmbeddingCache


class FrozenClip(nn.Module):
    """HF CLIPModel in eval mode with gradients off; every output is L2-normalised."""

    def __init__(self, model: CLIPModel, tokenizer, preprocessor: dict | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor or {}
        self.source: Path | None = None  # the directory it was loaded from

    @classmethod
    def from_pretrained(cls, id_or_dir: str | os.PathLike) -> "FrozenClip":
        """Load CLIP from a hub id (e.g. openai/clip-vit-base-patch16) or a local dir."""
        path = resolve_model_dir(id_or_dir)
        clip = cls(
            load_weights(CLIPModel, path),
            AutoTokenizer.from_pretrained(path),
            load_preprocessor_config(path),
        )
        clip.source = path
        return clip

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    def train(self, mode: bool = True) -> "FrozenClip":
        return super().train(False)  # frozen: never leaves eval mode

    def video_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, T, 3, H, W) -> (B, D): mean of frame features, L2-normalised."""
        b, t = pixels.shape[:2]
        with autocast(self.device):  # bf16 on GPU
            frames = self.model.get_image_features(
                pixel_values=pixels.flatten(0, 1).to(self.device)
            ).pooler_output
        return nn.functional.normalize(frames.view(b, t, -1).float().mean(1), dim=-1)

    @torch.no_grad()
    def text_features(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """N strings -> (N, D) L2-normalised text features, in input order. Texts run in
        length-sorted batches, each padded to its own longest text."""
        out = torch.zeros(len(texts), self.dim)
        max_len = self.model.config.text_config.max_position_embeddings
        ids = self.tokenizer(texts, truncation=True, max_length=max_len).input_ids if texts else []
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        for rows in length_sorted_batches([len(i) for i in ids], batch_size):
            input_ids, mask = pad_right([ids[r] for r in rows], pad)
            with autocast(self.device):
                feats = self.model.get_text_features(
                    input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
                )
            out[rows] = nn.functional.normalize(feats.pooler_output.float(), dim=-1).cpu()
        return out

    def encode_texts(
        self,
        texts: list[str],
        cache: EmbeddingCache | None = None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> torch.Tensor:
        """Like text_features, but each distinct text is encoded once; with a cache,
        only texts never seen before are encoded. (N, D) on the CPU."""
        if cache is None:
            unique = list(dict.fromkeys(texts))
            feats = self.text_features(unique, batch_size)
            row = {t: i for i, t in enumerate(unique)}
            return feats[[row[t] for t in texts]]
        self.cache_texts(texts, cache, batch_size, progress)
        return cache.get(texts)

    def cache_texts(
        self, texts: list[str], cache: EmbeddingCache, batch_size: int = 256, progress: bool = False
    ) -> None:
        """Encode the texts that `cache` lacks into it (nothing is read back)."""
        todo = cache.missing(texts)
        steps = range(0, len(todo), batch_size * 16)  # length-sorted within each chunk
        for i in progress_bar(steps, desc="CLIP text features", enabled=bool(progress and todo)):
            chunk = todo[i : i + batch_size * 16]
            cache.put(chunk, self.text_features(chunk, batch_size))


def class_embeddings(
    clip: FrozenClip,
    class_names: Sequence[str],
    templates: Sequence[str] = ("{}",),
    cache: EmbeddingCache | None = None,
) -> torch.Tensor:
    """(C, D): per class, the L2-normalised mean of its prompt-template text features."""
    templates = [check_template(t) for t in templates]
    texts = [t.format(name) for name in class_names for t in templates]
    feats = clip.encode_texts(texts, cache).view(len(class_names), len(templates), -1)
    return F.normalize(feats.mean(1), dim=-1)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level alphabet: printable bytes map to themselves and come
    first; the other bytes follow, mapped to code points from 256 on."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    rest = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(rest)}}
