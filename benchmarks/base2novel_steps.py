"""Base-to-novel fine-tuning in the world by optimizer steps and label smoothing: the
demo's REST and ReGen models of one seed fine-tuned on the 384 base shots, scored on
base (seen classes among the 24 seen names) and novel (unseen among the 12 unseen).

    genact demo --full --out demo-full      # or any demo folder with runs/rest, runs/regen
    python benchmarks/base2novel_steps.py --demo demo-full/seed-0 --settings 72:0.2 \\
        72:0 216:0 216:0.2 432:0 --json benchmarks/results/base2novel_steps_cpu.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from genact.data.splits import read_list
from genact.evaluation.base2novel import harmonic_mean
from genact.training.rundir import RunDir
from genact.world.demo import demo_tests
from genact.world.demo_runs import DemoConfig, foundation_models, run_demo_base2novel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo", type=Path, default=Path("demo-full/seed-0"))
    p.add_argument("--seed", type=int, default=0, help="the seed that demo was run with")
    p.add_argument("--models", nargs="+", default=["rest", "regen"])
    p.add_argument("--settings", nargs="+", default=["72:0.2", "216:0"], metavar="STEPS:SMOOTHING")
    p.add_argument("--out", type=Path, default=Path("bench/base2novel-steps"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    cfg = DemoConfig(seed=args.seed)
    world = args.demo / "world"
    tests = demo_tests(world, cfg.novel_words)
    tests = {"base": tests["base"], "unseen": tests["unseen"]}
    splits, videos = world / "splits", world / "videos"
    pool = read_list(splits / "fewshot_base.txt", videos, splits / "classes_seen.txt")
    clip_dir = foundation_models(args.demo, cfg)[1]
    demo = json.loads((args.demo / "demo.json").read_text())["rows"]
    rows = []
    for name in args.models:
        zero = {s: demo[name][s]["top1"] for s in ("base", "unseen")}
        print(f"{name} without fine-tuning: base {zero['base']:.1f}, novel {zero['unseen']:.1f}")
        for setting in args.settings:
            steps, smoothing = int(setting.split(":")[0]), float(setting.split(":")[1])
            res = run_demo_base2novel(
                replace(cfg, base2novel_steps=steps, fewshot_label_smoothing=smoothing),
                tests,
                pool,
                RunDir(args.demo / "runs" / name).final,
                clip_dir,
                args.out / f"seed{args.seed}-{name}-{steps}-{smoothing:g}",
                name="b2n",
                progress=False,
            )
            base, novel = (res["splits"][s]["top1"] for s in ("base", "unseen"))
            rows.append(
                {
                    "seed": args.seed,
                    "model": name,
                    "steps": steps,
                    "label_smoothing": smoothing,
                    "base": round(base, 2),
                    "novel": round(novel, 2),
                    "hm": round(harmonic_mean(base, novel), 2),
                    "base_without": round(zero["base"], 2),
                    "novel_without": round(zero["unseen"], 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        record = {"machine": "2-core VM, CPU", "world_version": 3, "rows": rows}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
