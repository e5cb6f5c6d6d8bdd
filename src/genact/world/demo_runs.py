"""The demo's training runs on the miniature world: its config, its foundation models,
and one function per row that trains (REST and its ablations, ReGen, the supervised
baseline, few-shot and base-to-novel fine-tuning), each through the same code a
user runs (`genact.world.demo` runs and scores them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from genact.config import RegenConfig, RestConfig, SupervisedConfig, load_config
from genact.data.splits import Split, read_list
from genact.errors import ConfigError
from genact.evaluation.fewshot import finetune_and_evaluate, rehearsal_set, sample_shots
from genact.regen.run import run_regen
from genact.rest.run import run_rest
from genact.training.supervised import train_on_class_names
from genact.world.effects import ROW_NAMES
from genact.world.pretrain import CAPTION_PROMPT, check_foundation, pretrain_world
from genact.world.render import NOVEL_OBJECTS

log = logging.getLogger(__name__)
FEWSHOT_BATCH = 16  # the global batch of the demo's fine-tuning on labelled videos
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
    base2novel_steps: int = 216  # optimizer steps of base-to-novel fine-tuning (9 epochs)
    rest_epochs: int = 8
    rest_rounds: int = 2
    # REST's (and the supervised baseline's) temporal adapters, new and zero at the start,
    # train at this multiple of its rate; the later fine-tuning stages keep one rate
    # (docs/world.md: benchmarks/adapter_lr.py)
    adapter_lr_scale: float = 10.0
    regen_epochs: int = 12
    lr: float = (
        2e-4  # REST: a tenth of the captioner's pretraining rate (the paper: 2e-5 for BLIP-base)
    )
    # at 2e-5 no reward rises in the demo's steps (docs/world.md: benchmarks/regen_sweep.py)
    regen_lr: float = 5e-4
    fewshot_lr: float = 1e-3  # few-shot learns new captions (class names) from few steps
    # few-shot: the same epochs for every shot count, as the papers; fine-tuning on labels
    # (few-shot and base-to-novel) without their label smoothing of 0.2 (docs/world.md)
    fewshot_epochs: int = 30
    fewshot_label_smoothing: float = 0.0
    # the novel-word classes (world.WorldConfig.novel_words); the foundation models must
    # have been pretrained on them (the shipped ones are, since world version 3)
    novel_words: bool = True
    foundation: str | None = None  # folder with blip/ and clip/; default: the shipped models
    methods: tuple[str, ...] = METHODS  # rows to run (REST is run whenever a later row needs it)


def foundation_models(out: Path, cfg: DemoConfig | None = None) -> tuple[Path, Path]:
    """`cfg.foundation`'s BLIP / CLIP; else the shipped tiny ones (`genact world
    pretrain` with its defaults), or, in a checkout without them, ones trained now into
    out/pretrained."""
    cfg = cfg or DemoConfig()
    if cfg.foundation is not None:
        root = check_foundation(Path(cfg.foundation).expanduser())
    elif all((SHIPPED / m / "config.json").exists() for m in ("blip", "clip")):
        root = SHIPPED
    else:
        root = out / "pretrained"
        if not (root / "clip" / "config.json").exists():
            log.info("training the tiny foundation models (minutes; shipped packages skip this)")
            pretrain_world(root)
    if cfg.novel_words:
        _check_knows_novel_words(root)
    return root / "blip", root / "clip"


def _check_knows_novel_words(root: Path) -> None:
    """Refuse foundation models whose captioner has no word for the novel objects."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(str(root / "blip")).get_vocab()
    missing = sorted(w for w in NOVEL_OBJECTS if w not in vocab)
    if missing:
        raise ConfigError(
            f"foundation models in {root} were never pretrained on the novel-word classes "
            f"(no word {', '.join(missing)}): pretrain with `genact world pretrain`, or run "
            "the demo without novel words"
        )


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


REST_ROWS = {  # the demo's REST runs and what sets each apart
    "rest-h1": ["rest.neighbours=1"],
    "rest": ["rest.neighbours=20"],
    "rest-no-adapters": ["rest.neighbours=20", "model.use_adapters=false"],
}


def run_demo_rest(
    cfg: DemoConfig, common: list[str], out: Path, name: str, extra: tuple[str, ...] = ()
) -> Path:
    """The REST run of row `name` (one of REST_ROWS), into out/runs/`name` (or the
    run.dir in `extra`, overrides after the row's own); returns final/."""
    rest = [
        *common,
        f"optim.epochs={cfg.rest_epochs}",
        f"optim.adapter_lr_scale={cfg.adapter_lr_scale}",
        f"rest.epochs_per_round={cfg.rest_epochs // cfg.rest_rounds}",
        f"rest.prompts=[{CAPTION_PROMPT}]",
        "rest.max_new_tokens=8",
        "rest.caption_batch=32",
        "rest.keep=3",
        *REST_ROWS[name],
        f"run.dir={out / 'runs' / name}",
        *extra,
    ]
    return run_rest(load_config(RestConfig, None, rest))


def run_demo_supervised(cfg: DemoConfig, common: list[str], world: Path, run_dir: Path) -> Path:
    """ "GAR + class labels": the same training as REST's, each training video captioned
    by its (seen) class name; returns final/."""
    splits = world / "splits"
    train = read_list(splits / "train.txt", world / "videos", splits / "classes_seen.txt")
    sup = load_config(
        SupervisedConfig,
        None,
        [
            *common,
            f"optim.epochs={cfg.rest_epochs}",
            f"optim.adapter_lr_scale={cfg.adapter_lr_scale}",
            f"run.dir={run_dir}",
        ],
    )
    final = train_on_class_names(sup, train.items, train.class_names)
    assert final is not None  # the demo never sets run.stop_at_step
    return final


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
    steps_per_epoch = max(len(items) // FEWSHOT_BATCH, 1)
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
    a global batch of FEWSHOT_BATCH at `cfg.fewshot_lr` with `cfg.fewshot_label_smoothing`,
    one thread, the captioner's prompt."""
    return [
        f"data.frames={cfg.frames}",
        "data.num_workers=0",
        "run.threads=1",
        "optim.batch_size=8",
        f"optim.global_batch={FEWSHOT_BATCH}",
        f"optim.lr={cfg.fewshot_lr}",
        f"optim.min_lr={cfg.fewshot_lr / 100}",
        f"optim.label_smoothing={cfg.fewshot_label_smoothing}",
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
            f"optim.epochs={cfg.fewshot_epochs}",
            *(extra or []),
        ],
        cache_dir=out / "cache",
        progress=progress,
        rehearsal=None if rehearse is None else rehearsal_set(rehearse, len(items), cfg.seed),
    )
