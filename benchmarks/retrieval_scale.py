"""Time REST's retrieval (Algorithm 1 steps 3-4) at Kinetics scale on random unit vectors.

    python benchmarks/retrieval_scale.py                      # N = 20k, 60k, 240k; H = 2000, K = 3
    python benchmarks/retrieval_scale.py --sizes 20000 --device cuda
    # + FAISS IVF: time, recall@H
    python benchmarks/retrieval_scale.py --faiss 16 64 --data clustered

Each size runs in a fresh process so its peak memory is its own. Every video holds
K + 1 captions (its K plus the new one, as after a refresh) and all captions are
distinct, the worst case: M = N (K + 1) caption features. The straightforward
per-video loop (one video's neighbours, candidates and scores at a time) is timed on
`--baseline` videos and extrapolated to N. Prints one line per size:
seconds for the neighbour search and for the retrieval update, peak host memory
(RSS) and, on GPU, peak GPU memory. With `--faiss NPROBE ...` it also times the
approximate FAISS IVF neighbours (`rest.neighbour_index=faiss-ivf`) and their
recall@H against the exact ones (on 2,000 sampled videos). `--data clustered` draws
the video features around 400 centres (as Kinetics-400 classes would put them)
instead of uniformly. Uniform vectors are the worst case for an inverted-file index
(no structure for its lists to follow); clustered ones are closer to real features.
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

from genact.rest.retrieval import approximate_neighbours, retrieval_update, video_neighbours


def video_features(n: int, dim: int, data: str, g: torch.Generator) -> torch.Tensor:
    """(n, dim) unit vectors: uniform, or around 400 random centres."""
    x = torch.randn(n, dim, generator=g)
    if data == "clustered":
        centres = torch.nn.functional.normalize(torch.randn(400, dim, generator=g), dim=1)
        x = centres[torch.randint(400, (n,), generator=g)] + 0.04 * x  # in-class cosine ~0.55
    return torch.nn.functional.normalize(x, dim=1)


def per_video_seconds(
    feats: torch.Tensor, texts: torch.Tensor, captions: torch.Tensor, h: int, k: int, count: int
) -> float:
    """Seconds per video of the straightforward loop a user would write: this video's
    cosines to all videos and their top H, its candidates as a Python set, their
    scores, the top K."""
    f, t, caps = feats.float(), texts.float(), captions.tolist()
    t0 = time.perf_counter()
    for i in range(count):
        nb = (f @ f[i]).topk(h).indices.tolist()
        cands = sorted({c for j in nb for c in caps[j]} | set(caps[i]))
        (t[cands] @ f[i]).topk(k)
    return (time.perf_counter() - t0) / count


def one(
    n: int,
    h: int,
    k: int,
    dim: int,
    device: str,
    budget_mb: int,
    data: str,
    nprobes: list[int],
    baseline: int,
    only_baseline: bool,
) -> dict:
    g = torch.Generator().manual_seed(0)
    feats = video_features(n, dim, data, g).half()  # stored as float16
    m = n * (k + 1)
    texts = torch.nn.functional.normalize(torch.randn(m, dim, generator=g), dim=1).half()
    captions = torch.randperm(m, generator=g).view(n, k + 1)
    row = {"N": n, "H": h, "K": k, "M": m, "data": data, "device": device}
    if baseline:
        per = per_video_seconds(feats, texts, captions, min(h, n), k, min(baseline, n))
        row.update(
            per_video_loop_s_per_video=round(per, 4), per_video_loop_extrapolated_s=round(per * n)
        )
    if only_baseline:
        return row
    with tempfile.TemporaryDirectory() as tmp:
        out = np.lib.format.open_memmap(
            os.path.join(tmp, "nb.npy"), mode="w+", dtype=np.int32, shape=(n, min(h, n))
        )
        t0 = time.perf_counter()
        video_neighbours(feats, h, device, out=out, budget_bytes=budget_mb << 20)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        ids, scores = retrieval_update(
            out, captions, feats, texts, k, device, budget_bytes=budget_mb << 20
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the exact path's peak
        approx = {}
        rows = np.random.default_rng(0).choice(n, min(n, 2000), replace=False)
        for nprobe in nprobes:
            t3 = time.perf_counter()
            found = approximate_neighbours(feats, h, nprobe)
            recall = np.mean(
                [len(set(found[i].tolist()) & set(out[i].tolist())) / out.shape[1] for i in rows]
            )
            approx[f"faiss_nprobe{nprobe}"] = {
                "s": round(time.perf_counter() - t3, 1),
                "recall": round(float(recall), 4),
            }
            del found
    assert (ids >= 0).all() and torch.isfinite(scores).all()
    row.update(
        neighbours_s=round(t1 - t0, 1), retrieval_s=round(t2 - t1, 1), peak_rss_gb=round(peak, 2)
    )
    if approx:
        row.update(
            approx,
            peak_rss_with_faiss_gb=round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
            ),
        )
    if device.startswith("cuda"):
        row["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 60_000, 240_000])
    p.add_argument("--neighbours", type=int, default=2000)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget-mb", type=int, default=512, help="score-block memory per chunk")
    p.add_argument("--data", default="random", choices=["random", "clustered"])
    p.add_argument(
        "--faiss",
        type=int,
        nargs="*",
        default=[],
        metavar="NPROBE",
        help="also FAISS IVF at these nprobe",
    )
    p.add_argument(
        "--baseline",
        type=int,
        default=200,
        metavar="V",
        help="time the straightforward per-video loop on V videos and extrapolate to N (0: skip)",
    )
    p.add_argument("--only-baseline", action="store_true", help="just that")
    p.add_argument("--out", help="append the rows as JSON lines here")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(
            json.dumps(
                one(
                    args.sizes[0],
                    args.neighbours,
                    args.keep,
                    args.dim,
                    args.device,
                    args.budget_mb,
                    args.data,
                    args.faiss,
                    args.baseline,
                    args.only_baseline,
                )
            )
        )
        return
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "-"
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, "
        f"{torch.get_num_threads()} threads, GPU: {gpu}"
    )
    for n in args.sizes:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            "--sizes",
            str(n),
            "--neighbours",
            str(args.neighbours),
            "--keep",
            str(args.keep),
            "--dim",
            str(args.dim),
            "--device",
            args.device,
            "--budget-mb",
            str(args.budget_mb),
            "--data",
            args.data,
            "--baseline",
            str(args.baseline),
            "--faiss",
            *map(str, args.faiss),
        ]
        cmd += ["--only-baseline"] if args.only_baseline else []
        out = subprocess.run(cmd, capture_output=True, text=True)
        print(
            out.stdout.strip()
            if out.returncode == 0
            else f"N={n}: failed: {out.stderr.strip()[-500:]}",
            flush=True,
        )
        if args.out and out.returncode == 0:
            with open(args.out, "a") as f:
                f.write(out.stdout.strip() + "\n")


if __name__ == "__main__":
    main()
