"""`genact demo` / `make demo`: the whole method on the miniature world, offline.

World -> tiny pretrained captioner and CLIP -> baselines (CLIP zero-shot, frame
captioner + CLIP-TAM) -> REST (H = 1, full, without adapters) -> ReGen -> the
supervised baseline -> 2- and 8-shot fine-tuning, all evaluated on the world's
unseen compositions (zero-shot, and generalized against all class names) through
the same code a user runs on Kinetics (mp4 files, PyAV, VideoBlip, CLIP-TAM); then
the papers' effects with their intervals (`genact.world.effects`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genact.config import Decoding, RegenConfig, RestConfig, SupervisedConfig, load_config
from genact.data.splits import Split, read_list
from genact.distributed import cpu_threads
from genact.errors import ConfigError
from genact.evaluation.evaluate import evaluate
from genact.evaluation.fewshot import finetune_and_evaluate, rehearsal_set, sample_shots
from genact.evaluation.report import build_report
from genact.inference.captions import Captioner
from genact.io import atomic_write_text
from genact.models.clip import FrozenClip
from genact.regen.run import run_regen
from genact.rest.run import run_rest
from genact.training.rundir import RunDir
from genact.training.supervised import train_on_class_names
from genact.world.effects import (
    ROW_NAMES,
    effects,
    effects_text,
    markdown,
    marked_blocks,
    report_tables,
    results_text,
    write_markdown,
)
from genact.world.pretrain import CAPTION_PROMPT, pretrain
from genact.world.world import VERSION, WorldConfig, build_world

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).parent / "weights"


# clip, frame-captioner, rest-h1, rest, rest-no-adapters, regen, supervised, 2-/8-shot,
# rest-b2n, regen-b2n
METHODS = tuple(ROW_NAMES)


@dataclass
class DemoConfig:
    seed: int = (
        0  # world videos and all training draws; the foundation models stay the shipped ones
    )
    frames: int = 4  # T
    train_per_class: int = 12
    test_per_class: int = 40  # 480 test videos: one video is 0.2 points
    novel_per_class: int = 10  # with novel_words: 120 test videos of the novel-word classes
    base_shots: int = 16  # base-to-novel: labelled videos per seen class
    base_test_per_class: int = 10  # base-to-novel: 240 test videos of the seen classes
    base2novel_steps: int = 72  # optimizer steps of base-to-novel fine-tuning
    rest_epochs: int = 8
    rest_rounds: int = 2
    regen_epochs: int = 6
    lr: float = (
        2e-4  # REST: a tenth of the captioner's pretraining rate (the paper: 2e-5 for BLIP-base)
    )
    # at 2e-5 no reward rises in the demo's steps (docs/world.md: benchmarks/regen_sweep.py)
    regen_lr: float = 5e-4
    fewshot_lr: float = 1e-3  # few-shot learns new captions (class names) from few steps
    # the novel-word classes (world.WorldConfig.novel_words); they need foundation models
    # pretrained on that world (`genact world pretrain --novel-words`), given as `foundation`
    novel_words: bool = False
    foundation: str | None = None  # folder with blip/ and clip/; default: the shipped models
    methods: tuple[str, ...] = METHODS  # rows to run (REST is run whenever a later row needs it)


def foundation_models(out: Path, cfg: DemoConfig | None = None) -> tuple[Path, Path]:
    """`cfg.foundation`'s BLIP / CLIP; else the shipped tiny ones (`genact world
    pretrain` with its defaults), or, in a checkout without them, ones trained now into
    out/pretrained."""
    cfg = cfg or DemoConfig()
    if cfg.foundation is not None:
        root = Path(cfg.foundation).expanduser()
        if not all((root / m / "config.json").is_file() for m in ("blip", "clip")):
            raise ConfigError(f"foundation models: {root} has no blip/ and clip/ to load")
        return root / "blip", root / "clip"
    if cfg.novel_words:
        raise ConfigError(
            "the novel-word classes need foundation models pretrained on them "
            "(genact world pretrain --novel-words); the shipped ones never saw those words"
        )
    if (SHIPPED / "blip" / "config.json").exists() and (SHIPPED / "clip" / "config.json").exists():
        return SHIPPED / "blip", SHIPPED / "clip"
    if not (out / "pretrained" / "clip" / "config.json").exists():
        log.info("training the tiny foundation models (a few minutes; shipped packages skip this)")
        pretrain(out / "pretrained")
    return out / "pretrained" / "blip", out / "pretrained" / "clip"


def demo_settings(
    cfg: DemoConfig, world: Path, blip: Path, clip_dir: Path, progress: bool
) -> list[str]:
    """The config overrides every demo training run shares (data, models, optimiser)."""
    videos, splits = world / "videos", world / "splits"
    return [
        "data.format=list",
        f"data.root={videos}",
        f"data.list={splits / 'train.txt'}",
        f"data.classes={splits / 'classes_seen.txt'}",
        f"data.frames={cfg.frames}",
        "data.num_workers=0",
        f"model.blip={blip}",
        f"model.clip={clip_dir}",
        f"model.prompt={CAPTION_PROMPT}",
        f"run.seed={cfg.seed}",
        "run.threads=1",
        f"run.progress={str(progress).lower()}",
        "run.resume=auto",
        "optim.global_batch=32",
        "optim.batch_size=16",
        f"optim.lr={cfg.lr}",
        f"optim.min_lr={cfg.lr / 100}",
    ]


def run_demo_regen(
    cfg: DemoConfig, common: list[str], rest_final: Path, run_dir: Path, extra: tuple[str, ...] = ()
) -> Path:
    """The demo's ReGen run from its REST model (CLS-R and CLIP-R); returns final/."""
    return run_regen(
        load_config(
            RegenConfig,
            None,
            [
                *common,
                f"model.blip={rest_final}",
                f"optim.epochs={cfg.regen_epochs}",
                f"optim.lr={cfg.regen_lr}",
                f"optim.min_lr={cfg.regen_lr / 100}",
                "regen.w_grammar=0",
                "regen.samples=4",
                "regen.max_new_tokens=8",
                f"run.dir={run_dir}",
                *extra,
            ],
        )
    )


def run_demo_rest(
    cfg: DemoConfig, common: list[str], out: Path, wanted: set[str]
) -> list[tuple[str, Path]]:
    """The REST rows that `wanted` asks for (REST itself whenever a later row needs it):
    [(row, final/)]."""
    rest = [
        *common,
        f"optim.epochs={cfg.rest_epochs}",
        f"rest.epochs_per_round={cfg.rest_epochs // cfg.rest_rounds}",
        f"rest.prompts=[{CAPTION_PROMPT}]",
        "rest.max_new_tokens=8",
        "rest.caption_batch=32",
        "rest.keep=3",
    ]
    needs_rest = wanted & {"rest", "regen", "2-shot", "8-shot", "rest-b2n", "regen-b2n"}
    finals = []
    for name, extra in (
        ("rest-h1", ["rest.neighbours=1"]),
        ("rest", ["rest.neighbours=20"]),
        ("rest-no-adapters", ["rest.neighbours=20", "model.use_adapters=false"]),
    ):
        if name in wanted or (name == "rest" and needs_rest):
            run_dir = f"run.dir={out / 'runs' / name}"
            finals.append((name, run_rest(load_config(RestConfig, None, [*rest, *extra, run_dir]))))
    return finals


def run_demo_supervised(cfg: DemoConfig, common: list[str], world: Path, run_dir: Path) -> Path:
    """ "GAR + class labels": the same training as REST's, each training video captioned
    by its (seen) class name; returns final/."""
    splits = world / "splits"
    train = read_list(splits / "train.txt", world / "videos", splits / "classes_seen.txt")
    sup = load_config(
        SupervisedConfig, None, [*common, f"optim.epochs={cfg.rest_epochs}", f"run.dir={run_dir}"]
    )
    final = train_on_class_names(sup, train.items, train.class_names)
    assert final is not None  # the demo never sets run.stop_at_step
    return final


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


def run_demo_base2novel(
    cfg: DemoConfig,
    tests: dict[str, Split],
    pool: Split,
    model: Path,
    clip_dir: Path,
    out: Path,
    *,
    name: str,
    progress: bool,
) -> dict:
    """Base-to-novel in the world, into out/runs/`name`: `model` fine-tuned on
    `cfg.base_shots` videos per seen class (their names as captions, the few-shot
    recipe), then scored on the seen classes' test videos among the seen names
    ("base") and on the unseen classes' among the unseen names ("unseen", the novel
    side)."""
    items = sample_shots(pool, cfg.base_shots, cfg.seed)
    steps_per_epoch = max(len(items) // 16, 1)
    return finetune_and_evaluate(
        tests["base"],
        items,
        str(model),
        clip=str(clip_dir),
        name="base",
        run_dir=out / "runs" / name,
        meta={"protocol": "world base-to-novel", "shots": cfg.base_shots},
        seed=cfg.seed,
        overrides=[
            *fewshot_overrides(cfg),
            f"optim.epochs={max(cfg.base2novel_steps // steps_per_epoch, 1)}",
        ],
        cache_dir=out / "cache",
        progress=progress,
        also={"unseen": tests["unseen"]},
    )


def fewshot_overrides(cfg: DemoConfig) -> list[str]:
    """What the demo's fine-tuning on labelled videos sets (few-shot and base-to-novel):
    a global batch of 16 at `cfg.fewshot_lr`, one thread, the captioner's prompt."""
    return [
        f"data.frames={cfg.frames}",
        "data.num_workers=0",
        "run.threads=1",
        "optim.batch_size=8",
        "optim.global_batch=16",
        f"optim.lr={cfg.fewshot_lr}",
        f"optim.min_lr={cfg.fewshot_lr / 100}",
        f"model.prompt={CAPTION_PROMPT}",
    ]


def run_demo_fewshot(
    cfg: DemoConfig,
    test: Split,
    pool: Split,
    shots: int,
    rest_final: Path,
    clip_dir: Path,
    out: Path,
    progress: bool,
    rehearse: Path | None = None,
    extra: list[str] | None = None,
) -> dict:
    """REST + `shots`-shot fine-tuning on the few-shot pool, scored on the unseen split;
    with `rehearse` (the REST run), as many of its videos and pseudo-captions beside."""
    items = sample_shots(pool, shots, cfg.seed)
    return finetune_and_evaluate(
        test,
        items,
        str(rest_final),
        clip=str(clip_dir),
        name="unseen",
        run_dir=out / "runs" / (f"{shots}shot" + ("-rehearsed" if rehearse else "")),
        meta={"protocol": "world", "shots": shots},
        seed=cfg.seed,
        overrides=[
            *fewshot_overrides(cfg),
            f"optim.epochs={max(60 // shots, 10)}",
            *(extra or []),
        ],
        cache_dir=out / "cache",
        progress=progress,
        rehearsal=None if rehearse is None else rehearsal_set(rehearse, len(items), cfg.seed),
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
