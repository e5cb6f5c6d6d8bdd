"""What few-shot fine-tuning teaches, word by word: over the seeds of a `genact demo
--full` folder, the share of the unseen classes' test captions that name the clip's
verb and its object, for REST and its 2- and 8-shot fine-tuning.

    genact demo --full --out demo-full
    python benchmarks/fewshot_words.py --full demo-full \\
        --json benchmarks/results/fewshot_words_cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genact.training.rundir import RunDir

ROWS = {"REST": "results/rest", "REST + 2-shot": "runs/2shot", "REST + 8-shot": "runs/8shot"}


def words_named(results: Path) -> dict[str, float]:
    """Top-1 and the shares of captions naming the test clip's verb / object."""
    split = RunDir(results).read_results()["splits"]["unseen"]
    videos = split["videos"]
    verb = sum(v["label"].split()[0] in v["caption"].split() for v in videos)
    obj = sum(v["label"].split()[1] in v["caption"].split() for v in videos)
    return {
        "top1": round(split["top1"], 1),
        "verb": round(100 * verb / len(videos), 1),
        "object": round(100 * obj / len(videos), 1),
        "distinct_captions": len({v["caption"] for v in videos}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", type=Path, default=Path("demo-full"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rows = []
    for seed_dir in sorted(args.full.glob("seed-*"), key=lambda d: int(d.name.split("-")[1])):
        for row, sub in ROWS.items():
            rows.append({"seed": int(seed_dir.name.split("-")[1]), "row": row})
            rows[-1] |= words_named(seed_dir / sub)
    print(f"{'row':<16}{'seed':>6}{'top-1':>8}{'verb %':>8}{'object %':>10}{'captions':>10}")
    for r in rows:
        print(
            f"{r['row']:<16}{r['seed']:>6}{r['top1']:>8.1f}{r['verb']:>8.1f}{r['object']:>10.1f}"
            f"{r['distinct_captions']:>10}"
        )
    if args.json:
        record = {"machine": "2-core VM, CPU", "world_version": 3, "rows": rows}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
