"""Fused attention for BLIP's ViT.

transformers' `BlipAttention` computes softmax(QK^T)V with two matmuls and keeps the
(B*T, heads, N, N) probabilities; it has no SDPA path. With T frames per video that
matrix dominates activation memory. `use_sdpa` makes the vision encoder's attention
call `torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
kernels on GPU) with the same weights and the same result up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.blip.modeling_blip import BlipAttention


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


def use_sdpa(vision_model: torch.nn.Module) -> int:
    """Switch every BlipAttention under `vision_model` to SDPA in place; returns how many."""
    count = 0
    for module in vision_model.modules():
        if type(module) is BlipAttention:
            module.__class__ = SdpaBlipAttention
            count += 1
    return count
