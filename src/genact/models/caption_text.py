"""A VideoBlip's training text: captions to token ids (what DataLoader workers run),
length buckets, and the per-token losses."""

from __future__ import annotations

import torch

MAX_CAPTION_TOKENS = 40  # prompt + caption + [SEP], in training
LENGTH_BUCKET = 8  # training captions are padded to a multiple of this


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (B, L, V), targets (B, L) -> (nll, smooth), each (B, L) float32: -log p of
    the target and the mean over the vocabulary of -log p (label smoothing's term), from
    one log-softmax. (F.cross_entropy gives only their blend, and a log-sum-exp form
    was slower on CPU: docs/performance.md, section 9.)"""
    logp = logits.float().log_softmax(-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1), -logp.mean(-1)


class CaptionTokenizer:
    """A VideoBlip's training text, without the model (what DataLoader workers hold):
    prompt + caption + [SEP], [DEC] first, padded to a multiple of LENGTH_BUCKET."""

    def __init__(self, model):  # a VideoBlip
        self.tokenizer, self.prompt, self.bos_id = (
            model.tokenizer,
            model.config.prompt,
            model.bos_id,
        )

    def encode(
        self, captions: list[str], max_length: int = MAX_CAPTION_TOKENS, pad_to: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), each (B, L): L the longest rounded up to the
        bucket, or `pad_to`."""
        enc = self.tokenizer(
            [f"{self.prompt} {c.strip()}" for c in captions],
            padding="longest" if pad_to is None else "max_length",
            pad_to_multiple_of=LENGTH_BUCKET if pad_to is None else None,
            max_length=max_length if pad_to is None else pad_to,
            truncation=True,
            return_tensors="pt",
        )
        enc.input_ids[:, 0] = self.bos_id
        return enc.input_ids, enc.attention_mask


def trim_to_bucket(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ids / mask (B, L) padded to a fixed length -> cut to the longest caption rounded up
    to LENGTH_BUCKET (what `CaptionTokenizer.encode` gives the same captions)."""
    length = -(-int(mask.sum(1).max()) // LENGTH_BUCKET) * LENGTH_BUCKET
    return ids[:, :length], mask[:, :length]
