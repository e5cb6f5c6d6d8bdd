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
    demo, cfg = Path(args.demo), DemoConfig(seed=args.seed)
    splits, videos = demo / "world" / "splits", demo / "world" / "videos"
    test = read_list(splits / "test.txt", videos, splits / "classes_unseen.txt")
    pool = read_list(splits / "fewshot.txt", videos, splits / "classes_unseen.txt")
    clip_dir = foundation_models(demo)[1]
    rest = json.loads((demo / "demo.json").read_text())["rows"]["rest"]["unseen"]["top1"]
    rows = []
    rest_run = RunDir(demo / "runs" / "rest")
    variants = {"": []} | {v.split(":")[0]: v.split(":", 1)[1].split(",") for v in args.variant}
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
                    top1 = round(res["splits"]["unseen"]["top1"], 2)
                    rows.append(
                        {
                            "lr": lr,
                            "shots": shots,
                            "variant": name,
                            "rehearsed": rehearse,
                            "top1": top1,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    print(f"REST zero-shot: {rest:.1f}")
    for r in rows:
        kind = ("rehearsed" if r["rehearsed"] else "class names") + (
            f", {r['variant']}" if r["variant"] else ""
        )
        print(
            f"lr {r['lr']:<8g} {r['shots']}-shot {kind:<24} {r['top1']:6.1f} "
            f"({r['top1'] - rest:+.1f})"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"seed": args.seed, "rest_top1": rest, "rows": rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
