"""ReGen on the miniature world: does the class reward rise, does it carry over to the
unseen compositions, and what does it take?

    genact demo --out demo                     # REST's model for seed 0
    python benchmarks/regen_sweep.py --demo demo --out bench/regen_sweep.json

Each setting fine-tunes the demo's REST model with ReGen (CLS-R + CLIP-R, the
demo's other settings), logging every step, then scores the unseen test split.
Per setting: the first and last steps' CLS-R and CLIP-R means, the share of sampled
captions that CLIP-TAM puts in their video's (seen) class, and the unseen top-1
against REST's. The reward curves are plotted to <out>.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from genact.config import Decoding
from genact.data import read_list
from genact.evaluation.evaluate import evaluate_model
from genact.models import FrozenClip
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir
from genact.world.demo_runs import DemoConfig, demo_settings, foundation_models, run_demo_regen

SETTINGS = (
    {"name": "demo: lr 2e-5, 2 epochs", "lr": 2e-5, "epochs": 2, "extra": []},
    {"name": "lr 1e-4, 2 epochs", "lr": 1e-4, "epochs": 2, "extra": []},
    {"name": "lr 5e-4, 2 epochs", "lr": 5e-4, "epochs": 2, "extra": []},
    {"name": "lr 5e-4, 6 epochs", "lr": 5e-4, "epochs": 6, "extra": []},
    {"name": "lr 5e-4, 6 epochs, CLS-R only", "lr": 5e-4, "epochs": 6, "extra": ["regen.w_clip=0"]},
    {"name": "lr 5e-4, 6 epochs, 8 samples", "lr": 5e-4, "epochs": 6, "extra": ["regen.samples=8"]},
    {"name": "lr 5e-4, 6 epochs, CLIP-R only", "lr": 5e-4, "epochs": 6, "extra": ["regen.w_cls=0"]},
)
CURVES = ("reward_cls", "reward_clip", "sampled_class_top1")


def run_setting(
    setting: dict, demo: Path, cfg: DemoConfig, test, clip: FrozenClip
) -> tuple[dict, list[dict]]:
    blip, clip_dir = foundation_models(demo)
    run_dir = (
        demo / "regen-sweep" / setting["name"].replace(" ", "_").replace(":", "").replace(",", "")
    )
    swept = DemoConfig(
        **{**vars(cfg), "regen_lr": setting["lr"], "regen_epochs": setting["epochs"]}
    )
    start = time.time()
    final = run_demo_regen(
        swept,
        demo_settings(swept, demo / "world", blip, clip_dir, progress=False),
        RunDir(demo / "runs" / "rest").final,
        run_dir,
        ("run.log_every=1", *setting["extra"]),
    )
    res = evaluate_model(
        final,
        {"unseen": test},
        clip,
        decoding=Decoding(frames=cfg.frames, max_new_tokens=8),
        out_dir=run_dir / "eval",
        cache_dir=demo / "cache",
        meta={},
        progress=False,
    )
    train = Metrics(run_dir, enabled=False).read("train")
    first, last = train[: max(len(train) // 4, 1)], train[-max(len(train) // 4, 1) :]

    def mean(rows: list[dict], k: str) -> float | None:  # None for a reward the setting leaves out
        vals = [r[k] for r in rows if k in r]
        return round(sum(vals) / len(vals), 3) if vals else None

    row = {
        "name": setting["name"],
        "steps": len(train),
        "top1": round(res["splits"]["unseen"]["top1"], 2),
        **{f"{k}_first": mean(first, k) for k in CURVES},
        **{f"{k}_last": mean(last, k) for k in CURVES},
        "seconds": round(time.time() - start, 1),
    }
    return row, [{k: r.get(k) for k in ("step", *CURVES)} for r in train]


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.6))
    for ax, key in zip(axes, CURVES):
        # a setting keeps its colour in every panel
        for i, (name, rows) in enumerate(curves.items()):
            if rows and rows[0][key] is not None:
                ax.plot(
                    [r["step"] for r in rows], [r[key] for r in rows], label=name, color=f"C{i}"
                )
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("optimizer step")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--demo", default="demo")
    p.add_argument("--seed", type=int, default=0, help="the seed that demo was run with")
    p.add_argument("--settings", type=int, nargs="+", default=list(range(len(SETTINGS))))
    p.add_argument("--out", default=None, help="JSON rows here, the reward curves beside it (.png)")
    args = p.parse_args()
    demo, cfg = Path(args.demo), DemoConfig(seed=args.seed)
    world = demo / "world"
    test = read_list(
        world / "splits" / "test.txt", world / "videos", world / "splits" / "classes_unseen.txt"
    )
    clip = FrozenClip.from_pretrained(foundation_models(demo)[1])
    rest = json.loads((demo / "demo.json").read_text())["rows"]["rest"]["unseen"]["top1"]
    rows, curves = [], {}
    for i in args.settings:
        row, curves[SETTINGS[i]["name"]] = run_setting(SETTINGS[i], demo, cfg, test, clip)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"REST: {rest:.1f}")
    print(
        f"{'setting':<36}{'steps':>6}{'top-1':>7}{'CLS-R first/last':>20}"
        f"{'class top-1 first/last':>26}"
    )
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        print(
            f"{r['name']:<36}{r['steps']:>6}{r['top1']:>7.1f}"
            f"{fmt(r['reward_cls_first']):>10}/{fmt(r['reward_cls_last']):<9}"
            f"{fmt(r['sampled_class_top1_first']):>13}/{fmt(r['sampled_class_top1_last']):<12}"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"seed": args.seed, "rest_top1": rest, "rows": rows, "curves": curves}, indent=1
            )
            + "\n"
        )
        plot(curves, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
