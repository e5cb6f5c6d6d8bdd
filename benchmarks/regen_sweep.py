"""ReGen on the miniature world: does the class reward rise, does it carry over to the
unseen compositions, and what does it take?

    genact demo --out demo                     # REST's model for seed 0
    python benchmarks/regen_sweep.py --demo demo --out bench/regen_sweep.json
    genact demo --full --out demo-full         # or every seed's, with other settings:
    python benchmarks/regen_sweep.py --full demo-full --grid 5e-4:6 5e-4:12 1e-3:6 --jobs 2

Each setting fine-tunes the demo's REST model with ReGen (CLS-R + CLIP-R, the
demo's other settings), logging every step, then scores the unseen test split.
Per setting: the first and last steps' CLS-R and CLIP-R means, the share of sampled
captions that CLIP-TAM puts in their video's (seen) class, and the unseen top-1
against REST's; over several seeds also that difference per seed and its mean. The
reward curves (of the first seed) are plotted to <out>.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_helpers import seed_table  # benchmarks/ is on sys.path when a script runs
from genact.config import Decoding
from genact.data import read_list
from genact.evaluation.evaluate import evaluate_model
from genact.models import FrozenClip
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir
from genact.world.demo_runs import DemoConfig, demo_settings, foundation_models, run_demo_regen
from genact.world.jobs import run_jobs

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


def grid_setting(text: str) -> dict:
    """A setting from "LR:EPOCHS" (the demo's other ReGen settings)."""
    try:
        lr_text, epochs_text = text.split(":")
        lr, epochs = float(lr_text), int(epochs_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LR:EPOCHS (e.g. 5e-4:12)") from None
    if not (lr > 0 and epochs > 0):  # a NaN lr is refused too
        raise argparse.ArgumentTypeError(f"{text!r}: the lr and epochs must be positive")
    return {
        "name": f"lr {lr:g}, {epochs} epochs",
        "lr": lr,
        "epochs": epochs,
        "extra": [],
    }


def run_setting(setting: dict, demo: Path, seed: int) -> tuple[dict, list[dict]]:
    """(row, per-step curves) of one setting fine-tuning the REST model of `demo`."""
    cfg = DemoConfig(seed=seed)
    world = demo / "world"
    test = read_list(
        world / "splits" / "test.txt", world / "videos", world / "splits" / "classes_unseen.txt"
    )
    blip, clip_dir = foundation_models(demo)
    rest = json.loads((demo / "demo.json").read_text())["rows"]["rest"]["unseen"]["top1"]
    run_dir = (
        demo / "regen-sweep" / setting["name"].replace(" ", "_").replace(":", "").replace(",", "")
    )
    swept = DemoConfig(
        **{**vars(cfg), "regen_lr": setting["lr"], "regen_epochs": setting["epochs"]}
    )
    start = time.time()
    final = run_demo_regen(
        swept,
        demo_settings(swept, world, blip, clip_dir, progress=False),
        RunDir(demo / "runs" / "rest").final,
        run_dir,
        ("run.log_every=1", *setting["extra"]),
    )
    res = evaluate_model(
        final,
        {"unseen": test},
        FrozenClip.from_pretrained(clip_dir),
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

    top1 = res["splits"]["unseen"]["top1"]
    row = {
        "name": setting["name"],
        "seed": seed,
        "steps": len(train),
        "top1": round(top1, 2),
        "rest_top1": round(rest, 2),
        "vs_rest": round(top1 - rest, 2),
        **{f"{k}_first": mean(first, k) for k in CURVES},
        **{f"{k}_last": mean(last, k) for k in CURVES},
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(row), flush=True)
    return row, [{k: r.get(k) for k in ("step", *CURVES)} for r in train]


def _job(name: str, settings: dict[str, dict], demos: dict[int, Path]):
    """A run_jobs job named "SEED/SETTING"."""
    seed, setting = name.split("/", 1)
    return run_setting(settings[setting], demos[int(seed)], int(seed))


def seeds_summary(rows: list[dict], seeds: list[int]) -> str:
    """One line per setting: its top-1 minus REST's per seed, the mean, and on how many
    seeds it is above REST."""
    table = {
        name: {r["seed"]: r["vs_rest"] for r in rows if r["name"] == name}
        for name in dict.fromkeys(r["name"] for r in rows)
    }
    return seed_table("setting", table, seeds)


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
    p.add_argument("--full", type=Path, help="a `genact demo --full` folder: every seed-N in it")
    p.add_argument(
        "--settings",
        type=int,
        nargs="*",
        default=None,
        help="indices into SETTINGS (default: all of them unless --grid is given)",
    )
    p.add_argument(
        "--grid",
        type=grid_setting,
        nargs="+",
        default=[],
        metavar="LR:EPOCHS",
        help="also these learning rates and epoch counts",
    )
    p.add_argument("--jobs", type=int, default=1, help="runs side by side, one thread each")
    p.add_argument("--out", default=None, help="JSON rows here, the reward curves beside it (.png)")
    args = p.parse_args()
    indices = (
        args.settings
        if args.settings is not None
        else ([] if args.grid else list(range(len(SETTINGS))))
    )
    settings = {s["name"]: s for s in [SETTINGS[i] for i in indices] + args.grid}
    demos = (
        dict(sorted((int(d.name.split("-")[1]), d) for d in args.full.glob("seed-*")))
        if args.full
        else {args.seed: Path(args.demo)}
    )
    missing = [str(d) for d in demos.values() if not (d / "demo.json").is_file()]
    if not demos or missing:
        p.error(f"no finished demo in {', '.join(missing) or args.full} (run genact demo first)")
    if not settings:
        p.error("no setting to run: give --settings or --grid")
    jobs = {f"{seed}/{name}": () for seed in demos for name in settings}
    done = run_jobs(_job, jobs, (settings, demos), workers=args.jobs)
    rows = [done[j][0] for j in jobs]
    first = next(iter(demos))
    curves = {name: done[f"{first}/{name}"][1] for name in settings}
    print(
        "REST: "
        + ", ".join(
            f"seed {r['seed']} {r['rest_top1']:.1f}" for r in rows if r["name"] == rows[0]["name"]
        )
    )
    print(
        f"{'setting':<36}{'seed':>5}{'steps':>6}{'top-1':>7}{'CLS-R first/last':>20}"
        f"{'class top-1 first/last':>26}"
    )
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in rows:
        print(
            f"{r['name']:<36}{r['seed']:>5}{r['steps']:>6}{r['top1']:>7.1f}"
            f"{fmt(r['reward_cls_first']):>10}/{fmt(r['reward_cls_last']):<9}"
            f"{fmt(r['sampled_class_top1_first']):>13}/{fmt(r['sampled_class_top1_last']):<12}"
        )
    print("top-1 minus REST's, in points")
    print(seeds_summary(rows, list(demos)))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"seeds": list(demos), "rows": rows, "curves": curves}, indent=1) + "\n"
        )
        plot(curves, Path(args.out).with_suffix(".png"))


if __name__ == "__main__":
    main()
