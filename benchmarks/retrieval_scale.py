"""Time REST's retrieval (Algorithm 1 steps 3-4) at Kinetics scale on random unit vectors.

    python benchmarks/retrieval_scale.py                      # N = 20k, 60k, 240k; H = 2000, K = 3
    python benchmarks/retrieval_scale.py --sizes 20000 --device cuda

Each size runs in a fresh process so its peak memory is its own. Every video holds
K + 1 captions (its K plus the new one, as after a refresh) and all captions are
distinct, the worst case: M = N (K + 1) caption features. Prints one line per size:
seconds for the neighbour search and for the retrieval update, peak host memory
(RSS) and, on GPU, peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from genact.rest.retrieval import retrieval_update, video_neighbours


def one(n: int, h: int, k: int, dim: int, device: str, budget_mb: int) -> dict:
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1).half()  # stored as float16
    m = n * (k + 1)
    texts = torch.nn.functional.normalize(torch.randn(m, dim, generator=g), dim=1).half()
    captions = torch.randperm(m, generator=g).view(n, k + 1)
    with tempfile.TemporaryDirectory() as tmp:
        out = np.lib.format.open_memmap(os.path.join(tmp, "nb.npy"), mode="w+", dtype=np.int32, shape=(n, min(h, n)))
        t0 = time.perf_counter()
        video_neighbours(feats, h, device, out=out, budget_bytes=budget_mb << 20)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        ids, scores = retrieval_update(out, captions, feats, texts, k, device, budget_bytes=budget_mb << 20)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
    assert (ids >= 0).all() and torch.isfinite(scores).all()
    row = {"N": n, "H": h, "K": k, "M": m, "device": device, "neighbours_s": round(t1 - t0, 1),
           "retrieval_s": round(t2 - t1, 1), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    if device.startswith("cuda"):
        row["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 60_000, 240_000])
    p.add_argument("--neighbours", type=int, default=2000)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget-mb", type=int, default=512, help="score-block memory per chunk")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.sizes[0], args.neighbours, args.keep, args.dim, args.device, args.budget_mb)))
        return
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "-"
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, GPU: {gpu}")
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", "--sizes", str(n), "--neighbours", str(args.neighbours),
               "--keep", str(args.keep), "--dim", str(args.dim), "--device", args.device,
               "--budget-mb", str(args.budget_mb)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        print(out.stdout.strip() if out.returncode == 0 else f"N={n}: failed: {out.stderr.strip()[-500:]}", flush=True)


if __name__ == "__main__":
    main()
