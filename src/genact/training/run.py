"""A training run's life, one for every trainer (REST, ReGen, the supervised
baseline, few-shot): `Run` joins torchrun, locks and checks `run.dir` (a RunDir),
resumes or starts (checkpoint, metrics, model), records the config and videos once
the start has passed its checks, trains to the end and writes final/ and the
summary. What differs between trainers comes from their config class (see
genact.config.RunSettings): its kind, the settings a resume may change, and those
only training reads."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from genact.config import RunSettings
from genact.data.datasets import SkipReport, VideoItem, video_id
from genact.data.frame_cache import use_frame_cache
from genact.data.splits import Split, load_split
from genact.distributed import Dist, all_reduce_sum, barrier, cleanup, init_distributed
from genact.errors import ConfigError
from genact.inference.processing import training_short_side
from genact.io import atomic_dir
from genact.models.hub import check_finite, resolve_model_dir
from genact.models.video_blip import ADAPTER_WEIGHTS, VideoBlip
from genact.settings import freeze, replace, to_dict
from genact.training.card import write_model_card
from genact.training.checkpoints import Checkpoints
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir
from genact.training.summary import write_summary
from genact.training.trainer import CaptionTrainer, steps_per_epoch

log = logging.getLogger(__name__)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def has_checkpoint(run_dir: RunDir) -> bool:
    """Whether training in `run_dir` has written a checkpoint."""
    return (run_dir.checkpoints / "latest").exists()


def check_run_dir(cfg: RunSettings) -> None:
    """Refuse to start over a run that is there (unless run.resume=auto), or to resume
    it with a different config apart from the config class's `resumable` settings (and,
    before the first checkpoint, its `training_only` ones)."""
    run_dir = RunDir(cfg.run.dir)
    if not run_dir.is_run():
        return
    if cfg.run.resume != "auto":
        raise ConfigError(
            f"{run_dir.path}: holds a run already; pass --resume (run.resume=auto) to continue it, "
            "or choose another run.dir"
        )
    # a setting newer than the saved run counts as its default, which is what the
    # version that wrote the run did
    new = _flat(to_dict(cfg))
    old = {**_flat(to_dict(type(cfg)())), **_flat(run_dir.read_config())}
    untrained = not has_checkpoint(run_dir)
    diff = sorted(
        k
        for k in set(old) | set(new)
        if old.get(k) != new.get(k)
        and k not in cfg.resumable
        and not (k in cfg.model_settings and new.get(k) is None)
        and not (untrained and k.startswith(cfg.training_only))
    )
    if diff:
        raise ConfigError(
            f"{run_dir.config}: resuming with a different config ({', '.join(diff)}); "
            "use the saved config or another run.dir"
        )


_held_locks: dict[Path, FileLock] = {}


def lock_run_dir(run_dir: RunDir) -> None:
    """Hold `run_dir`'s lock until release_run_dir (or this process's death: the lock
    is the kernel's, so a killed run never blocks its --resume). A directory that
    another process holds is refused in one line."""
    run_dir.path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir.lock), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = run_dir.owner.read_text().strip() if run_dir.owner.exists() else "unknown"
        raise ConfigError(
            f"{run_dir.path}: in use by another genact process ({owner}); wait for it to end, "
            "or choose another run.dir"
        ) from None
    run_dir.owner.write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
    _held_locks[run_dir.path] = lock


def release_run_dir(run_dir: RunDir) -> None:
    lock = _held_locks.pop(run_dir.path, None)
    if lock is not None:
        lock.release()


def take_run_dir(cfg: RunSettings, dist: Dist) -> RunDir:
    """Take `cfg.run.dir`'s lock on the main process (see lock_run_dir) and check the
    directory (see check_run_dir). Nothing is written until `record_run`, so a start
    that fails its checks leaves nothing that blocks the corrected command. The caller
    releases the lock with release_run_dir when the run ends."""
    run_dir = RunDir(cfg.run.dir)
    busy = ""
    if dist.main:
        try:
            lock_run_dir(run_dir)
        except ConfigError as e:
            busy = str(e)
    if all_reduce_sum([float(bool(busy))], dist)[
        0
    ]:  # every process learns that the directory is taken
        raise ConfigError(busy or f"{run_dir.path}: in use by another genact process")
    try:
        check_run_dir(cfg)
        barrier(dist)
    except BaseException:
        release_run_dir(run_dir)
        raise
    return run_dir


def record_run(cfg: RunSettings, run_dir: RunDir, items: list[VideoItem], dist: Dist) -> None:
    """Once a start has passed its checks: write the config and the training videos
    (`config.yaml`, `videos.json`); from then on the directory holds a run. On resume,
    refuse in one line if the videos changed, since the run's per-video state (banks,
    neighbours, data order) is laid out over them."""
    ids = [video_id(it) for it in items]
    resuming = run_dir.is_run()
    barrier(dist)  # every process has looked before the main one writes
    saved = run_dir.read_videos() if resuming else None
    if saved is not None and saved != ids:
        added, removed = sorted(set(ids) - set(saved)), sorted(set(saved) - set(ids))
        what = ", ".join(
            f"{len(v)} {k} (e.g. {v[0]})" for k, v in (("added", added), ("removed", removed)) if v
        )
        raise ConfigError(
            f"{run_dir.path}: the training videos changed since the run started "
            f"({what or 'same videos, another order'}); restore them, or start a new run.dir"
        )
    if saved is None and dist.main:
        run_dir.write_videos(ids)
    # before training, corrections are kept
    if dist.main and (not resuming or not has_checkpoint(run_dir)):
        run_dir.write_config(to_dict(cfg))
    barrier(dist)


def starting_model(model_cfg, checkpoint: Path | None, num_frames: int | None) -> VideoBlip:
    """The checkpoint's model when resuming, else the configured BLIP / VideoBlip.
    A prompt or frame count left unset (None) is the saved model's; the log says
    which value is used and where it comes from."""
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
        return VideoBlip.from_pretrained(checkpoint / "model")
    path = model_cfg.blip
    given = {
        "num_frames": num_frames,
        "prompt": model_cfg.prompt,
        "image_size": model_cfg.image_size,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    # no trained adapters: choose the layout
    if not (resolve_model_dir(path) / ADAPTER_WEIGHTS).exists():
        overrides.update(
            use_adapters=model_cfg.use_adapters, adapter_layers=model_cfg.adapter_layers
        )
    model = VideoBlip.from_pretrained(path, **overrides)
    saved = VideoBlip.saved_settings(path)
    for key, name in (
        ("prompt", "model.prompt"),
        ("num_frames", "data.frames"),
        ("image_size", "model.image_size"),
    ):
        where = (
            "set in the config"
            if given[key] is not None
            else f"the saved model's, {path}"
            if saved.get(key) is not None
            else f"genact's default; {path} has none"
        )
        value = model.input_size if key == "image_size" else getattr(model.config, key)
        log.info("%s = %r (%s)", name, value, where)
    return model


def resolved(cfg: RunSettings, model: VideoBlip) -> RunSettings:
    """`cfg` with its unset model settings (model.prompt, data.frames,
    model.image_size) filled in with the values `model` uses, frozen: what every
    stage reads from then on."""
    return freeze(
        replace(
            cfg,
            {
                "model.prompt": model.config.prompt,
                "data.frames": model.config.num_frames,
                "model.image_size": model.input_size,
            },
        )
    )


def training_split(cfg: RunSettings) -> Split:
    """The training split a run config names."""
    dc = cfg.data
    split = load_split(dc.format, dc.root, dc.list, dc.classes, dc.subset, dc.split, dc.limit)
    log.info("%d videos in the training split", len(split.items))
    return split


class Run:
    """One training run, as a context manager every trainer shares:

        # torchrun, run.dir's lock and checks, checkpoint, metrics
        with Run(cfg, log) as run:
            # the checkpoint's, or the configured one; run.cfg is resolved
            model = run.load_model()
            # the checks that need the videos; config.yaml, videos.json
            run.record_videos(items)
            run.make_trainer(CaptionTrainer, model, run.frame_cache(items, model), captions)
            return run.train_to_the_end(len(items))  # optim.epochs, then final/ and summary.md

    `dist`, when given, is a process group the caller holds (a command that trains
    and then evaluates); otherwise the run joins torchrun's and leaves it at the end.
    Leaving the block (normally or not) closes the metrics, drops DDP before the
    process group, releases the lock and leaves the group it joined.
    """

    def __init__(self, cfg: RunSettings, logger: logging.Logger, dist: Dist | None = None):
        self.cfg, self.log, self.started = cfg, logger, time.time()
        self.trainer: CaptionTrainer | None = None
        self._given_dist = dist

    def __enter__(self) -> "Run":
        cfg = self.cfg
        self.dist = self._given_dist or init_distributed(
            cfg.run.device,
            cfg.run.dist_timeout_min,
            threads=cfg.run.threads,
            workers=cfg.data.num_workers,
        )
        try:
            self.dir = take_run_dir(cfg, self.dist)
        except BaseException:
            self._leave()
            raise
        try:
            self.checkpoint = Checkpoints(self.dir.checkpoints).latest()
            self.metrics = Metrics(
                self.dir, self.dist.main, cfg.run.tensorboard, Checkpoints.step(self.checkpoint)
            )
        except BaseException:
            release_run_dir(self.dir)
            self._leave()
            raise
        self.log.info(
            "%s run in %s (%d process%s, %s)%s",
            cfg.kind,
            self.dir.path,
            self.dist.world,
            "es" if self.dist.world > 1 else "",
            self.dist.device,
            f", resuming from {self.checkpoint.name}" if self.checkpoint else "",
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.trainer is not None:
            self.trainer.close()  # DDP's reducer goes before the process group it holds
        self.metrics.close()
        release_run_dir(self.dir)
        self._leave()

    def _leave(self) -> None:
        if self._given_dist is None:
            cleanup(self.dist)

    def load_model(self) -> VideoBlip:
        """The checkpoint's model when resuming, else the configured one (see
        starting_model); `self.cfg` becomes the resolved, frozen config (see resolved)."""
        model = starting_model(self.cfg.model, self.checkpoint, self.cfg.data.frames).to(
            self.dist.device
        )
        self.cfg = resolved(self.cfg, model)
        return model

    def record_videos(self, items: list[VideoItem]) -> None:
        """Check what needs the training videos (the global batch), then record the
        run (config.yaml, videos.json; see record_run)."""
        steps_per_epoch(len(items), self.cfg.optim, self.dist.world)
        record_run(self.cfg, self.dir, items, self.dist)

    def frame_cache(self, items: list[VideoItem], model: VideoBlip) -> list[VideoItem]:
        """`items`, reading their frames from `data.frame_cache` where it holds them
        for the model's T and training short side (see genact.data.frame_cache)."""
        return use_frame_cache(
            items, self.cfg.data.frame_cache, model.config.num_frames, training_short_side(model)
        )

    def make_trainer(
        self,
        cls: type[CaptionTrainer],
        model: VideoBlip,
        items: list[VideoItem],
        captions: list[list[str]],
        **kwargs,
    ) -> CaptionTrainer:
        """The run's trainer (CaptionTrainer or a subclass) on `items` with their
        caption lists, restored from the checkpoint."""
        self.trainer = cls(
            model,
            items,
            captions,
            self.cfg.optim,
            self.cfg.run,
            self.dist,
            self.metrics,
            SkipReport(),
            self.cfg.data.num_workers,
            **kwargs,
        )
        if self.checkpoint is not None:
            self.trainer.restore(self.checkpoint)
        return self.trainer

    def train_until(self, end_epoch: int) -> bool:
        """Train to the start of `end_epoch`; False when run.stop_at_step stopped it.
        Videos that failed to decode are recorded in the run's report."""
        done = self.trainer.train_until(end_epoch)
        self.trainer.report.save(self.dir.skipped_log(self.dist.rank), "training")
        self.trainer.report.skipped.clear()
        return done

    def train_to_the_end(self, num_videos: int) -> Path | None:
        """Train to optim.epochs, then finish; None when run.stop_at_step stopped it."""
        return self.finish(num_videos) if self.train_until(self.cfg.optim.epochs) else None

    def finish(self, num_videos: int) -> Path:
        """Write final/ (recording which kind of run made it, with its model card) and
        summary.md."""
        model = self.trainer.model
        model.config.trained_by = self.cfg.kind
        # never a final/ from a diverged run
        check_finite(model.named_parameters(), "the trained weights")
        if self.dist.main:
            with atomic_dir(self.dir.final) as tmp:
                model.save_pretrained(tmp)
                write_model_card(tmp, self.cfg, videos=num_videos, trained=len(self.trainer.items))
            write_summary(
                self.dir,
                self.cfg,
                time.time() - self.started,
                num_videos,
                len(self.trainer.items),
                loss_should_fall=self.trainer.loss_should_fall,
            )
        barrier(self.dist)
        return self.dir.final
