"""Training on class names as captions: the "GAR + class labels" baseline (REST
Table 1) and few-shot fine-tuning (SPEC §5), which draws M videos per class from a
split's train side and fine-tunes on their class names.

Shots are drawn per class with a seeded RNG (sorted candidates, so the draw depends
on the seed and the file lists only). Epochs default to max(400 / M, 30) (ReGen
supp. A.2); the optimiser is REST Table 10's, or ReGen's for a ReGen model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from genact.config import SupervisedConfig, load_config
from genact.data.datasets import VideoItem
from genact.data.splits import Split
from genact.errors import DataError
from genact.models.video_blip import VideoBlip
from genact.runs import Run, check_run_dir, training_split
from genact.training import CaptionTrainer

log = logging.getLogger(__name__)


def run_supervised(cfg: SupervisedConfig) -> Path | None:
    """"GAR + class labels": train on each video's class name as its only caption."""
    check_run_dir(cfg)
    split = training_split(cfg)
    items = [it for it in split.items if it.label is not None]
    if not items or not split.class_names:
        raise DataError(f"{cfg.data.list or cfg.data.root}: the supervised baseline needs labelled videos")
    return train_on_class_names(cfg, items, split.class_names)


def train_on_class_names(cfg: SupervisedConfig, items: list[VideoItem], class_names: list[str]) -> Path | None:
    """Fine-tune on labelled `items`, each captioned by its class name (the supervised
    baseline and few-shot fine-tuning). Returns final/ (None if stopped early)."""
    with Run(cfg, log) as run:
        model = run.load_model()
        run.record(items)
        trainer = run.trainer(CaptionTrainer, model, run.frame_cache(items, model))
        trainer.captions = [[class_names[it.label]] for it in items]
        return run.train_to_the_end(len(items))


SHOTS = (2, 4, 8, 16)


def fewshot_epochs(shots: int) -> int:
    return max(400 // shots, 30)


# ReGen supp. A.2: few-shot fine-tuning of a ReGen model uses ReGen's settings
REGEN_FEWSHOT = ("optim.lr=2.5e-6", "optim.min_lr=2.5e-8", "optim.weight_decay=0.01")


def optim_for(model: str) -> tuple[str, ...]:
    """The optimiser settings (overrides) for fine-tuning `model`: ReGen's for a model
    a ReGen run made (its genact_video.json says so), REST Table 10's otherwise."""
    kind = VideoBlip.saved_settings(model).get("trained_by")
    chosen = REGEN_FEWSHOT if kind == "regen" else ()
    log.info("few-shot optimiser for a %s model: %s", kind or "non-genact",
             ", ".join(chosen) if chosen else "REST Table 10's (lr 2e-5, weight decay 0.001)")
    return chosen


def sample_shots(split: Split, shots: int, seed: int = 0) -> list[VideoItem]:
    """Exactly `shots` videos of every class of `split` (its train side), drawn with `seed`."""
    by_class: dict[int, list[VideoItem]] = {c: [] for c in range(len(split.class_names))}
    for it in split.items:
        by_class[it.label].append(it)
    rng = np.random.default_rng([seed, shots])
    chosen = []
    for c, items in by_class.items():
        if len(items) < shots:
            raise DataError(f"class {split.class_names[c]!r} has {len(items)} training videos, fewer than {shots} shots")
        items = sorted(items, key=lambda it: (it.path, it.start or 0))
        chosen += [items[i] for i in sorted(rng.choice(len(items), shots, replace=False).tolist())]
    return chosen


def fewshot_config(model: str, run_dir: Path, *, shots: int, num_videos: int, seed: int = 0, progress: bool = True,
                   overrides: list[str] | None = None) -> SupervisedConfig:
    """The fine-tuning run of `shots` per class ({num_videos} videos in all) from `model`:
    few-shot epochs and optimiser, then the user's overrides; a global batch larger
    than the set shrinks to it (2 shots x 10 classes: one step per epoch)."""
    cfg = load_config(SupervisedConfig, None, [
        f"model.blip={model}", f"run.dir={run_dir}", f"run.seed={seed}", f"optim.epochs={fewshot_epochs(shots)}",
        f"run.progress={str(progress).lower()}", "run.resume=auto", *optim_for(model), *(overrides or []),
    ])
    if num_videos < cfg.optim.global_batch:
        cfg.optim.global_batch = max(num_videos // cfg.optim.batch_size, 1) * cfg.optim.batch_size
    return cfg
