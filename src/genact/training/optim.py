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
    norms and embeddings' 1-d parameters; the fused CUDA kernel when the model is on GPU.
    Each group's `lr_scale` multiplies the scheduled rate (`cfg.adapter_lr_scale` for
    the model's temporal adapters, which get groups of their own only when it is not 1)."""
    params = [p for p in model.parameters() if p.requires_grad]
    adapters = getattr(getattr(model, "module", model), "adapters", None)  # DDP or not
    scaled = (
        {id(p) for p in adapters.parameters()}
        if cfg.adapter_lr_scale != 1 and adapters is not None
        else set()
    )
    own = [p for p in params if id(p) in scaled]
    groups = _groups([p for p in params if id(p) not in scaled], cfg.weight_decay, 1.0)
    if own:
        groups += _groups(own, cfg.weight_decay, cfg.adapter_lr_scale)
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def _groups(params: list[torch.nn.Parameter], weight_decay: float, lr_scale: float) -> list[dict]:
    """Weight decay on matrices and kernels, none on 1-d parameters; `lr_scale` times
    the scheduled learning rate."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay, "lr_scale": lr_scale},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": lr_scale},
    ]
