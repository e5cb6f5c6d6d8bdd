"""The optimiser and its learning-rate schedule (no data code, so benchmarks import it
where PyAV is missing)."""

from __future__ import annotations

import math

import torch

from genact.config import OptimConfig


def lr_at(step: int, total: int, cfg: OptimConfig) -> float:
    """Learning rate of optimizer step `step` (0-based) of `total`: linear warm-up,
    then cosine from cfg.lr to cfg.min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(total - cfg.warmup_steps - 1, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and conv kernels, none on biases,
    norms and embeddings' 1-d parameters; the fused CUDA kernel when the model is on GPU."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)
