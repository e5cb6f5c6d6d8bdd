"""Mixed precision: bf16 autocast on GPU, full precision on CPU."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast on GPU (precision auto / bf16), full precision otherwise
    (`optim.precision` is checked when the config loads)."""
    use = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use else nullcontext()
