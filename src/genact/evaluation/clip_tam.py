"""CLIP-TAM: map a free-form caption to a class by CLIP text similarity (REST §4)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from genact.models.clip import FrozenClip, class_embeddings
from genact.store import EmbeddingCache


def caption_scores(caption_emb: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
    """Cosine of captions (N, D) to classes (C, D) -> (N, C)."""
    return F.normalize(caption_emb.float(), dim=-1) @ F.normalize(class_emb.float(), dim=-1).T


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Share (in %) of rows whose true label is among the k highest scores.
    scores (N, C), labels (N,)."""
    if len(labels) == 0:
        return float("nan")
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return 100.0 * (top == labels.view(-1, 1)).any(1).float().mean().item()


def per_class_accuracy(
    scores: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> list[float | None]:
    """Top-1 accuracy (%) of each class; None for classes with no test video."""
    pred = scores.argmax(1)
    out: list[float | None] = []
    for c in range(num_classes):
        sel = labels == c
        out.append(100.0 * (pred[sel] == c).float().mean().item() if sel.any() else None)
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) over splits or seeds."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


class ClipTam:
    """Classifies captions into `class_names` with a frozen CLIP."""

    def __init__(
        self,
        clip: FrozenClip,
        class_names: Sequence[str],
        templates: Sequence[str] = ("{}",),
        cache: EmbeddingCache | None = None,
    ):
        self.clip, self.class_names, self.cache = clip, list(class_names), cache
        self.class_emb = class_embeddings(clip, self.class_names, templates, cache)

    def scores(self, captions: Sequence[str]) -> torch.Tensor:
        """N captions -> (N, C) cosine scores."""
        return caption_scores(self.clip.encode_texts(list(captions), self.cache), self.class_emb)

    def topk(self, captions: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        """The k best (class name, cosine) per caption."""
        s = self.scores(captions)
        vals, idx = s.topk(min(k, s.shape[1]), dim=1)
        return [
            [(self.class_names[j], v) for j, v in zip(ri.tolist(), rv.tolist())]
            for ri, rv in zip(idx, vals)
        ]
