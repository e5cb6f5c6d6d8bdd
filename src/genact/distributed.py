"""torchrun support: one process per GPU (or several on CPU), gloo on CPU, nccl on GPU.

Without torchrun's environment (RANK / WORLD_SIZE / LOCAL_RANK) everything here is a
no-op for a single process, so the same code runs both ways.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from genact.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def pick_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The device `name` asks for: auto (cuda when a GPU is visible, else cpu), cpu,
    cuda or cuda:N; under torchrun (`local_rank`), plain cuda is the process's GPU.
    Asking for cuda without a GPU is a ConfigError."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} asked for, but no CUDA GPU is visible")
        if ":" not in name and local_rank is not None:
            name = f"cuda:{local_rank}"
    return torch.device(name)


def init_distributed(device: str = "auto", timeout_min: int = 120) -> Dist:
    """Join the torchrun process group if there is one and pick this process's device.

    device: auto (the local GPU when there is one, else cpu), cpu, cuda or cuda:N.
    """
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local_rank if world > 1 else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
    return Dist(rank, world, local_rank, dev)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shard(indices: list[int], d: Dist) -> list[int]:
    """This process's share of `indices` (every world-th, from its rank)."""
    return indices[d.rank :: d.world]


def block(n: int, d: Dist) -> range:
    """This process's contiguous share of range(n) (the shares tile it in rank order)."""
    return range(d.rank * n // d.world, (d.rank + 1) * n // d.world)


def gather_to_main(obj, d: Dist) -> list | None:
    """Every process's `obj` (picklable) as a list in rank order on the main process;
    None on the others."""
    if not d.enabled:
        return [obj]
    out: list | None = [None] * d.world if d.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def union_keys(keys: list[str], d: Dist) -> list[str]:
    """The sorted union of every process's `keys` (so all take part in the same reductions)."""
    if not d.enabled:
        return sorted(keys)
    gathered: list = [None] * d.world
    dist.all_gather_object(gathered, list(keys))
    return sorted({k for ks in gathered for k in ks})


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    """Element-wise sum of a short list of floats over processes."""
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
