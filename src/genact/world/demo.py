"""`genact demo` / `make demo`: the whole method on the miniature world, offline.

World -> tiny pretrained captioner and CLIP -> baselines (CLIP zero-shot, frame
captioner + CLIP-TAM) -> REST (H = 1, full, without adapters) -> ReGen -> the
supervised baseline -> 2- and 8-shot fine-tuning -> base-to-novel, all evaluated on
the world's unseen compositions (zero-shot, and generalized against all class
names), and the base-to-novel rows on its seen classes too, through the same code a
user runs on Kinetics (mp4 files, PyAV, VideoBlip, CLIP-TAM); then the papers'
effects with their intervals (`genact.world.effects`). The training runs are in
`genact.world.demo_runs`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from genact.config import Decoding
from genact.data.splits import Split, read_list
from genact.distributed import cpu_threads
from genact.errors import ConfigError
from genact.evaluation.evaluate import evaluate
from genact.evaluation.report import build_report
from genact.inference.captions import Captioner
from genact.io import atomic_write_text
from genact.models.clip import FrozenClip
from genact.training.rundir import RunDir
from genact.world.demo_runs import (
    METHODS,
    REST_ROWS,
    DemoConfig,
    demo_settings,
    foundation_models,
    run_demo_base2novel,
    run_demo_fewshot,
    run_demo_regen,
    run_demo_rest,
    run_demo_supervised,
)
from genact.world.effects import (
    effects,
    effects_text,
    markdown,
    marked_blocks,
    report_tables,
    results_text,
    write_markdown,
)
from genact.world.jobs import default_workers, run_jobs
from genact.world.world import VERSION, WorldConfig, build_world

log = logging.getLogger(__name__)


def run_demo(
    out: str | Path = "demo",
    cfg: DemoConfig | None = None,
    progress: bool = True,
    *,
    workers: int | None = None,
) -> str:
    """Run everything into `out` (`demo.json`: every row's top-1 and per-video outcomes;
    the report); returns the printed results and effects. One CPU thread per training
    run: the world's models are too small to gain from more (docs/performance.md,
    section 7), and the figures do not then depend on the machine's core count. The
    runs that do not wait on each other go on `workers` processes (default: two where
    there are two cores; the figures are the same with one)."""
    threads = torch.get_num_threads()
    cpu_threads(1)
    try:
        workers = default_workers() if workers is None else workers
        return _run_demo(Path(out), cfg or DemoConfig(), progress, workers)
    finally:
        torch.set_num_threads(threads)


def demo_tests(world: Path, novel_words: bool = False) -> dict[str, Split]:
    """The demo's test splits: the unseen classes' test videos against the 12 unseen
    names (zero-shot) and against all names (generalized); with `novel_words`, the
    novel-word classes' against all names; the seen classes' against the 24 seen
    names (base-to-novel's base side)."""
    videos, splits = world / "videos", world / "splits"
    tests = {
        "unseen": read_list(splits / "test.txt", videos, splits / "classes_unseen.txt"),
        "generalized": read_list(splits / "test.txt", videos, splits / "classes_all.txt"),
        "base": read_list(splits / "test_base.txt", videos, splits / "classes_seen.txt"),
    }
    if novel_words:
        tests["novel"] = read_list(splits / "test_novel.txt", videos, splits / "classes_all.txt")
    return tests


ZERO_SHOT_SPLITS = ("unseen", "generalized", "novel")
B2N = {"rest": "rest-b2n", "regen": "regen-b2n"}  # a model and its base-to-novel row
# every job of the demo and the training runs it starts from; among the ready ones the
# first listed starts first, so the longest chain (REST -> ReGen -> base-to-novel) leads
DEPENDS: dict[str, tuple[str, ...]] = {
    "rest": (),
    "regen": ("rest",),
    "regen-b2n": ("regen",),
    "clip": (),
    "frame-captioner": (),
    "rest-h1": (),
    "rest-no-adapters": (),
    "supervised": (),
    "2-shot": ("rest",),
    "8-shot": ("rest",),
    "rest-b2n": ("rest",),
}


def demo_jobs(wanted: set[str]) -> dict[str, tuple[str, ...]]:
    """The jobs the `wanted` rows need (with the runs they start from), in DEPENDS' order."""
    need = set(wanted)
    for name in reversed(DEPENDS):  # a job's dependencies come before it in DEPENDS
        if name in need:
            need |= set(DEPENDS[name])
    return {name: DEPENDS[name] for name in DEPENDS if name in need}


def _run_demo(out: Path, cfg: DemoConfig, progress: bool, workers: int) -> str:
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ConfigError(f"unknown demo methods {sorted(unknown)}; expected some of {METHODS}")
    start = time.time()
    models = foundation_models(out, cfg)  # first: a wrong folder is refused at once
    world = build_world(
        out / "world",
        WorldConfig(
            seed=cfg.seed,
            train_per_class=cfg.train_per_class,
            test_per_class=cfg.test_per_class,
            novel_per_class=cfg.novel_per_class,
            base_shots_per_class=cfg.base_shots,
            base_test_per_class=cfg.base_test_per_class,
            novel_words=cfg.novel_words,
        ),
    )
    tests = demo_tests(world, cfg.novel_words)
    wanted = set(cfg.methods)
    jobs = demo_jobs(wanted)
    workers = max(1, min(workers, len(jobs)))
    if workers > 1:
        log.info("%d training runs on %d processes (progress in the log)", len(jobs), workers)
    args = (cfg, out, models, progress and workers == 1)
    done = run_jobs(demo_job, jobs, args, workers=workers)
    rows = {name: done[name] for name in METHODS if name in wanted}
    demo = demo_record(cfg, tests, rows)
    atomic_write_text(out / "demo.json", json.dumps(demo, indent=1))
    found = effects([demo])
    text = results_text([demo], [cfg.seed]) + "\n\n" + effects_text(found)
    atomic_write_text(out / "table.txt", text + f"\n({time.time() - start:.0f} s)\n")
    if {"rest", "frame-captioner"} <= wanted:
        sources = [out / "results" / n for n in ("frame-captioner", "rest", "regen") if n in wanted]
        build_report(
            sources + [out / "runs" / "rest"],
            out / "report",
            tables=report_tables([demo], found),
        )
        return text + "\n\n" + captions_before_after(out)
    return text


def demo_job(
    name: str, cfg: DemoConfig, out: Path, models: tuple[Path, Path], progress: bool
) -> dict | None:
    """One job of the demo in `out` (its world built), from the foundation `models`
    (BLIP, CLIP): train `name`'s model where it has one, and score it; returns the
    row's results (None for a run only trained for a later row)."""
    blip, clip_dir = models
    world, runs = out / "world", out / "runs"
    tests = demo_tests(world, cfg.novel_words)
    common = demo_settings(cfg, world, blip, clip_dir, progress)
    rest_final = RunDir(runs / "rest").final
    videos, splits = world / "videos", world / "splits"
    if name in ("2-shot", "8-shot"):
        pool = read_list(splits / "fewshot.txt", videos, splits / "classes_unseen.txt")
        shots = int(name.split("-")[0])
        return run_demo_fewshot(
            cfg, tests["unseen"], pool, shots, rest_final, clip_dir, out, progress
        )
    if name in B2N.values():
        base_pool = read_list(splits / "fewshot_base.txt", videos, splits / "classes_seen.txt")
        model = rest_final if name == "rest-b2n" else RunDir(runs / "regen").final
        return run_demo_base2novel(
            cfg, tests, base_pool, model, clip_dir, out, name=name, progress=progress
        )
    method = {"clip": "clip", "frame-captioner": "blip-frame"}.get(name, "genact")
    if name == "frame-captioner":
        model = blip
    elif name in REST_ROWS:
        model = run_demo_rest(cfg, common, out, name)
    elif name == "regen":
        model = run_demo_regen(cfg, common, rest_final, runs / "regen")
    elif name == "supervised":
        model = run_demo_supervised(cfg, common, world, runs / "supervised")
    else:
        model = None
    if name not in cfg.methods:
        return None
    # the base classes' test videos only where base-to-novel compares with the row
    scored = ZERO_SHOT_SPLITS + (("base",) if B2N.get(name) in cfg.methods else ())
    return score_row(
        {s: tests[s] for s in scored if s in tests},
        model,
        FrozenClip.from_pretrained(clip_dir),
        method=method,
        cfg=cfg,
        out=out / "results" / name,
        cache=out / "cache",
        clip_dir=clip_dir,
        progress=progress,
    )


def score_row(
    tests: dict[str, Split],
    model: Path | None,
    clip: FrozenClip,
    *,
    method: str,
    cfg: DemoConfig,
    out: Path,
    cache: Path,
    clip_dir: Path,
    progress: bool,
) -> dict:
    """A row's evaluation on `tests` (its captioner `model`; none for CLIP zero-shot)
    into `out`, captions and features cached in `cache`; evaluate()'s results."""
    decoding = Decoding(frames=1 if method == "blip-frame" else cfg.frames, max_new_tokens=8)
    captioner = (
        None
        if model is None
        else Captioner.load(
            str(model), decoding, cache_dir=cache, device=torch.device("cpu"), progress=progress
        )
    )
    return evaluate(
        tests,
        clip,
        captioner,
        method=method,
        templates=["{}"],
        out_dir=out,
        meta={"protocol": "world", "model": str(model), "clip": str(clip_dir)},
        cache_dir=cache,
        frames=cfg.frames,
        progress=progress,
    )


def demo_record(cfg: DemoConfig, tests: dict[str, Split], rows: dict[str, dict]) -> dict:
    """What demo.json holds: the config, each split's test videos (`test_videos`: the
    unseen classes'; `split_videos`: every split's), and per row and split the top-1 /
    top-5 and `right`, one character per test video of the split (1 right, 0 wrong, -
    skipped)."""
    videos = {name: [it.path for it in split.items] for name, split in tests.items()}
    record = {
        "config": asdict(cfg),
        "world_version": VERSION,
        "test_videos": videos["unseen"],
        "split_videos": videos,
        "split_classes": {name: len(split.class_names) for name, split in tests.items()},
        "rows": {},
    }
    for name, res in rows.items():
        record["rows"][name] = {}
        for split, r in res["splits"].items():
            top = {v["video"]: v["top5"][0] == v["label"] for v in r["videos"]}
            right = "".join("-" if p not in top else "01"[top[p]] for p in videos[split])
            record["rows"][name][split] = {"top1": r["top1"], "top5": r["top5"], "right": right}
    return record


def run_full(
    out: str | Path = "demo-full",
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    progress: bool = True,
    markdown_to: list[Path] = (),
    *,
    workers: int | None = None,
) -> str:
    """`genact demo --full`: the demo once per seed (out/seed-N), then the results (mean
    +- std) and the effects over all seeds; in out/table.txt and out/effects.md, and
    between the markers of each `markdown_to` file (docs/world.md, README.md)."""
    out = Path(out)
    for path in markdown_to:  # before an hour of work, not after
        marked_blocks(Path(path))
    demos = []
    for seed in seeds:
        run_demo(out / f"seed-{seed}", DemoConfig(seed=seed), progress, workers=workers)
        demos.append(json.loads((out / f"seed-{seed}" / "demo.json").read_text()))
    found = effects(demos)
    text = results_text(demos, list(seeds)) + "\n\n" + effects_text(found)
    atomic_write_text(out / "table.txt", text + "\n")
    command = "genact demo --full" + (
        f" --seeds {' '.join(map(str, seeds))}" if tuple(seeds) != (0, 1, 2, 3, 4) else ""
    )
    blocks = markdown(demos, list(seeds), found, command)
    atomic_write_text(out / "effects.md", blocks["results"] + "\n\n" + blocks["effects"] + "\n")
    for path in markdown_to:
        write_markdown(Path(path), blocks)
    return text


def captions_before_after(out: Path, videos: int = 4) -> str:
    """Captions of a few unseen-class test videos by the frame captioner and by REST."""
    before = RunDir(out / "results" / "frame-captioner").read_results()["splits"]["unseen"]
    after = RunDir(out / "results" / "rest").read_results()["splits"]["unseen"]
    lines = ["captions of unseen-class test videos (frame captioner -> REST):"]
    for b, a in list(zip(before["videos"], after["videos"]))[
        :: max(len(before["videos"]) // videos, 1)
    ][:videos]:
        lines.append(f"  [{b['label']}] {b['caption']!r} -> {a['caption']!r}")
    return "\n".join(lines)
