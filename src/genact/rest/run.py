"""REST training end to end (Algorithm 1).

    round 0:  initial frame captions -> CLIP features -> neighbours -> retrieval -> round 0's bank
              train R epochs
    round r:  the model captions every video (new caption joins W_i) -> retrieval -> round r's bank
              train R epochs
    ...       until optim.epochs; the model is saved as the run's final model

Every stage leaves its result in the run directory (genact.training.rundir), so a
resumed run skips what is done and continues a half-done stage or epoch where it
stopped.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import torch

from genact.config import RestConfig
from genact.data.datasets import SkipReport, VideoItem, video_id
from genact.distributed import barrier
from genact.inference.captions import caption_videos, frame_captions
from genact.inference.features import video_feature_stage
from genact.models.clip import FrozenClip
from genact.models.hub import resolve_model_dir
from genact.models.video_blip import VideoBlip
from genact.rest.retrieval import import_faiss
from genact.rest.stages import caption_stage, neighbour_stage, retrieval_stage
from genact.training.bank import GENERATED, INIT, CaptionBank
from genact.training.run import Run, training_split
from genact.training.rundir import RunDir
from genact.training.trainer import CaptionTrainer

log = logging.getLogger(__name__)


class RestRun:
    """Algorithm 1 inside a `Run` (whose model is loaded): the stages around training
    and the rounds."""

    def __init__(self, run: Run, model: VideoBlip, items: list[VideoItem]):
        self.run, self.cfg, self.model, self.items = run, run.cfg, model, items
        self.dir, self.dist = run.dir, run.dist
        self.progress = self.cfg.run.progress and self.dist.main  # show progress bars
        self._clip: FrozenClip | None = None

    @property
    def clip(self) -> FrozenClip:
        if self._clip is None:
            self._clip = FrozenClip.from_pretrained(self.cfg.model.clip).to(self.dist.device)
        return self._clip

    def train(self) -> Path | None:
        """Every round that is left; returns final/ (None when run.stop_at_step stopped it)."""
        cfg = self.cfg
        if not self.dir.has_bank(0):
            self.initialise()
        by_id = {video_id(it): it for it in self.items}
        first = self.dir.bank(0)
        train_items = [by_id[k] for k in first.keys]
        per_round, epochs = cfg.rest.epochs_per_round, cfg.optim.epochs
        rounds = math.ceil(epochs / per_round)
        trainer = self.run.make_trainer(
            CaptionTrainer,
            self.model,
            train_items,
            [first.captions(i) for i in range(len(train_items))],
        )
        for r in range(min(trainer.state.epoch // per_round, rounds - 1), rounds):
            if not self.dir.has_bank(r):
                self.refresh(r, train_items)
            bank = self.dir.bank(r)
            trainer.use_captions([bank.captions(i) for i in range(len(train_items))])
            if not self.run.train_until(min((r + 1) * per_round, epochs)):
                return None
        return self.run.finish(len(self.items))

    # ---- Algorithm 1, steps 1-4 ------------------------------------------------
    def initialise(self) -> None:
        cfg, dist = self.cfg, self.dist
        rest_cfg = cfg.rest
        init = caption_stage(
            "init",
            self.dir,
            self.items,
            list(range(len(self.items))),
            caption_fn=lambda its, rep: frame_captions(
                self.model,
                its,
                cfg.data.frames,
                rest_cfg.prompts,
                rest_cfg.caption_batch,
                cfg.data.num_workers,
                rep,
                progress=False,
                num_beams=rest_cfg.num_beams,
                max_new_tokens=rest_cfg.max_new_tokens,
                decoder=rest_cfg.decoder,
            ),
            dist=dist,
            chunk=rest_cfg.chunk,
            progress=self.progress,
        )
        report = SkipReport()
        feats = video_feature_stage(
            self.clip,
            self.dir.video_features,
            self.items,
            num_frames=cfg.data.frames,
            dist=dist,
            report=report,
            dtype=rest_cfg.feature_dtype,
            batch_size=rest_cfg.clip_batch,
            num_workers=cfg.data.num_workers,
            progress=self.progress,
        )
        report.save(self.dir.skipped_log(dist.rank), "CLIP video features")
        # every process holds all captions and features, so each builds the same bank
        usable = [i for i in range(len(self.items)) if i in init and i in feats and init[i]]
        log.info(
            "%d of %d videos have initial captions and CLIP features", len(usable), len(self.items)
        )
        bank = CaptionBank([video_id(self.items[i]) for i in usable])
        for j, i in enumerate(usable):
            for text in init[i]:
                bank.add(j, text, 0, INIT)
        if dist.main:
            self.dir.save_train_features(
                torch.stack([feats[i] for i in usable]).to(getattr(torch, rest_cfg.feature_dtype))
            )
        barrier(dist)
        self._retrieve(bank, 0)

    # ---- Algorithm 1, steps 10-13 ----------------------------------------------
    def refresh(self, r: int, train_items: list[VideoItem]) -> None:
        """Round r's bank: the current model adds one caption per video, then retrieval."""
        cfg, rest_cfg = self.cfg, self.cfg.rest
        new = caption_stage(
            RunDir.refresh_stage(r),
            self.dir,
            train_items,
            list(range(len(train_items))),
            caption_fn=lambda its, rep: caption_videos(
                self.model,
                its,
                rest_cfg.caption_batch,
                cfg.data.num_workers,
                rep,
                progress=False,
                num_beams=rest_cfg.num_beams,
                max_new_tokens=rest_cfg.max_new_tokens,
                decoder=rest_cfg.decoder,
            ),
            dist=self.dist,
            chunk=rest_cfg.chunk,
            progress=self.progress,
        )
        bank = self.dir.bank(r - 1)  # on every process, as are the new captions
        for i, caps in new.items():
            for text in caps:
                bank.add(i, text, r, GENERATED)
        self._retrieve(bank, r)

    def _retrieve(self, bank: CaptionBank, r: int) -> None:
        """Eqs. 5-6 on `bank` with the stored video features, on all processes; the main
        one saves the result as round r's bank."""
        rest_cfg = self.cfg.rest
        video_feats = self.dir.load_train_features().float()
        neighbours = neighbour_stage(
            self.dir,
            video_feats,
            rest_cfg.neighbours,
            dist=self.dist,
            progress=self.progress,
            index=rest_cfg.neighbour_index,
            nprobe=rest_cfg.faiss_nprobe,
        )
        h = (
            rest_cfg.neighbours
            if rest_cfg.retrieval_rounds is None or r < rest_cfg.retrieval_rounds
            else 1
        )
        stats = retrieval_stage(
            bank,
            r,
            video_feats,
            neighbours,
            h=h,
            clip=self.clip,
            run_dir=self.dir,
            keep=rest_cfg.keep,
            dist=self.dist,
            feature_dtype=rest_cfg.feature_dtype,
            progress=self.progress,
        )
        if self.dist.main:
            sources = Counter(c.source for e in bank.entries for c in e)
            stats.update(
                {f"captions_{s}": n for s, n in sources.items()},
                neighbours_used=min(h, neighbours.shape[1]),
            )
            self.dir.save_bank(bank, r)
            self.run.metrics.log("round", r, **stats)
            log.info("round %d bank: %s", r, json.dumps(stats))
        barrier(self.dist)


def run_rest(cfg: RestConfig) -> Path | None:
    """Algorithm 1 with `cfg` (or what is left of it); returns the final model directory
    (None when run.stop_at_step stopped the run)."""
    if cfg.rest.neighbour_index == "faiss-ivf":
        import_faiss()  # before hours of captioning, not after
    with Run(cfg, log) as run:
        model = run.load_model()
        items = training_split(run.cfg).items
        resolve_model_dir(cfg.model.clip)  # present (offline too) before any captioning
        run.record_videos(items)
        return RestRun(run, model, run.frame_cache(items, model)).train()
