"""`genact regen`: a ReGen run from a REST model (or any BLIP / VideoBlip) on a
labelled video set, with the run-directory, resume and torchrun conventions of
`genact rest` (docs/rest.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from genact.config import RegenConfig
from genact.data.datasets import SkipReport, video_id
from genact.errors import DataError
from genact.inference.features import video_feature_stage
from genact.models.clip import FrozenClip, class_embeddings
from genact.models.hub import resolve_model_dir
from genact.regen.rewards import GrammarScorer
from genact.regen.rl import RegenTrainer, Rewards
from genact.training.bank import CaptionBank
from genact.training.run import Run, training_split

log = logging.getLogger(__name__)


def run_regen(cfg: RegenConfig) -> Path | None:
    """RL fine-tuning with cfg; returns final/ (None when run.stop_at_step stopped it)."""
    if cfg.regen.w_grammar:
        # before any work: present, of the right kind
        GrammarScorer.check(cfg.regen.grammar_model, cfg.regen.grammar)
    resolve_model_dir(cfg.model.clip)
    with Run(cfg, log) as run:
        split = training_split(cfg)
        if not split.class_names or any(it.label is None for it in split.items):
            raise DataError(
                f"{cfg.data.list or cfg.data.root}: ReGen needs labelled videos (CLS-R scores the "
                "true "
                "class)"
            )
        model = run.load_model()
        cfg = run.cfg  # resolved by the model
        data_cfg, regen_cfg = cfg.data, cfg.regen
        run.record_videos(split.items)
        clip = FrozenClip.from_pretrained(cfg.model.clip).to(run.dist.device)
        all_items = run.frame_cache(split.items, model)
        report = SkipReport()
        feats = video_feature_stage(
            clip,
            run.dir.video_features,
            all_items,
            num_frames=data_cfg.frames,
            dist=run.dist,
            report=report,
            dtype=regen_cfg.feature_dtype,
            batch_size=regen_cfg.clip_batch,
            num_workers=data_cfg.num_workers,
            progress=cfg.run.progress and run.dist.main,
        )
        report.save(run.dir.skipped_log(run.dist.rank), "CLIP video features")
        usable = [i for i in range(len(all_items)) if i in feats]
        items = [all_items[i] for i in usable]
        grammar = (
            GrammarScorer.from_pretrained(regen_cfg.grammar_model, regen_cfg.grammar).to(
                run.dist.device
            )
            if regen_cfg.w_grammar
            else None
        )
        rewards = Rewards(
            regen_cfg,
            clip,
            class_embeddings(clip, split.class_names, regen_cfg.templates).cpu(),
            torch.tensor([it.label for it in items]),
            torch.stack([feats[i] for i in usable]),
            grammar,
        )
        captions = _pseudo_captions(regen_cfg.lm_captions, items) if regen_cfg.lm_weight > 0 else []
        run.make_trainer(RegenTrainer, model, items, captions, rewards=rewards, regen=regen_cfg)
        return run.train_to_the_end(len(split.items))


def _pseudo_captions(bank_file: str, items: list) -> list[list[str]]:
    """Each training video's REST captions, for the LM term."""
    bank = CaptionBank.load(bank_file)
    where = {k: i for i, k in enumerate(bank.keys)}
    missing = [video_id(it) for it in items if video_id(it) not in where]
    if missing:
        raise DataError(
            f"{bank_file}: no captions for {len(missing)} training video(s), e.g. {missing[0]}"
        )
    return [bank.captions(where[video_id(it)]) for it in items]
