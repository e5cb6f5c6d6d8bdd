"""ReGen's reward scales on the miniature world: how far each reward spreads over the
sampled captions (before weighting), and unseen-class top-1 with the rewards summed
raw or standardised per micro-batch (`regen.standardise`).

    genact demo --seeds 0                 # the world and the REST model this starts from
    python benchmarks/regen_rewards.py --demo demo --out benchmarks/results/regen_rewards_cpu.json

Both runs are the demo's ReGen row (CLS-R + CLIP-R, weights 1 / 1, 4 samples per
video) from the demo's REST model, differing only in `regen.standardise`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from genact.config import Decoding
from genact.data import read_list
from genact.evaluation.evaluate import evaluate_model
from genact.models import FrozenClip
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir
from genact.world.demo_runs import DemoConfig, demo_settings, foundation_models, run_demo_regen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--demo", default="demo", help="a `genact demo` output folder (seed 0 by default)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed that demo was run with")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    demo, cfg = Path(args.demo), DemoConfig(seed=args.seed)
    blip, clip_dir = foundation_models(demo)
    world, work = demo / "world", demo / "bench-regen"
    test = read_list(
        world / "splits" / "test.txt", world / "videos", world / "splits" / "classes_unseen.txt"
    )
    clip = FrozenClip.from_pretrained(clip_dir)
    rows = []
    for standardise in (False, True):
        start = time.time()
        run_dir = work / f"standardise-{str(standardise).lower()}"
        final = run_demo_regen(
            cfg,
            demo_settings(cfg, world, blip, clip_dir, progress=False),
            RunDir(demo / "runs" / "rest").final,
            run_dir,
            (f"regen.standardise={standardise}",),
        )
        res = evaluate_model(
            final,
            {"unseen": test},
            clip,
            decoding=Decoding(frames=cfg.frames, max_new_tokens=8),
            out_dir=run_dir / "eval",
            cache_dir=work / "cache",
            meta={},
            progress=False,
        )
        train = Metrics(run_dir, enabled=False).read("train")
        mean = lambda key: round(sum(r[key] for r in train) / len(train), 4)  # noqa: E731
        rows.append(
            {
                "standardise": standardise,
                "top1": round(res["splits"]["unseen"]["top1"], 2),
                **{
                    k: mean(k)
                    for k in (
                        "reward_cls",
                        "reward_cls_std",
                        "reward_clip",
                        "reward_clip_std",
                        "advantage_std",
                    )
                },
                "steps": len(train),
                "seconds": round(time.time() - start, 1),
            }
        )
    print(
        f"{'standardise':<12}{'top-1':>7}{'CLS-R':>8}{'std':>7}{'CLIP-R':>8}{'std':>7}"
        f"{'adv. std':>10}"
    )
    for r in rows:
        print(
            f"{str(r['standardise']):<12}{r['top1']:>7.1f}{r['reward_cls']:>8.3f}{r['reward_cls_std']:>7.3f}"
            f"{r['reward_clip']:>8.3f}{r['reward_clip_std']:>7.3f}{r['advantage_std']:>10.3f}"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "machine": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(),
                    "seed": args.seed,
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
