"""`genact demo` / `make demo`: the whole method on the miniature world, offline.

World -> tiny pretrained captioner and CLIP -> baselines (CLIP zero-shot, frame
captioner + CLIP-TAM) -> REST (H = 1, full, without adapters) -> ReGen -> 2- and
8-shot fine-tuning, all evaluated zero-shot on the world's unseen compositions
through the same code a user runs on Kinetics (mp4 files, PyAV, VideoBlip, CLIP-TAM).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genact.config import RegenConfig, RestConfig, load_config
from genact.data.splits import read_list
from genact.evaluation.clip_tam import mean_std
from genact.evaluation.evaluate import evaluate
from genact.inference.captions import Captioner
from genact.evaluation.fewshot import finetune_and_evaluate
from genact.supervised import sample_shots
from genact.evaluation.report import build_report
from genact.io import atomic_write_text
from genact.models.clip import FrozenClip
from genact.regen.run import run_regen
from genact.rest.run import run_rest
from genact.world.pretrain import CAPTION_PROMPT, pretrain
from genact.world.world import WorldConfig, build_world
from genact.errors import ConfigError

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).parent / "weights"


METHODS = ("clip", "frame-captioner", "rest-h1", "rest", "rest-no-adapters", "regen", "2-shot", "8-shot")


@dataclass
class DemoConfig:
    seed: int = 0  # world videos and all training draws; the foundation models stay the shipped ones
    frames: int = 4  # T
    train_per_class: int = 12
    test_per_class: int = 10
    rest_epochs: int = 8
    rest_rounds: int = 2
    regen_epochs: int = 2
    lr: float = 2e-4  # REST: a tenth of the captioner's pretraining rate (the paper: 2e-5 for BLIP-base)
    regen_lr: float = 2e-5
    fewshot_lr: float = 1e-3  # few-shot learns new captions (class names) from few steps
    methods: tuple[str, ...] = METHODS  # rows to run (REST is run whenever a later row needs it)


def full_config(seed: int) -> DemoConfig:
    """`genact demo --full`: more videos and rounds, for ablation tables over seeds."""
    return DemoConfig(seed=seed, train_per_class=24, test_per_class=20, rest_epochs=9, rest_rounds=3)


def foundation_models(out: Path) -> tuple[Path, Path]:
    """The shipped tiny BLIP / CLIP (`genact world pretrain` with its defaults), or,
    in a checkout without them, ones trained now into out/pretrained."""
    if (SHIPPED / "blip" / "config.json").exists() and (SHIPPED / "clip" / "config.json").exists():
        return SHIPPED / "blip", SHIPPED / "clip"
    if not (out / "pretrained" / "clip" / "config.json").exists():
        log.info("training the tiny foundation models (a few minutes; shipped packages skip this)")
        pretrain(out / "pretrained")
    return out / "pretrained" / "blip", out / "pretrained" / "clip"


def demo_settings(cfg: DemoConfig, world: Path, blip: Path, clip_dir: Path, progress: bool) -> list[str]:
    """The config overrides every demo training run shares (data, models, optimiser)."""
    videos, splits = world / "videos", world / "splits"
    return [
        "data.format=list", f"data.root={videos}", f"data.list={splits / 'train.txt'}",
        f"data.classes={splits / 'classes_seen.txt'}", f"data.frames={cfg.frames}", "data.num_workers=0",
        f"model.blip={blip}", f"model.clip={clip_dir}", f"model.prompt={CAPTION_PROMPT}", f"run.seed={cfg.seed}",
        f"run.progress={str(progress).lower()}", "run.resume=auto", "optim.global_batch=32", "optim.batch_size=16",
        f"optim.lr={cfg.lr}", f"optim.min_lr={cfg.lr / 100}",
    ]


def run_demo_regen(cfg: DemoConfig, common: list[str], rest_final: Path, run_dir: Path,
                   extra: tuple[str, ...] = ()) -> Path:
    """The demo's ReGen run from its REST model (CLS-R and CLIP-R); returns final/."""
    return run_regen(load_config(RegenConfig, None, [
        *common, f"model.blip={rest_final}", f"optim.epochs={cfg.regen_epochs}", f"optim.lr={cfg.regen_lr}",
        f"optim.min_lr={cfg.regen_lr / 100}", "regen.w_grammar=0", "regen.samples=4", "regen.max_new_tokens=8",
        f"run.dir={run_dir}", *extra]))


def run_demo_rest(cfg: DemoConfig, common: list[str], out: Path, wanted: set[str]) -> list[tuple[str, Path]]:
    """The REST rows that `wanted` asks for (REST itself whenever a later row needs it):
    [(row, final/)]."""
    rest = [*common, f"optim.epochs={cfg.rest_epochs}", f"rest.epochs_per_round={cfg.rest_epochs // cfg.rest_rounds}",
            f"rest.prompts=[{CAPTION_PROMPT}]", "rest.max_new_tokens=8", "rest.caption_batch=32", "rest.keep=3"]
    needs_rest = wanted & {"rest", "regen", "2-shot", "8-shot"}
    finals = []
    for name, extra in (("rest-h1", ["rest.neighbours=1"]), ("rest", ["rest.neighbours=20"]),
                        ("rest-no-adapters", ["rest.neighbours=20", "model.use_adapters=false"])):
        if name in wanted or (name == "rest" and needs_rest):
            run_dir = f"run.dir={out / 'runs' / name}"
            finals.append((name, run_rest(load_config(RestConfig, None, [*rest, *extra, run_dir]))))
    return finals


def run_demo(out: str | Path = "demo", cfg: DemoConfig | None = None, progress: bool = True) -> str:
    """Run everything into `out`; returns the printed table."""
    cfg, out = cfg or DemoConfig(), Path(out)
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ConfigError(f"unknown demo methods {sorted(unknown)}; expected some of {METHODS}")
    start = time.time()
    world = build_world(out / "world", WorldConfig(seed=cfg.seed, train_per_class=cfg.train_per_class,
                                                   test_per_class=cfg.test_per_class))
    blip, clip_dir = foundation_models(out)
    videos, splits = world / "videos", world / "splits"
    test = read_list(splits / "test.txt", videos, splits / "classes_unseen.txt")
    clip = FrozenClip.from_pretrained(clip_dir)
    cache = out / "cache"
    rows: list[tuple[str, dict]] = []
    wanted = set(cfg.methods)

    def score(name: str, method: str, model: Path | None) -> None:
        if name not in wanted:
            return
        captioner = None if model is None else Captioner.load(
            str(model), method, cfg.frames, cache, torch.device("cpu"), progress=progress, max_new_tokens=8)
        res = evaluate({"unseen": test}, method, clip, captioner, templates=["{}"], out_dir=out / "results" / name,
                       meta={"protocol": "world-unseen", "model": str(model), "clip": str(clip_dir)}, cache_dir=cache,
                       frames=cfg.frames, progress=progress)
        rows.append((name, res))

    score("clip", "clip", None)
    score("frame-captioner", "blip-frame", blip)
    common = demo_settings(cfg, world, blip, clip_dir, progress)
    for name, final in run_demo_rest(cfg, common, out, wanted):
        score(name, "genact", final)
    rest_final = out / "runs" / "rest" / "final"
    if "regen" in wanted:
        score("regen", "genact", run_demo_regen(cfg, common, rest_final, out / "runs" / "regen"))
    pool = read_list(splits / "fewshot.txt", videos, splits / "classes_unseen.txt")
    for shots in (2, 8):
        if f"{shots}-shot" not in wanted:
            continue
        items = sample_shots(pool, shots, cfg.seed)
        res = finetune_and_evaluate(
            test, items, str(rest_final), clip=str(clip_dir), name="unseen", run_dir=out / "runs" / f"{shots}shot",
            meta={"protocol": "world-unseen", "shots": shots}, seed=cfg.seed,
            overrides=[f"data.frames={cfg.frames}", "data.num_workers=0", "optim.batch_size=8",
                       "optim.global_batch=16", f"optim.lr={cfg.fewshot_lr}", f"optim.min_lr={cfg.fewshot_lr / 100}",
                       f"optim.epochs={max(60 // shots, 10)}", f"model.prompt={CAPTION_PROMPT}"],
            cache_dir=cache, progress=progress)
        rows.append((f"{shots}-shot", res))
    table = demo_table(rows, len(test.class_names))
    atomic_write_text(out / "table.txt", table + f"\n({time.time() - start:.0f} s)\n")
    atomic_write_text(out / "demo.json", json.dumps(
        {"config": asdict(cfg), "rows": {n: {k: v for k, v in r["splits"]["unseen"].items() if k != "videos"}
                                         for n, r in rows}}, indent=1))
    if {"rest", "frame-captioner"} <= wanted:
        sources = [out / "results" / n for n in ("frame-captioner", "rest", "regen") if n in wanted]
        build_report(sources + [out / "runs" / "rest"], out / "report")
        return table + "\n\n" + captions_before_after(out, test)
    return table


def run_full(out: str | Path = "demo-full", seeds: tuple[int, ...] = (0, 1, 2), progress: bool = True) -> str:
    """`genact demo --full`: the bigger demo once per seed (out/seed-N), then a table of
    mean +- std over the seeds; written to out/table.txt and out/demo.json."""
    out = Path(out)
    per_seed = []
    for seed in seeds:
        run_demo(out / f"seed-{seed}", full_config(seed), progress)
        per_seed.append(json.loads((out / f"seed-{seed}" / "demo.json").read_text())["rows"])
    lines = [f"zero-shot on the world's unseen compositions, mean +- std over seeds {list(seeds)}",
             f"{'method':<48} {'top-1':>13} {'top-5':>13}"]
    summary = {}
    for name in METHODS:
        top1, top5 = [r[name]["top1"] for r in per_seed], [r[name]["top5"] for r in per_seed]
        summary[name] = {"top1": top1, "top5": top5}
        (m1, s1), (m5, s5) = mean_std(top1), mean_std(top5)
        lines.append(f"{ROW_NAMES[name]:<48} {m1:>6.1f} +- {s1:>4.1f} {m5:>6.1f} +- {s5:>4.1f}")
    table = "\n".join(lines)
    atomic_write_text(out / "table.txt", table + "\n")
    atomic_write_text(out / "demo.json", json.dumps({"seeds": list(seeds), "rows": summary}, indent=1))
    return table


ROW_NAMES = {
    "clip": "CLIP zero-shot (video feature vs class names)",
    "frame-captioner": "frame captioner + CLIP-TAM ('BLIP')",
    "rest-h1": "REST without retrieval (H=1)",
    "rest": "REST",
    "rest-no-adapters": "REST without temporal adapters",
    "regen": "ReGen (from REST)",
    "2-shot": "REST + 2-shot fine-tuning",
    "8-shot": "REST + 8-shot fine-tuning",
}


def demo_table(rows: list[tuple[str, dict]], classes: int) -> str:
    lines = [f"zero-shot on the world's {classes} unseen compositions (chance {100 / classes:.1f}%)",
             f"{'method':<48} {'top-1':>6} {'top-5':>6}"]
    for name, res in rows:
        s = res["splits"]["unseen"]
        lines.append(f"{ROW_NAMES[name]:<48} {s['top1']:>6.1f} {s['top5']:>6.1f}")
    return "\n".join(lines)


def captions_before_after(out: Path, test, videos: int = 4) -> str:
    """Captions of a few unseen-class test videos by the frame captioner and by REST."""
    before = json.loads((out / "results" / "frame-captioner" / "results.json").read_text())["splits"]["unseen"]
    after = json.loads((out / "results" / "rest" / "results.json").read_text())["splits"]["unseen"]
    lines = ["captions of unseen-class test videos (frame captioner -> REST):"]
    for b, a in list(zip(before["videos"], after["videos"]))[:: max(len(before["videos"]) // videos, 1)][:videos]:
        lines.append(f"  [{b['label']}] {b['caption']!r} -> {a['caption']!r}")
    return "\n".join(lines)
