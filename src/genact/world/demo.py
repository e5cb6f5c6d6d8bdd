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
from genact.world.world import VERSION, WorldConfig, build_world

log = logging.getLogger(__name__)


def run_demo(out: str | Path = "demo", cfg: DemoConfig | None = None, progress: bool = True) -> str:
    """Run everything into `out` (`demo.json`: every row's top-1 and per-video outcomes;
    the report); returns the printed results and effects. One CPU thread throughout:
    the world's models are too small to gain from more (docs/performance.md, section
    7), and the figures do not then depend on the machine's core count."""
    threads = torch.get_num_threads()
    cpu_threads(1)
    try:
        return _run_demo(Path(out), cfg or DemoConfig(), progress)
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


def _run_demo(out: Path, cfg: DemoConfig, progress: bool) -> str:
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ConfigError(f"unknown demo methods {sorted(unknown)}; expected some of {METHODS}")
    start = time.time()
    blip, clip_dir = foundation_models(out, cfg)  # first: a wrong folder is refused at once
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
    clip = FrozenClip.from_pretrained(clip_dir)
    cache = out / "cache"
    rows: dict[str, dict] = {}
    wanted = set(cfg.methods)
    b2n = {"rest": "rest-b2n", "regen": "regen-b2n"}

    def score(name: str, method: str, model: Path | None) -> None:
        if name not in wanted:
            return
        decoding = Decoding(frames=1 if method == "blip-frame" else cfg.frames, max_new_tokens=8)
        captioner = (
            None
            if model is None
            else Captioner.load(
                str(model), decoding, cache_dir=cache, device=torch.device("cpu"), progress=progress
            )
        )
        # the base classes' test videos only where base-to-novel compares with the row
        splits = ZERO_SHOT_SPLITS + (("base",) if b2n.get(name) in wanted else ())
        rows[name] = evaluate(
            {s: tests[s] for s in splits if s in tests},
            clip,
            captioner,
            method=method,
            templates=["{}"],
            out_dir=out / "results" / name,
            meta={"protocol": "world", "model": str(model), "clip": str(clip_dir)},
            cache_dir=cache,
            frames=cfg.frames,
            progress=progress,
        )

    score("clip", "clip", None)
    score("frame-captioner", "blip-frame", blip)
    common = demo_settings(cfg, world, blip, clip_dir, progress)
    for name, final in run_demo_rest(cfg, common, out, wanted):
        score(name, "genact", final)
    rest_final = RunDir(out / "runs" / "rest").final
    regen_final = None
    if wanted & {"regen", "regen-b2n"}:
        regen_final = run_demo_regen(cfg, common, rest_final, out / "runs" / "regen")
        score("regen", "genact", regen_final)
    if "supervised" in wanted:
        score(
            "supervised",
            "genact",
            run_demo_supervised(cfg, common, world, out / "runs" / "supervised"),
        )
    videos, splits = world / "videos", world / "splits"
    pool = read_list(splits / "fewshot.txt", videos, splits / "classes_unseen.txt")
    for shots in (2, 8):
        if f"{shots}-shot" in wanted:
            rows[f"{shots}-shot"] = run_demo_fewshot(
                cfg, tests["unseen"], pool, shots, rest_final, clip_dir, out, progress
            )
    base_pool = read_list(splits / "fewshot_base.txt", videos, splits / "classes_seen.txt")
    for source, name in b2n.items():
        if name in wanted:
            model = rest_final if source == "rest" else regen_final
            rows[name] = run_demo_base2novel(
                cfg, tests, base_pool, model, clip_dir, out, name=name, progress=progress
            )
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
) -> str:
    """`genact demo --full`: the demo once per seed (out/seed-N), then the results (mean
    +- std) and the effects over all seeds; in out/table.txt and out/effects.md, and
    between the markers of each `markdown_to` file (docs/world.md, README.md)."""
    out = Path(out)
    for path in markdown_to:  # before an hour of work, not after
        marked_blocks(Path(path))
    demos = []
    for seed in seeds:
        run_demo(out / f"seed-{seed}", DemoConfig(seed=seed), progress)
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
