"""Few-shot fine-tuning from the demo's REST model, by learning rate and training
setting: unseen top-1 of M-shot fine-tuning against REST's zero-shot top-1, per seed
and, with several seeds' demos, their mean.

    genact demo --out demo
    python benchmarks/fewshot_sweep.py --demo demo --out bench/fewshot_sweep.json
    genact demo --full --out demo-full          # then every seed's demo:
    python benchmarks/fewshot_sweep.py --full demo-full --lrs 1e-3 --rehearse \\
        --variant nols:optim.label_smoothing=0 --variant frozen:optim.freeze_video_encoder=true
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from bench_helpers import seed_table  # benchmarks/ is on sys.path when a script runs
from genact.data import read_list
from genact.training.rundir import RunDir
from genact.world.demo_runs import DemoConfig, foundation_models, run_demo_fewshot


def sweep(demo: Path, seed: int, args, variants: dict[str, list[str]]) -> tuple[float, list]:
    """(REST's top-1, rows) of one seed's demo folder."""
    cfg = DemoConfig(seed=seed)
    splits, videos = demo / "world" / "splits", demo / "world" / "videos"
    test = read_list(splits / "test.txt", videos, splits / "classes_unseen.txt")
    pool = read_list(splits / "fewshot.txt", videos, splits / "classes_unseen.txt")
    clip_dir = foundation_models(demo)[1]
    rest = json.loads((demo / "demo.json").read_text())["rows"]["rest"]["unseen"]["top1"]
    rest_run, rows = RunDir(demo / "runs" / "rest"), []
    for lr in args.lrs:
        for shots in args.shots:
            for name, extra in variants.items():
                for rehearse in (False, True) if args.rehearse else (False,):
                    res = run_demo_fewshot(
                        replace(cfg, fewshot_lr=lr),
                        test,
                        pool,
                        shots,
                        rest_run.final,
                        clip_dir,
                        demo / "fewshot-sweep" / f"lr{lr:g}{'-' + name if name else ''}",
                        progress=False,
                        rehearse=rest_run.path if rehearse else None,
                        extra=extra,
                    )
                    rows.append(
                        {
                            "seed": seed,
                            "lr": lr,
                            "shots": shots,
                            "variant": name,
                            "rehearsed": rehearse,
                            "top1": round(res["splits"]["unseen"]["top1"], 2),
                            "vs_rest": round(res["splits"]["unseen"]["top1"] - rest, 2),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    return rest, rows


def summary(rows: list[dict], seeds: list[int]) -> str:
    """One line per setting: its top-1 minus REST's, per seed and on average."""
    table: dict[str, dict[int, float]] = {}
    for r in rows:
        kind = ("rehearsed" if r["rehearsed"] else "class names") + (
            f", {r['variant']}" if r["variant"] else ""
        )
        table.setdefault(f"lr {r['lr']:g}, {r['shots']}-shot, {kind}", {})[r["seed"]] = r["vs_rest"]
    return seed_table("setting", table, seeds)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--demo", default="demo")
    p.add_argument("--seed", type=int, default=0, help="the seed that demo was run with")
    p.add_argument("--full", type=Path, help="a `genact demo --full` folder: every seed-N in it")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 2e-4, 5e-5])
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="also run with these training settings (e.g. frozen:optim.freeze_video_encoder=true)",
    )
    p.add_argument("--shots", type=int, nargs="+", default=[2, 8])
    p.add_argument(
        "--rehearse",
        action="store_true",
        help="also rehearse REST's videos and pseudo-captions beside the shots",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    variants = {"": []} | {v.split(":")[0]: v.split(":", 1)[1].split(",") for v in args.variant}
    demos = (
        sorted((int(d.name.split("-")[1]), d) for d in args.full.glob("seed-*"))
        if args.full
        else [(args.seed, Path(args.demo))]
    )
    rest, rows = {}, []
    for seed, demo in demos:
        rest[seed], seed_rows = sweep(demo, seed, args, variants)
        rows += seed_rows
    print("REST zero-shot: " + ", ".join(f"seed {s} {v:.1f}" for s, v in rest.items()))
    print("top-1 minus REST's, in points")
    print(summary(rows, list(rest)))
    if args.out:
        Path(args.out).write_text(json.dumps({"rest_top1": rest, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
