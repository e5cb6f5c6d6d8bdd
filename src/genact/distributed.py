"""torchrun support: one process per GPU (or several on CPU), gloo on CPU, nccl on GPU.

Without torchrun's environment (RANK / WORLD_SIZE / LOCAL_RANK) everything here is a
no-op for a single process, so the same code runs both ways.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as tdist

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


def cpu_threads(requested: int | None = None, workers: int = 0) -> int:
    """Set torch's CPU threads for this process and return the number: `requested`, else
    $OMP_NUM_THREADS when set (torchrun sets 1), else the cores this process may run on
    shared among the node's processes and their decoding workers:
    cores // (processes on the node x (1 + workers)), at least 1 (docs/performance.md)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if requested is None and env.isdigit() and int(env) > 0:
        requested = int(env)
    if requested is None:
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        requested = max(1, cores // (int(os.environ.get("LOCAL_WORLD_SIZE", 1)) * (1 + workers)))
    if requested != torch.get_num_threads():
        torch.set_num_threads(requested)
    return requested


def init_distributed(
    device: str = "auto", timeout_min: int = 120, *, threads: int | None = None, workers: int = 0
) -> Dist:
    """Join the torchrun process group if there is one, pick this process's device and
    set its CPU threads (see cpu_threads; `workers` = decoding workers per process).
    A command that trains and then evaluates joins once and passes its Dist down.

    device: auto (the local GPU when there is one, else cpu), cpu, cuda or cuda:N.
    """
    cpu_threads(threads, workers)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local_rank if world > 1 else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        tdist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
    return Dist(rank, world, local_rank, dev)


@contextmanager
def joined(
    device: str = "auto", timeout_min: int = 120, *, threads: int | None = None, workers: int = 0
) -> Iterator[Dist]:
    """init_distributed for the length of a `with` block (a command's processes), then cleanup."""
    dist = init_distributed(device, timeout_min, threads=threads, workers=workers)
    try:
        yield dist
    finally:
        cleanup(dist)


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


def shard(indices: list[int], dist: Dist) -> list[int]:
    """This process's share of `indices` (every world-th, from its rank)."""
    return indices[dist.rank :: dist.world]


def block(n: int, dist: Dist) -> range:
    """This process's contiguous share of range(n) (the shares tile it in rank order)."""
    return range(dist.rank * n // dist.world, (dist.rank + 1) * n // dist.world)


def gather_to_main(obj, dist: Dist) -> list | None:
    """Every process's `obj` (picklable) as a list in rank order on the main process;
    None on the others."""
    if not dist.enabled:
        return [obj]
    out: list | None = [None] * dist.world if dist.main else None
    tdist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj, dist: Dist) -> list:
    """Every process's `obj` (picklable) as a list in rank order, on every process."""
    if not dist.enabled:
        return [obj]
    out: list = [None] * dist.world
    tdist.all_gather_object(out, obj)
    return out


def union_keys(keys: list[str], dist: Dist) -> list[str]:
    """The sorted union of every process's `keys` (so all take part in the same reductions)."""
    return sorted({k for ks in all_gather(list(keys), dist) for k in ks})


def all_reduce_sum(values: list[float], dist: Dist) -> list[float]:
    """Element-wise sum of a short list of floats over processes."""
    if not dist.enabled:
        return values
    t = torch.tensor(
        values, dtype=torch.float64, device=dist.device if dist.device.type == "cuda" else "cpu"
    )
    tdist.all_reduce(t)
    return t.tolist()


def cleanup(dist: Dist) -> None:
    """Leave (destroy) the process group that init_distributed joined."""
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Plain timestamped logs on stderr (warnings only with --quiet, and on processes
    other than torchrun's rank 0); only errors from transformers / hub."""
    rank = int(os.environ.get("RANK", "0"))
    level = (
        logging.DEBUG if verbose else (logging.INFO if rank == 0 and not quiet else logging.WARNING)
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    import transformers

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the web app's requests to itself
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
