"""REST's temporal adapters on the miniature world: how fast should they learn?

    genact demo --full --out demo-full      # every seed's world and its rows
    python benchmarks/adapter_lr.py --full demo-full --scales 1 3 5 10 30 --jobs 2 \
        --out bench/adapter_lr.json

The adapters are new in REST and start at zero, while the rest of the captioner is
pretrained; `optim.adapter_lr_scale` trains them at a multiple of REST's rate. Each
scale trains the demo's REST row again (its other settings unchanged) into
seed-N/adapter-lr/xSCALE and scores the unseen test split. Per seed and scale: unseen
top-1 and its difference from the demo's REST without adapters on the same videos,
then per scale the mean and on how many seeds REST is above it. The demo's own scale
is read from the demo's REST row instead of being trained again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_helpers import seed_table  # benchmarks/ is on sys.path when a script runs
from genact.models import FrozenClip
from genact.world.demo import demo_record, demo_tests, score_row
from genact.world.demo_runs import DemoConfig, demo_settings, foundation_models, run_demo_rest
from genact.world.jobs import run_jobs


def right(demo: Path, row: str) -> str:
    """The demo's per-video outcomes of `row` on the unseen split (1 right, 0 wrong)."""
    return json.loads((demo / "demo.json").read_text())["rows"][row]["unseen"]["right"]


def run_scale(scale: float, demo: Path, seed: int) -> dict:
    """REST with its adapters at `scale` x its rate on `demo`'s world: the row."""
    cfg = DemoConfig(seed=seed, adapter_lr_scale=scale)
    start = time.time()
    if scale == DemoConfig().adapter_lr_scale:
        outcomes = right(demo, "rest")
    else:
        blip, clip_dir = foundation_models(demo, cfg)
        run_dir = demo / "adapter-lr" / f"x{scale:g}"
        common = demo_settings(cfg, demo / "world", blip, clip_dir, progress=False)
        model = run_demo_rest(cfg, common, demo, "rest", extra=(f"run.dir={run_dir}",))
        test = demo_tests(demo / "world")["unseen"]
        res = score_row(
            {"unseen": test},
            model,
            FrozenClip.from_pretrained(clip_dir),
            method="genact",
            cfg=cfg,
            out=run_dir / "eval",
            cache=demo / "cache",
            clip_dir=clip_dir,
            progress=False,
        )
        outcomes = demo_record(cfg, {"unseen": test}, {"x": res})["rows"]["x"]["unseen"]["right"]
    without = right(demo, "rest-no-adapters")
    pairs = [(a, b) for a, b in zip(outcomes, without) if "-" not in (a, b)]
    top1 = 100 * sum(a == "1" for a, _ in pairs) / len(pairs)
    base = 100 * sum(b == "1" for _, b in pairs) / len(pairs)
    row = {
        "scale": scale,
        "seed": seed,
        "top1": round(top1, 2),
        "no_adapters_top1": round(base, 2),
        "vs_no_adapters": round(top1 - base, 2),
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def _job(name: str, demos: dict[int, Path]) -> dict:
    """A run_jobs job named "SEED/SCALE"."""
    seed, scale = name.split("/")
    return run_scale(float(scale), demos[int(seed)], int(seed))


def summary(rows: list[dict], seeds: list[int]) -> str:
    """One line per scale: REST minus REST without adapters per seed, the mean, and on
    how many seeds it is above."""
    table = {
        f"{scale:g}": {r["seed"]: r["vs_no_adapters"] for r in rows if r["scale"] == scale}
        for scale in dict.fromkeys(r["scale"] for r in rows)
    }
    return seed_table("adapter lr scale", table, seeds)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--full", type=Path, required=True, help="a `genact demo --full` folder")
    p.add_argument("--scales", type=float, nargs="+", default=[1, 3, 5, 10, 30])
    p.add_argument("--jobs", type=int, default=1, help="runs side by side, one thread each")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    demos = dict(sorted((int(d.name.split("-")[1]), d) for d in args.full.glob("seed-*")))
    missing = [str(d) for d in demos.values() if not (d / "demo.json").is_file()]
    if not demos or missing:
        p.error(f"no finished demo in {', '.join(missing) or args.full} (run genact demo first)")
    if not all(s > 0 for s in args.scales):
        p.error("--scales must be positive")
    jobs = {f"{seed}/{scale:g}": () for seed in demos for scale in args.scales}
    done = run_jobs(_job, jobs, (demos,), workers=args.jobs)
    rows = [done[name] for name in jobs]
    print(summary(rows, list(demos)))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
