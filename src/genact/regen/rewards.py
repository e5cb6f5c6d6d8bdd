"""ReGen's rewards (SPEC §6): class discrimination (CLS-R), video faithfulness
(CLIP-R) and grammar (GRAMMAR-R). Every reward maps captions to one float each,
higher is better, and never needs gradients.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from genact.errors import ConfigError
from genact.models.hub import load_weights, resolve_model_dir
from genact.models.text_batches import length_sorted_batches, pad_right


def cls_reward(
    caption_emb: torch.Tensor,
    class_emb: torch.Tensor,
    labels: torch.Tensor,
    form: str = "ce",
    tau: float = 0.01,
) -> torch.Tensor:
    """CLS-R. caption_emb (N, D), class_emb (C, D) L2-normalised, labels (N,) -> (N,).

    ce: log softmax(t·w_c / tau) at the true class; cos: cos(t_y, t); l2: -||t_y - t||.
    """
    if form == "ce":
        return (
            (caption_emb @ class_emb.T / tau).log_softmax(-1).gather(1, labels[:, None]).squeeze(1)
        )
    target = class_emb[labels]
    if form == "cos":
        return (caption_emb * target).sum(-1)
    if form == "l2":
        return -(caption_emb - target).norm(dim=-1)
    raise ValueError(f"regen.cls_form={form!r}: expected ce, cos or l2")


def clip_reward(caption_emb: torch.Tensor, video_emb: torch.Tensor) -> torch.Tensor:
    """CLIP-R: cosine of each caption (N, D) with its video's CLIP feature (N, D) -> (N,)."""
    return (caption_emb * video_emb).sum(-1)


class GrammarScorer:
    """GRAMMAR-R: how plausible a text is under a language model.

    mlm: pseudo-log-likelihood (each token masked in turn, scored by a masked LM such
    as BERT), averaged over tokens; the masked copies of all captions go through the
    model together, in length-sorted batches. causal: mean token log-likelihood under a
    causal LM (GPT-2), the first token conditioned on the model's BOS token (GPT-2: <|endoftext|>).
    """

    def __init__(self, model, tokenizer, kind: str):
        self.model, self.tokenizer, self.kind = model.eval().requires_grad_(False), tokenizer, kind

    HEADS = {"mlm": ("ForMaskedLM", "ForPreTraining"), "causal": ("ForCausalLM", "LMHeadModel")}

    @classmethod
    def check(cls, id_or_dir: str | os.PathLike, kind: str) -> Path:
        """The model's directory, after checking that it can be had (offline too) and
        that its head fits `kind` (a masked LM for mlm, a causal LM for causal)."""
        path = resolve_model_dir(id_or_dir)
        config = json.loads((path / "config.json").read_text())
        archs = config.get("architectures") or []
        if (
            archs
            and not any(a.endswith(cls.HEADS[kind]) for a in archs)
            or (
                kind == "causal"
                and config.get("model_type") in ("bert", "roberta")
                and not config.get("is_decoder")
            )
        ):
            other = "causal" if kind == "mlm" else "mlm"
            raise ConfigError(
                f"regen.grammar_model={id_or_dir} is a "
                f"{', '.join(archs) or config.get('model_type')}, "
                f"not a {'masked' if kind == 'mlm' else 'causal'} LM as regen.grammar={kind} needs "
                f"(set regen.grammar={other}, or give another model)"
            )
        return path

    @classmethod
    def from_pretrained(cls, id_or_dir: str | os.PathLike, kind: str = "mlm") -> "GrammarScorer":
        path = cls.check(id_or_dir, kind)
        auto = AutoModelForMaskedLM if kind == "mlm" else AutoModelForCausalLM
        return cls(load_weights(auto, path), AutoTokenizer.from_pretrained(path), kind)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> "GrammarScorer":
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(
        self, texts: list[str], max_tokens: int = 40, batch_size: int = 512
    ) -> torch.Tensor:
        """N texts -> (N,) mean log-likelihood per token (0 for an empty text)."""
        return (
            self._mlm(texts, max_tokens, batch_size)
            if self.kind == "mlm"
            else self._causal(texts, max_tokens)
        )

    def _mlm(self, texts: list[str], max_tokens: int, batch_size: int) -> torch.Tensor:
        tok = self.tokenizer
        enc = [
            tok(t, truncation=True, max_length=max_tokens + 2).input_ids for t in texts
        ]  # [CLS] ... [SEP]
        rows, owner, position = [], [], []
        for n, ids in enumerate(enc):
            for p in range(1, len(ids) - 1):  # every real token, masked in its own copy
                rows.append(ids)
                owner.append(n)
                position.append(p)
        out = torch.zeros(len(texts))
        if not rows:
            return out
        pos, own = torch.tensor(position), torch.tensor(owner)
        token_scores = torch.zeros(len(rows))
        # each padded to its longest
        for batch in length_sorted_batches([len(r) for r in rows], batch_size):
            ids, mask = pad_right([rows[i] for i in batch], tok.pad_token_id)
            at = torch.arange(len(batch))
            truth = ids[at, pos[batch]]
            ids[at, pos[batch]] = tok.mask_token_id
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).logits
            logp = (
                logits[at.to(logits.device), pos[batch].to(logits.device)].float().log_softmax(-1)
            )
            token_scores[batch] = (
                logp.gather(-1, truth[:, None].to(logits.device)).squeeze(-1).cpu()
            )
        counts = torch.zeros(len(texts)).index_add_(0, own, torch.ones(len(rows)))
        return out.index_add_(0, own, token_scores) / counts.clamp(min=1)

    def _causal(self, texts: list[str], max_tokens: int) -> torch.Tensor:
        tok = self.tokenizer
        candidates = (
            self.model.config.bos_token_id,
            tok.bos_token_id,
            tok.eos_token_id,
            tok.cls_token_id,
        )
        start = next(c for c in candidates if c is not None)
        enc = [
            [start]
            + tok(t, add_special_tokens=False, truncation=True, max_length=max_tokens).input_ids
            for t in texts
        ]
        pad = tok.pad_token_id if tok.pad_token_id is not None else start
        ids, mask = pad_right(enc, pad)
        logits = self.model(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
        ).logits.float()
        logp = (
            logits[:, :-1]
            .log_softmax(-1)
            .gather(-1, ids[:, 1:, None].to(logits.device))
            .squeeze(-1)
            .cpu()
        )
        keep = mask[:, 1:].float()
        return (logp * keep).sum(1) / keep.sum(1).clamp(min=1)


def standardise(r: torch.Tensor) -> torch.Tensor:
    """(r - mean) / std over a batch (std 0 gives zeros)."""
    std = r.std(unbiased=False)
    return (r - r.mean()) / std if std > 0 else torch.zeros_like(r)


def advantages(rewards: torch.Tensor, n: int, baseline: torch.Tensor | None = None) -> torch.Tensor:
    """Self-critical advantages. rewards (B * n,) grouped by clip. Baseline: the mean
    reward of the clip's other n - 1 samples, or `baseline` (B,) (e.g. the greedy
    caption's reward)."""
    r = rewards.view(-1, n)
    if baseline is not None:
        return (r - baseline[:, None]).flatten()
    if n < 2:
        raise ValueError("the leave-one-out baseline needs regen.samples >= 2")
    others = (r.sum(1, keepdim=True) - r) / (n - 1)
    return (r - others).flatten()


def text_stats(texts: list[str]) -> dict[str, float]:
    """Mean caption length in words and the share of distinct captions."""
    return {
        "caption_words": sum(len(t.split()) for t in texts) / max(len(texts), 1),
        "distinct_ratio": len(set(texts)) / max(len(texts), 1),
    }


__all__ = ["GrammarScorer", "advantages", "clip_reward", "cls_reward", "standardise", "text_stats"]
