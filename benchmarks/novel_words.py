"""The world with novel words (`WorldConfig.novel_words`): can the supervised baseline's
collapse (REST Table 1) be shown, and what does re-pretraining the foundation models
on that world do to the effects the shipped world shows?

For each pretraining size: pretrain the tiny BLIP and CLIP on frames of all 48
classes (the 36 compositions and the 12 novel-word classes), then run the demo's
CLIP, frame-captioner, REST and supervised rows with them, and count which object
each row's captions of novel-word test videos name (a seen object is the collapse).

    python benchmarks/novel_words.py --out bench/novel-words \\
        --json benchmarks/results/novel_words_cpu.json
    # how much the effects depend on the pretraining draw, with and without novel words:
    python benchmarks/novel_words.py --clips 8640 --pretrain-seeds 1 \\
        --json benchmarks/results/novel_words_seeds_cpu.json
    python benchmarks/novel_words.py --clips 8640 --pretrain-seeds 1 --plain \\
        --json benchmarks/results/pretrain_seeds_cpu.json
    # world version 3's models: world version 2's trained further on all 48 classes
    python benchmarks/novel_words.py --clips 8640 --continue-steps 300 --lr-scale 0.5 \\
        --seeds 0 1 2 3 4 --json benchmarks/results/novel_words_v3_cpu.json
    # only count the objects named, in every seed of a `genact demo --full` folder
    python benchmarks/novel_words.py --count demo-full \\
        --json benchmarks/results/novel_words_named_cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genact.training.rundir import RunDir
from genact.world.demo import run_demo
from genact.world.demo_runs import SHIPPED, DemoConfig
from genact.world.effects import effects
from genact.world.pretrain import pretrain
from genact.world.render import NOVEL_OBJECTS, OBJECTS
from genact.world.world import WorldConfig

ROWS = ("clip", "frame-captioner", "rest", "supervised")


def objects_named(results: Path) -> dict[str, int]:
    """How many novel-word test captions name a novel object, a seen one, or none."""
    videos = RunDir(results).read_results()["splits"]["novel"]["videos"]
    counts = {"novel object": 0, "seen object": 0, "no object": 0}
    for v in videos:
        words = set(v["caption"].split())
        kind = (
            "novel object"
            if words & set(NOVEL_OBJECTS)
            else "seen object"
            if words & set(OBJECTS)
            else "no object"
        )
        counts[kind] += 1
    return counts


def one_size(
    out: Path,
    clips: int,
    seed: int,
    *,
    pretrain_seed: int = 0,
    novel: bool = True,
    continued: int = 0,
    lr_scale: float = 1.0,
) -> dict:
    """Pretrain with `clips` frames (and `pretrain_seed`; without the novel-word classes
    unless `novel`; with `continued`, that many steps from the shipped models at
    `lr_scale` times the rates), run the rows on world seed `seed`; their figures."""
    tag = f"{clips}" + (f"-p{pretrain_seed}" if pretrain_seed else "") + ("" if novel else "-plain")
    tag += f"-from-shipped-{continued}x{lr_scale:g}" if continued else ""
    models = out / f"pretrained-{tag}"
    if not (models / "clip" / "config.json").exists():
        pretrain(
            models,
            WorldConfig(novel_words=novel),
            clips=clips,
            seed=pretrain_seed,
            **(dict(init=SHIPPED, steps=continued, lr_scale=lr_scale) if continued else {}),
        )
    demo = out / f"demo-{tag}-seed{seed}"
    cfg = DemoConfig(seed=seed, novel_words=novel, foundation=str(models), methods=ROWS)
    run_demo(demo, cfg, progress=False)
    record = json.loads((demo / "demo.json").read_text())
    top1 = {
        row: {split: round(r["top1"], 1) for split, r in splits.items()}
        for row, splits in record["rows"].items()
    }
    found = {
        label: {"mean": round(e.mean, 1), "interval": [round(e.low, 1), round(e.high, 1)]}
        for label, _, e in effects([record])
    }
    named = {row: objects_named(demo / "results" / row) for row in ROWS if row != "clip" and novel}
    return {
        "clips": clips,
        "pretrain_seed": pretrain_seed,
        "novel_words": novel,
        "continued_from_shipped": {"steps": continued, "lr_scale": lr_scale} if continued else None,
        "seed": seed,
        "top1": top1,
        "effects": found,
        "objects_named": named,
    }


def count_named(full: Path) -> list[dict]:
    """objects_named for every captioning row of every seed in a --full folder."""
    rows = []
    for seed_dir in sorted(full.glob("seed-*"), key=lambda d: int(d.name.split("-")[1])):
        for row in ("frame-captioner", "rest", "regen", "supervised"):
            named = objects_named(seed_dir / "results" / row)
            rows.append({"seed": int(seed_dir.name.split("-")[1]), "row": row, **named})
            print(json.dumps(rows[-1]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/novel-words"))
    p.add_argument("--clips", type=int, nargs="+", default=[8640, 11520])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--plain",
        action="store_true",
        help="the world without the novel-word classes (what the shipped models were made on)",
    )
    p.add_argument(
        "--continue-steps",
        type=int,
        default=0,
        help="continue from the shipped models for this many steps instead of pretraining anew",
    )
    p.add_argument("--lr-scale", type=float, default=1.0, help="with --continue-steps")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="world seeds (or --seed)")
    p.add_argument("--count", type=Path, default=None, help="a --full folder: count only")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.count:
        record = {"machine": "2-core VM, CPU", "rows": count_named(args.count)}
        if args.json:
            args.json.write_text(json.dumps(record, indent=1) + "\n")
        return
    rows = [
        one_size(
            args.out,
            c,
            s,
            pretrain_seed=ps,
            novel=not args.plain,
            continued=args.continue_steps,
            lr_scale=args.lr_scale,
        )
        for c in args.clips
        for ps in args.pretrain_seeds
        for s in args.seeds or [args.seed]
    ]
    for r in rows:
        print(
            f"pretraining clips {r['clips']}, pretraining seed {r['pretrain_seed']}, "
            f"novel words {r['novel_words']}, world seed {r['seed']}"
        )
        for row, splits in r["top1"].items():
            print(f"  {row:<18}" + "".join(f"{s} {v:5.1f}   " for s, v in splits.items()))
        for label, e in r["effects"].items():
            low, high = e["interval"]
            print(f"  {label:<58}{e['mean']:+6.1f}  [{low:+.1f}, {high:+.1f}]")
        for row, counts in r["objects_named"].items():
            print(f"  novel-word captions of {row}: {counts}")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": "2-core VM, CPU", "rows": rows}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
