"""Few-shot fine-tuning from the demo's REST model at several learning rates: unseen
top-1 of 2- and 8-shot against REST's zero-shot top-1.

    genact demo --out demo
    python benchmarks/fewshot_sweep.py --demo demo --out bench/fewshot_sweep.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from genact.data import read_list
from genact.training.rundir import RunDir
from genact.world.demo import DemoConfig, foundation_models, run_demo_fewshot


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--demo", default="demo")
    p.add_argument("--seed", type=int, default=0, help="the seed that demo was run with")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 2e-4, 5e-5])
    p.add_argument(
        "--rehearse",
        action="store_true",
        help="also rehearse REST's videos and pseudo-captions beside the shots",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    demo, cfg = Path(args.demo), DemoConfig(seed=args.seed)
    splits, videos = demo / "world" / "splits", demo / "world" / "videos"
    test = read_list(splits / "test.txt", videos, splits / "classes_unseen.txt")
    pool = read_list(splits / "fewshot.txt", videos, splits / "classes_unseen.txt")
    clip_dir = foundation_models(demo)[1]
    rest = json.loads((demo / "demo.json").read_text())["rows"]["rest"]["unseen"]["top1"]
    rows = []
    rest_run = RunDir(demo / "runs" / "rest")
    for lr in args.lrs:
        for shots in (2, 8):
            for rehearse in (False, True) if args.rehearse else (False,):
                res = run_demo_fewshot(
                    replace(cfg, fewshot_lr=lr),
                    test,
                    pool,
                    shots,
                    rest_run.final,
                    clip_dir,
                    demo / "fewshot-sweep" / f"lr{lr:g}",
                    progress=False,
                    rehearse=rest_run.path if rehearse else None,
                )
                top1 = round(res["splits"]["unseen"]["top1"], 2)
                rows.append({"lr": lr, "shots": shots, "rehearsed": rehearse, "top1": top1})
            print(json.dumps(rows[-1]), flush=True)
    print(f"REST zero-shot: {rest:.1f}")
    for r in rows:
        kind = "rehearsed" if r["rehearsed"] else "class names"
        print(
            f"lr {r['lr']:<8g} {r['shots']}-shot {kind:<12} {r['top1']:6.1f} "
            f"({r['top1'] - rest:+.1f})"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"seed": args.seed, "rest_top1": rest, "rows": rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
