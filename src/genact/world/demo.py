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
from dataclasses import dataclass
from pathlib import Path

import torch

from genact.config import RegenConfig, RestConfig, load_config
from genact.data.splits import read_list
from genact.evaluation.evaluate import Captioner, evaluate
from genact.evaluation.fewshot import finetune_and_evaluate, sample_shots
from genact.evaluation.report import build_report
from genact.io import atomic_write_text
from genact.models.clip import FrozenClip
from genact.regen.run import run_regen
from genact.rest.run import run_rest
from genact.world.pretrain import CAPTION_PROMPT, pretrain
from genact.world.world import WorldConfig, build_world

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).parent / "weights"


@dataclass
class DemoConfig:
    seed: int = 0
    frames: int = 4  # T
    train_per_class: int = 12
    test_per_class: int = 10
    rest_epochs: int = 4
    rest_rounds: int = 2
    regen_epochs: int = 2
    lr: float = 1e-3  # tiny models from scratch need far more than the paper's 2e-5


def foundation_models(out: Path, seed: int) -> tuple[Path, Path]:
    """The shipped tiny BLIP / CLIP (trained by `genact world pretrain` with seed 0),
    or ones trained now when absent or another seed is asked for."""
    if seed == 0 and (SHIPPED / "blip" / "config.json").exists():
        return SHIPPED / "blip", SHIPPED / "clip"
    if not (out / "pretrained" / "clip" / "config.json").exists():
        log.info("training the tiny foundation models (about a minute)")
        pretrain(out / "pretrained", seed=seed)
    return out / "pretrained" / "blip", out / "pretrained" / "clip"


def run_demo(out: str | Path = "demo", cfg: DemoConfig | None = None, progress: bool = True) -> str:
    """Run everything into `out`; returns the printed table."""
    cfg, out = cfg or DemoConfig(), Path(out)
    start = time.time()
    world = build_world(out / "world", WorldConfig(seed=cfg.seed, train_per_class=cfg.train_per_class,
                                                   test_per_class=cfg.test_per_class))
    blip, clip_dir = foundation_models(out, cfg.seed)
    videos, splits = world / "videos", world / "splits"
    test = read_list(splits / "test.txt", videos, splits / "classes_unseen.txt")
    clip = FrozenClip.from_pretrained(clip_dir)
    cache = out / "cache"
    rows: list[tuple[str, dict]] = []

    def score(name: str, method: str, model: Path | None) -> None:
        captioner = None if model is None else Captioner.load(
            str(model), method, cfg.frames, cache, torch.device("cpu"), progress=progress, max_new_tokens=8)
        res = evaluate({"unseen": test}, method, clip, captioner, ["{}"], out / "results" / name,
                       {"protocol": "world-unseen", "model": str(model), "clip": str(clip_dir)}, cache, cfg.frames,
                       progress)
        rows.append((name, res))

    score("clip", "clip", None)
    score("frame-captioner", "blip-frame", blip)
    common = [
        "data.format=list", f"data.root={videos}", f"data.list={splits / 'train.txt'}",
        f"data.classes={splits / 'classes_seen.txt'}", f"data.frames={cfg.frames}", "data.num_workers=0",
        f"model.blip={blip}", f"model.clip={clip_dir}", f"model.prompt={CAPTION_PROMPT}", f"run.seed={cfg.seed}",
        f"run.progress={str(progress).lower()}", "run.resume=auto", "optim.global_batch=32", "optim.batch_size=16",
        f"optim.lr={cfg.lr}", f"optim.min_lr={cfg.lr / 100}",
    ]
    rest = [*common, f"optim.epochs={cfg.rest_epochs}", f"rest.epochs_per_round={cfg.rest_epochs // cfg.rest_rounds}",
            f"rest.prompts=[{CAPTION_PROMPT}]", "rest.max_new_tokens=8", "rest.caption_batch=32", "rest.keep=3"]
    for name, extra in (("rest-h1", ["rest.neighbours=1"]), ("rest", ["rest.neighbours=20"]),
                        ("rest-no-adapters", ["rest.neighbours=20", "model.use_adapters=false"])):
        final = run_rest(load_config(RestConfig, None, [*rest, *extra, f"run.dir={out / 'runs' / name}"]))
        score(name, "genact", final)
    rest_final = out / "runs" / "rest" / "final"
    regen = run_regen(load_config(RegenConfig, None, [
        *common, f"model.blip={rest_final}", f"optim.epochs={cfg.regen_epochs}", f"optim.lr={cfg.lr / 10}",
        f"optim.min_lr={cfg.lr / 1000}", "regen.w_grammar=0", "regen.samples=4", "regen.max_new_tokens=8",
        f"run.dir={out / 'runs' / 'regen'}"]))
    score("regen", "genact", regen)
    pool = read_list(splits / "fewshot.txt", videos, splits / "classes_unseen.txt")
    for shots in (2, 8):
        items = sample_shots(pool, shots, cfg.seed)
        res = finetune_and_evaluate(
            test, items, "unseen", str(rest_final), str(clip_dir), out / "runs" / f"{shots}shot",
            {"protocol": "world-unseen", "shots": shots}, cfg.seed,
            [f"data.frames={cfg.frames}", "data.num_workers=0", "optim.batch_size=8", f"optim.lr={cfg.lr}",
             f"optim.min_lr={cfg.lr / 100}", f"optim.epochs={max(60 // shots, 8)}", f"model.prompt={CAPTION_PROMPT}"],
            cache_dir=cache, progress=progress)
        rows.append((f"{shots}-shot", res))
    table = demo_table(rows, len(test.class_names))
    atomic_write_text(out / "table.txt", table + f"\n({time.time() - start:.0f} s)\n")
    atomic_write_text(out / "demo.json", json.dumps({n: r["splits"]["unseen"] | {"videos": None} for n, r in rows},
                                                    indent=1))
    build_report([out / "results" / n for n in ("rest", "regen")] + [out / "runs" / "rest"], out / "report")
    return table + "\n\n" + captions_before_after(out, test)


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
