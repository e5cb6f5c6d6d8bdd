"""Wall time of a short REST run on the miniature world by torch CPU thread count and
decoding workers, on an idle machine and on one where other processes keep cores busy.

    python benchmarks/cpu_threads.py --out bench/cpu_threads.json

Settings: `torch` = torch's own default (one thread per core), `genact` = genact's
default (run.threads unset: cores / (1 + data.num_workers)), and 1 thread. Each run
is `genact rest` (288 videos, 4 epochs in 1 round, T = 4) in a fresh run directory;
"busy" starts `--busy` processes that spin on the CPU for the whole run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_helpers import shipped_world  # benchmarks/ is on sys.path when a script runs
from genact.world.demo_runs import DemoConfig, demo_settings


def spin() -> None:
    while True:
        pass


def rest_seconds(
    root: Path, settings: list[str], threads: int | None, workers: int, name: str
) -> float:
    extra = [f"data.num_workers={workers}", f"run.dir={root / 'runs' / name}"]
    if threads is not None:
        extra.append(f"run.threads={threads}")
    env = {
        k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"
    }  # genact's own default decides
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "genact", "rest", *settings, *extra, "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument(
        "--busy", type=int, default=max(os.cpu_count() // 2, 1), help="spinning processes when busy"
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world, blip, clip = shipped_world(root, train_per_class=12, test_per_class=1)
        settings = [
            *demo_settings(DemoConfig(), world, blip, clip, progress=False),
            "optim.epochs=4",
            "rest.epochs_per_round=4",
            "rest.neighbours=20",
            "rest.prompts=[a picture of]",
            "rest.max_new_tokens=8",
            "optim.batch_size=8",
            "optim.global_batch=16",
        ]
        for load in ("idle", "busy"):
            spinners = [
                mp.Process(target=spin, daemon=True)
                for _ in range(args.busy if load == "busy" else 0)
            ]
            for s in spinners:
                s.start()
            try:
                for workers in args.workers:
                    for label, threads in (
                        ("torch", torch.get_num_threads()),
                        ("genact", None),
                        ("1", 1),
                    ):
                        sec = rest_seconds(
                            root, settings, threads, workers, f"{load}-{workers}-{label}"
                        )
                        used = threads or max(1, cores // (1 + workers))
                        rows.append(
                            {
                                "machine": load,
                                "workers": workers,
                                "setting": label,
                                "threads": used,
                                "seconds": round(sec, 1),
                            }
                        )
                        print(json.dumps(rows[-1]), flush=True)
            finally:
                for s in spinners:
                    s.kill()
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "cores": cores,
        "busy_processes": args.busy,
        "torch": torch.__version__,
    }
    print(json.dumps(meta))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
