"""Fused attention for BLIP's ViT and text decoder.

transformers' `BlipAttention` and `BlipTextSelfAttention` compute softmax(QK^T)V with
two matmuls and keep the (rows, heads, queries, keys) probabilities; they have no SDPA
path. With T frames per video the ViT's matrix dominates activation memory, and in
training the text decoder's self- and cross-attention keep one per caption. `use_sdpa`
makes them call `torch.nn.functional.scaled_dot_product_attention` (flash /
memory-efficient kernels on GPU) with the same weights and the same result up to float
rounding. The text decoder's cached generation (transformers' generate, the reference
path) keeps transformers' own attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention


class SdpaBlipAttention(BlipAttention):
    """BlipAttention through SDPA; same parameters, same output (no attention weights)."""

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, None]:
        """hidden_states (B, N, d) -> ((B, N, d), None)."""
        b, n, d = hidden_states.shape
        q, k, v = (
            self.qkv(hidden_states)
            .view(b, n, 3, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
        )
        p = self.dropout.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale)
        return self.projection(out.transpose(1, 2).reshape(b, n, d)), None


class SdpaBlipTextSelfAttention(BlipTextSelfAttention):
    """BlipTextSelfAttention (self or cross) through SDPA when no cache is given, as in
    training and scoring; generation with a cache keeps transformers' computation."""

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, None]:
        """hidden_states (B, L, d) [, encoder_hidden_states (B, N, d_enc)] -> ((B, L, d), None);
        masks are transformers' additive ones, (B, 1, L or 1, L or N)."""
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:
            return super().forward(
                hidden_states,
                attention_mask,
                encoder_hidden_states,
                encoder_attention_mask,
                **kwargs,
            )
        cross = encoder_hidden_states is not None
        source = encoder_hidden_states if cross else hidden_states
        mask = encoder_attention_mask if cross else attention_mask
        heads = (-1, self.num_attention_heads, self.attention_head_size)
        q = self.query(hidden_states).view(*hidden_states.shape[:2], *heads[1:]).transpose(1, 2)
        k = self.key(source).view(*source.shape[:2], *heads[1:]).transpose(1, 2)
        v = self.value(source).view(*source.shape[:2], *heads[1:]).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None else mask.to(q.dtype),
            dropout_p=self.dropout.p if self.training else 0.0,
            # the decoder's self-attention is causal; transformers passes no mask only
            # when nothing else is masked
            is_causal=mask is None and not cross and self.config.is_decoder,
        )
        return out.transpose(1, 2).flatten(2), None


def use_sdpa(module: torch.nn.Module) -> int:
    """Switch every BlipAttention and BlipTextSelfAttention under `module` to SDPA in
    place; returns how many."""
    count = 0
    for m in module.modules():
        if type(m) is BlipAttention:
            m.__class__ = SdpaBlipAttention
            count += 1
        elif type(m) is BlipTextSelfAttention:
            m.__class__ = SdpaBlipTextSelfAttention
            count += 1
    return count
