"""Length-sorted text batches: each batch is padded only to its own longest row.

A caption bank mixes 5-word captions with 30-word ones; padding every batch of a
random order to its longest row wastes most of the text encoder's work on padding.
Grouping texts of similar token length first keeps the padding to a token or two.
"""

from __future__ import annotations

import torch


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped into batches of at most `batch_size`, shortest rows first.
    Every index appears exactly once; ties keep their input order."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> (ids (B, L) padded on the right with pad_id, attention mask (B, L)),
    L the longest row."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


__all__ = ["length_sorted_batches", "pad_right"]
