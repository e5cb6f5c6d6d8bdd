"""Dependent jobs over a few processes: the demo's training runs on a machine's cores.

Each job runs with one CPU thread (the world's models are too small to gain from
more), so its result does not depend on how many run beside it: a demo on two
processes writes the same figures as one run job after job.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any


def default_workers() -> int:
    """Two processes where the machine has two cores for this one, else one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(2, cores or 1)


def _init_worker(level: int) -> None:
    """A spawned worker: one CPU thread, genact's logs at the parent's level."""
    from genact.distributed import cpu_threads, setup_logging

    cpu_threads(1)
    setup_logging(verbose=level <= logging.DEBUG, quiet=level > logging.INFO)


def _ready(jobs: dict[str, tuple[str, ...]], done: dict, started: set[str]) -> list[str]:
    return [n for n, deps in jobs.items() if n not in started and all(d in done for d in deps)]


def run_jobs(
    fn: Callable[..., Any], jobs: dict[str, tuple[str, ...]], args: tuple, *, workers: int
) -> dict[str, Any]:
    """`fn(name, *args)` for every job name, each after the jobs it lists have
    finished; among the ready ones the first in `jobs`' order starts first. With one
    worker, here, one after another; else on `workers` spawned processes (`fn` and
    `args` must pickle). Returns {name: fn's result}. A failing job raises once the
    jobs already running have finished."""
    unknown = {d for deps in jobs.values() for d in deps} - set(jobs)
    if unknown:
        raise ValueError(f"jobs depend on jobs not given: {sorted(unknown)}")
    done: dict[str, Any] = {}
    if workers <= 1:
        while len(done) < len(jobs):
            ready = _ready(jobs, done, set(done))
            if not ready:
                raise ValueError(f"jobs that wait on each other: {sorted(set(jobs) - set(done))}")
            done[ready[0]] = fn(ready[0], *args)
        return done
    running: dict[Future, str] = {}
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    level = logging.getLogger().getEffectiveLevel()
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(level,)
    ) as pool:
        while len(done) < len(jobs):
            for name in _ready(jobs, done, set(done) | set(running.values())):
                if len(running) < workers:
                    running[pool.submit(fn, name, *args)] = name
            if not running:
                raise ValueError(f"jobs that wait on each other: {sorted(set(jobs) - set(done))}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    return done
