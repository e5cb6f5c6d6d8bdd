"""`genact regen`: a ReGen run from a REST model (or any BLIP / VideoBlip) on a
labelled video set, with the run-directory, resume and torchrun conventions of
`genact rest` (docs/rest.md)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from genact.config import RegenConfig
from genact.data.datasets import SkipReport, video_id
from genact.distributed import cleanup
from genact.inference.features import video_feature_stage
from genact.models.clip import FrozenClip, class_embeddings
from genact.models.hub import resolve_model_dir
from genact.regen.rewards import GrammarScorer
from genact.regen.rl import RegenTrainer, Rewards
from genact.rest.bank import CaptionBank
from genact.rest.run import train_to_the_end, training_split
from genact.runs import (
    check_run_dir, load_model, record_run, release_run_dir, resolve_model_settings, start_run, with_frame_cache,
)
from genact.training import Checkpoints, Metrics, steps_per_epoch
from genact.errors import DataError

log = logging.getLogger(__name__)


def run_regen(cfg: RegenConfig) -> Path | None:
    """RL fine-tuning with cfg; returns final/ (None when run.stop_at_step stopped it)."""
    check_run_dir(cfg)
    dc, rc = cfg.data, cfg.regen
    if rc.w_grammar:
        GrammarScorer.check(rc.grammar_model, rc.grammar)  # before any work: present, and of the right kind
    resolve_model_dir(cfg.model.clip)
    split = training_split(cfg)
    if not split.class_names or any(it.label is None for it in split.items):
        raise DataError(f"{dc.list or dc.root}: ReGen needs labelled videos (CLS-R scores the true class)")
    start = time.time()
    d, run_dir = start_run(cfg)
    metrics = None
    try:
        checkpoint = Checkpoints(run_dir).latest()
        metrics = Metrics(run_dir, d.main, cfg.run.tensorboard, Checkpoints.step(checkpoint))
        model = load_model(cfg.model, checkpoint, dc.frames).to(d.device)
        resolve_model_settings(cfg, model)
        steps_per_epoch(len(split.items), cfg.optim, d.world)
        record_run(cfg, run_dir, split.items, d)
        split.items = with_frame_cache(split.items, dc, model)
        clip = FrozenClip.from_pretrained(cfg.model.clip).to(d.device)
        feats = video_feature_stage(clip, run_dir, split.items, dc.frames, d, rc.feature_dtype, rc.clip_batch,
                                    dc.num_workers, cfg.run.progress and d.main)
        usable = [i for i in range(len(split.items)) if i in feats]
        items = [split.items[i] for i in usable]
        labels = torch.tensor([it.label for it in items])
        class_emb = class_embeddings(clip, split.class_names, rc.templates)
        grammar = GrammarScorer.from_pretrained(rc.grammar_model, rc.grammar).to(d.device) if rc.w_grammar else None
        rewards = Rewards(rc, clip, class_emb.cpu(), labels, torch.stack([feats[i] for i in usable]), grammar)
        report = SkipReport()
        trainer = RegenTrainer(model, items, cfg.optim, cfg.run, d, metrics, report, dc.num_workers,
                               rewards=rewards, regen=rc)
        if checkpoint is not None:
            trainer.restore(checkpoint)
        if rc.lm_weight > 0:
            trainer.captions = _pseudo_captions(rc.lm_captions, items)
        return train_to_the_end(trainer, cfg, run_dir, start, len(split.items))
    finally:
        if metrics is not None:
            metrics.close()
        release_run_dir(run_dir)
        cleanup(d)


def _pseudo_captions(bank_file: str, items: list) -> list[list[str]]:
    """Each training video's REST captions, for the LM term."""
    bank = CaptionBank.load(bank_file)
    where = {k: i for i, k in enumerate(bank.keys)}
    missing = [video_id(it) for it in items if video_id(it) not in where]
    if missing:
        raise DataError(f"{bank_file}: no captions for {len(missing)} training video(s), e.g. {missing[0]}")
    return [bank.captions(where[video_id(it)]) for it in items]
