"""Training on class names as captions: the "GAR + class labels" baseline (REST
Table 1), and the fine-tuning step of the few-shot protocol
(genact.evaluation.fewshot)."""

from __future__ import annotations

import logging
from pathlib import Path

from genact.config import SupervisedConfig
from genact.data.datasets import VideoItem
from genact.distributed import Dist
from genact.errors import DataError
from genact.training.run import Run, check_run_dir, training_split
from genact.training.trainer import CaptionTrainer

log = logging.getLogger(__name__)


def run_supervised(cfg: SupervisedConfig) -> Path | None:
    """ "GAR + class labels": train on each video's class name as its only caption."""
    check_run_dir(cfg)
    split = training_split(cfg)
    items = [it for it in split.items if it.label is not None]
    if not items or not split.class_names:
        raise DataError(
            f"{cfg.data.list or cfg.data.root}: the supervised baseline needs labelled videos"
        )
    return train_on_class_names(cfg, items, split.class_names)


def train_on_class_names(
    cfg: SupervisedConfig,
    items: list[VideoItem],
    class_names: list[str],
    *,
    dist: Dist | None = None,
    rehearsal: list[tuple[VideoItem, list[str]]] | None = None,
) -> Path | None:
    """Fine-tune on labelled `items`, each captioned by its class name in the form
    `cfg.labels.template` (the supervised baseline and few-shot fine-tuning), in the
    caller's process group `dist` if given; `rehearsal` videos train on their own
    captions beside them (few-shot's rehearsal of REST's pseudo-captions). Returns
    final/ (None if stopped early)."""
    rehearsal = rehearsal or []
    videos = items + [it for it, _ in rehearsal]
    form = cfg.labels.template
    captions = [[form.format(class_names[it.label])] for it in items]
    captions += [caps for _, caps in rehearsal]
    with Run(cfg, log, dist) as run:
        model = run.load_model()
        run.record_videos(videos)
        run.make_trainer(CaptionTrainer, model, run.frame_cache(videos, model), captions)
        return run.train_to_the_end(len(videos))
