"""`genact eval` with 1 process and with N torchrun processes on the same videos:
wall time, videos/s and the speed-up, captions checked identical.

    python benchmarks/eval_scaling.py --procs 2 --out bench/eval_scaling.json

The videos are the miniature world's test split (480 clips), the model the shipped
tiny captioner as a video model (T = 4), each run with a fresh cache. The cores are
shared out: one process gets all of them, N processes get cores / N threads each.
On a GPU machine pass --device cuda: each process then takes its own GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_helpers import shipped_world  # benchmarks/ is on sys.path when a script runs
from genact.training.rundir import RunDir


def run_eval(
    world: Path, blip: Path, clip: Path, out: Path, procs: int, device: str, threads: int
) -> float:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
        if procs > 1
        else [sys.executable]
    )
    cmd = [
        *launcher,
        "-m",
        "genact",
        "eval",
        "--protocol",
        "list",
        "--data-root",
        str(world / "videos"),
        "--splits",
        str(world / "splits" / "test.txt"),
        "--classes",
        str(world / "splits" / "classes_unseen.txt"),
        "--model",
        str(blip),
        "--clip",
        str(clip),
        "--frames",
        "4",
        "--max-new-tokens",
        "8",
        "--device",
        device,
        "--threads",
        str(threads),
        "--cache-dir",
        str(out / "cache"),
        "--out",
        str(out),
        "--quiet",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world, blip, clip = shipped_world(root, train_per_class=1, test_per_class=40)
        captions = {}
        for procs in (1, args.procs):
            threads = max(cores // procs, 1)
            sec = run_eval(world, blip, clip, root / f"p{procs}", procs, args.device, threads)
            res = RunDir(root / f"p{procs}").read_results()["splits"]["test"]
            captions[procs] = [v["caption"] for v in res["videos"]]
            rows.append(
                {
                    "processes": procs,
                    "threads_each": threads,
                    "videos": res["num_videos"],
                    "seconds": round(sec, 1),
                    "videos_per_s": round(res["num_videos"] / sec, 1),
                    "top1": res["top1"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    same = captions[1] == captions[args.procs]
    speedup = rows[0]["seconds"] / rows[1]["seconds"]
    print(f"{args.procs} processes: {speedup:.2f}x one process; captions identical: {same}")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "cores": cores,
                    "device": args.device,
                    "rows": rows,
                    "speedup": round(speedup, 2),
                    "captions_identical": same,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
