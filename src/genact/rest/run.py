"""REST training end to end (Algorithm 1), and the "GAR + class labels" baseline.

    round 0:  initial frame captions -> CLIP features -> neighbours -> retrieval -> bank/round-000
              train R epochs
    round r:  the model captions every video (new caption joins W_i) -> retrieval -> bank/round-r
              train R epochs
    ...       until optim.epochs; the model is saved as final/

Every stage leaves its result in the run directory, so a resumed run skips what
is done and continues a half-done stage or epoch where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

import torch

from genact.config import RestConfig, SupervisedConfig
from genact.data.datasets import SkipReport, VideoItem, video_id
from genact.data.splits import Split, load_split
from genact.distributed import barrier, cleanup
from genact.io import atomic_write_text
from genact.models.clip import FrozenClip
from genact.inference.captions import caption_videos, frame_captions
from genact.inference.features import video_feature_stage
from genact.rest.bank import GENERATED, INIT, CaptionBank
from genact.rest.retrieval import import_faiss
from genact.rest.stages import caption_stage, neighbour_stage, retrieval_stage
from genact.models.hub import resolve_model_dir
from genact.runs import (
    check_run_dir, epoch_losses, load_model, markdown_table, release_run_dir, resolve_model_settings,
    record_run, save_final, start_run, with_frame_cache, write_report,
)
from genact.training import CaptionTrainer, Checkpoints, Metrics, steps_per_epoch
from genact.errors import DataError

log = logging.getLogger(__name__)


def _bank_path(run_dir: Path, r: int) -> Path:
    return run_dir / "bank" / f"round-{r:03d}.jsonl"


def training_split(cfg) -> Split:
    """The training split a run config names."""
    dc = cfg.data
    split = load_split(dc.format, dc.root, dc.list, dc.classes, dc.subset, dc.split, dc.limit)
    log.info("%d videos in the training split", len(split.items))
    return split


class RestRun:
    """One REST run; `run()` does all of it (or what is left of it)."""

    def __init__(self, cfg: RestConfig):
        self.cfg = cfg
        if cfg.rest.neighbour_index == "faiss-ivf":
            import_faiss()  # before hours of captioning, not after
        self.d, self.dir = start_run(cfg)
        try:
            self.checkpoint = Checkpoints(self.dir).latest()
            self.metrics = Metrics(self.dir, self.d.main, cfg.run.tensorboard, Checkpoints.step(self.checkpoint))
            self.progress = cfg.run.progress and self.d.main
            self.model = load_model(cfg.model, self.checkpoint, cfg.data.frames).to(self.d.device)
            resolve_model_settings(cfg, self.model)
            items = training_split(cfg).items
            steps_per_epoch(len(items), cfg.optim, self.d.world)  # before hours of captioning, not after
            resolve_model_dir(cfg.model.clip)
            record_run(cfg, self.dir, items, self.d)
            self.items = with_frame_cache(items, cfg.data, self.model)
        except BaseException:
            release_run_dir(self.dir)
            raise
        self._clip: FrozenClip | None = None

    @property
    def clip(self) -> FrozenClip:
        if self._clip is None:
            self._clip = FrozenClip.from_pretrained(self.cfg.model.clip).to(self.d.device)
        return self._clip

    def run(self) -> Path | None:
        """Train; returns final/ (None when run.stop_at_step stopped the run)."""
        cfg, start = self.cfg, time.time()
        try:
            if not _bank_path(self.dir, 0).exists():
                self.initialise()
            keys = CaptionBank.load(_bank_path(self.dir, 0)).keys
            by_id = {video_id(it): it for it in self.items}
            train_items = [by_id[k] for k in keys]
            report = SkipReport()
            trainer = CaptionTrainer(self.model, train_items, cfg.optim, cfg.run, self.d, self.metrics, report,
                                     cfg.data.num_workers)
            if self.checkpoint is not None:
                trainer.restore(self.checkpoint)
            per_round, epochs = cfg.rest.epochs_per_round, cfg.optim.epochs
            rounds = math.ceil(epochs / per_round)
            for r in range(min(trainer.progress.epoch // per_round, rounds - 1), rounds):
                if not _bank_path(self.dir, r).exists():
                    self.refresh(r, train_items)
                bank = CaptionBank.load(_bank_path(self.dir, r))
                trainer.captions = [bank.captions(i) for i in range(len(train_items))]
                stopped = not trainer.train_until(min((r + 1) * per_round, epochs))
                report.record(self.dir, self.d.rank, "training")
                report.skipped.clear()
                if stopped:
                    return None
            return finish_run(trainer, cfg, self.dir, start, len(self.items))
        finally:
            self.metrics.close()
            release_run_dir(self.dir)
            cleanup(self.d)

    # ---- Algorithm 1, steps 1-4 ------------------------------------------------
    def initialise(self) -> None:
        cfg, d = self.cfg, self.d
        rc = cfg.rest
        init = caption_stage(
            "init", self.dir, self.items, list(range(len(self.items))),
            lambda its, rep: frame_captions(self.model, its, cfg.data.frames, rc.prompts, rc.caption_batch,
                                            cfg.data.num_workers, rep, progress=False, num_beams=rc.num_beams,
                                            max_new_tokens=rc.max_new_tokens),
            d, rc.chunk, self.progress,
        )
        feats = video_feature_stage(self.clip, self.dir, self.items, cfg.data.frames, d, rc.feature_dtype,
                                    rc.clip_batch, cfg.data.num_workers, self.progress)
        # every process holds all captions and features, so each builds the same bank
        usable = [i for i in range(len(self.items)) if i in init and i in feats and init[i]]
        log.info("%d of %d videos have initial captions and CLIP features", len(usable), len(self.items))
        bank = CaptionBank([video_id(self.items[i]) for i in usable])
        for j, i in enumerate(usable):
            for text in init[i]:
                bank.add(j, text, 0, INIT)
        if d.main:
            video_feats = torch.stack([feats[i] for i in usable]).to(getattr(torch, rc.feature_dtype))
            torch.save(video_feats, self.dir / "features" / "train_videos.pt")
        barrier(d)
        self._retrieve(bank, 0)

    # ---- Algorithm 1, steps 10-13 ----------------------------------------------
    def refresh(self, r: int, train_items: list[VideoItem]) -> None:
        """Round r's bank: the current model adds one caption per video, then retrieval."""
        cfg, rc = self.cfg, self.cfg.rest
        new = caption_stage(
            f"round-{r:03d}", self.dir, train_items, list(range(len(train_items))),
            lambda its, rep: caption_videos(self.model, its, rc.caption_batch, cfg.data.num_workers, rep,
                                            progress=False, num_beams=rc.num_beams, max_new_tokens=rc.max_new_tokens),
            self.d, rc.chunk, self.progress,
        )
        bank = CaptionBank.load(_bank_path(self.dir, r - 1))  # on every process, as are the new captions
        for i, caps in new.items():
            for text in caps:
                bank.add(i, text, r, GENERATED)
        self._retrieve(bank, r)

    def _retrieve(self, bank: CaptionBank, r: int) -> None:
        """Eqs. 5-6 on `bank` with the stored video features, on all processes; the main
        one saves the result as round r's bank."""
        rc = self.cfg.rest
        video_feats = torch.load(self.dir / "features" / "train_videos.pt", weights_only=True).float()
        neighbours = neighbour_stage(self.dir, video_feats, rc.neighbours, self.d, self.progress,
                                     rc.neighbour_index, rc.faiss_nprobe)
        h = rc.neighbours if rc.retrieval_rounds is None or r < rc.retrieval_rounds else 1
        stats = retrieval_stage(bank, r, video_feats, neighbours, h, self.clip, self.dir, rc.keep, self.d,
                                rc.feature_dtype, self.progress)
        if self.d.main:
            sources = Counter(c.source for e in bank.entries for c in e)
            stats.update({f"captions_{s}": n for s, n in sources.items()}, neighbours_used=min(h, neighbours.shape[1]))
            bank.save(_bank_path(self.dir, r))
            self.metrics.log("round", r, **stats)
            log.info("round %d bank: %s", r, json.dumps(stats))
        barrier(self.d)


def run_rest(cfg: RestConfig) -> Path | None:
    """Algorithm 1 with `cfg`; returns the final model directory."""
    return RestRun(cfg).run()


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
    start = time.time()
    d, run_dir = start_run(cfg)
    metrics = None
    try:
        checkpoint = Checkpoints(run_dir).latest()
        metrics = Metrics(run_dir, d.main, cfg.run.tensorboard, Checkpoints.step(checkpoint))
        model = load_model(cfg.model, checkpoint, cfg.data.frames).to(d.device)
        resolve_model_settings(cfg, model)
        steps_per_epoch(len(items), cfg.optim, d.world)
        record_run(cfg, run_dir, items, d)
        items = with_frame_cache(items, cfg.data, model)
        report = SkipReport()
        trainer = CaptionTrainer(model, items, cfg.optim, cfg.run, d, metrics, report, cfg.data.num_workers)
        if checkpoint is not None:
            trainer.restore(checkpoint)
        trainer.captions = [[class_names[it.label]] for it in items]
        return train_to_the_end(trainer, cfg, run_dir, start, len(items))
    finally:
        if metrics is not None:
            metrics.close()
        release_run_dir(run_dir)
        cleanup(d)


def train_to_the_end(trainer: CaptionTrainer, cfg, run_dir: Path, start: float, num_videos: int) -> Path | None:
    """Train up to optim.epochs, then write final/ and summary.md; None when
    run.stop_at_step stopped the run first."""
    done = trainer.train_until(cfg.optim.epochs)
    trainer.report.record(run_dir, trainer.d.rank, "training")
    return finish_run(trainer, cfg, run_dir, start, num_videos) if done else None


def finish_run(trainer: CaptionTrainer, cfg, run_dir: Path, start: float, num_videos: int) -> Path:
    """Write final/ (recording which kind of run made it) and summary.md (and
    report.json) once training is complete."""
    trainer.model.config.trained_by = "rest" if hasattr(cfg, "rest") else "regen" if hasattr(cfg, "regen") \
        else "supervised"
    final = save_final(trainer.model, run_dir, trainer.d)
    if trainer.d.main:
        write_summary(run_dir, cfg, time.time() - start, num_videos, len(trainer.items))
    barrier(trainer.d)
    return final


def write_summary(run_dir: Path, cfg, seconds: float, num_videos: int, num_trained: int) -> None:
    """summary.md: what was trained on, loss per epoch, each retrieval round, skipped videos."""
    metrics = Metrics(run_dir, enabled=False)
    skipped = write_report(run_dir)
    lines = [f"# Run summary: {run_dir.name}", "",
             f"- videos in the split: {num_videos}; trained on: {num_trained}; unreadable: {len(skipped)}",
             f"- epochs: {cfg.optim.epochs}; global batch {cfg.optim.global_batch}; lr {cfg.optim.lr} -> "
             f"{cfg.optim.min_lr}; time {seconds / 60:.1f} min (the last session, if resumed)",
             f"- final model: `{run_dir / 'final'}`", ""]
    losses = epoch_losses(metrics.read("train"))
    if losses:
        lines += ["## Training loss (last logged value of each epoch)", "",
                  markdown_table(["epoch", "loss"], [[e + 1, f"{v:.4f}"] for e, v in sorted(losses.items())]), ""]
    rounds = metrics.read("round")
    if rounds:
        lines += ["## Retrieval rounds", "", markdown_table(
            ["round", "neighbours", "videos changed", "new captions", "mean cosine", "distinct captions",
             "init / retrieved / generated"],
            [[r["step"], r["neighbours_used"], r["videos_changed"], r["captions_new"], r["mean_cosine"],
              r["distinct_captions"],
              f"{r.get('captions_init', 0)} / {r.get('captions_retrieved', 0)} / {r.get('captions_generated', 0)}"]
             for r in rounds]), ""]
    if skipped:
        lines += ["## Unreadable videos (skipped)", ""]
        lines += [f"- `{s['path']}` ({', '.join(s['stages'])}): {s['error']}" for s in skipped[:50]]
        lines += [f"- ... {len(skipped) - 50} more in report.json" if len(skipped) > 50 else "", ""]
    atomic_write_text(run_dir / "summary.md", "\n".join(lines).rstrip() + "\n")
