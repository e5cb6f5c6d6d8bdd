"""A training run's life, one for every trainer (REST, ReGen, the supervised
baseline, few-shot): `Run` joins torchrun, locks and checks `run.dir`, resumes or
starts (checkpoint, metrics, model), records the config and videos once the start
has passed its checks, trains to the end and writes final/ and the summary.


    runs/rest_k400/
      config.yaml            the full config the run uses
      checkpoints/           step-XXXXXXXX/{model/, trainer.pt}, `latest`
      metrics.jsonl, tb/     metrics (JSON lines, TensorBoard)
      logs/                  unreadable videos, per process
      final/                 the trained model (a VideoBlip directory)
      report.json            unreadable videos, deduplicated
      summary.md             what happened, for people
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from genact.config import ConfigError, save_config, to_dict
from genact.data.datasets import SkipReport, VideoItem, video_id
from genact.data.frame_cache import use_frame_cache
from genact.data.splits import Split, load_split
from genact.distributed import Dist, all_reduce_sum, barrier, cleanup, init_distributed
from genact.io import atomic_dir, atomic_write_text
from genact.models.hub import check_finite, resolve_model_dir
from genact.models.video_blip import ADAPTER_WEIGHTS, VideoBlip
from genact.run_summary import write_summary
from genact.checkpoints import Checkpoints
from genact.metrics import Metrics
from genact.training import CaptionTrainer, steps_per_epoch

log = logging.getLogger(__name__)

# settings that may differ when a run is resumed; anything else must match
# (per-pass batch sizes change memory, not results: see docs/rest.md, "Guarantees")
RESUMABLE_CHANGES = ("run.dir", "run.resume", "run.stop_at_step", "run.progress", "run.device", "run.log_every",
                     "run.checkpoint_every", "run.keep_checkpoints", "run.tensorboard", "run.dist_timeout_min",
                     "run.threads", "data.num_workers", "data.frame_cache", "optim.compile", "optim.batch_size",
                     "rest.caption_batch", "rest.clip_batch", "regen.clip_batch")


# settings that only training reads: until the first checkpoint, a resume may correct them (the stages already
# done, such as REST's round-0 captions, features and retrieval, are reused) and config.yaml records the new values
TRAINING_SETTINGS = ("optim.", "run.seed", "rest.epochs_per_round")

# left unset (None), these take the model's value; config.yaml records the value used
MODEL_SETTINGS = ("data.frames", "model.prompt", "model.image_size")


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_run_dir(cfg: Any) -> None:
    """Refuse to start over a run that is there (unless run.resume=auto), or to
    resume it with a different config apart from RESUMABLE_CHANGES."""
    run_dir = Path(cfg.run.dir)
    saved = run_dir / "config.yaml"
    if saved.exists():
        if cfg.run.resume != "auto":
            raise ConfigError(f"{run_dir}: holds a run already; pass --resume (run.resume=auto) to continue it, "
                              "or choose another run.dir")
        old, new = _flat(yaml.safe_load(saved.read_text())), _flat(to_dict(cfg))
        resumable = set(RESUMABLE_CHANGES)
        if hasattr(cfg, "regen"):  # ReGen samples captions per micro-batch: other micro-batches, other draws
            resumable.discard("optim.batch_size")
        untrained = not has_checkpoint(run_dir)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in resumable
                      and not (k in MODEL_SETTINGS and new.get(k) is None)
                      and not (untrained and k.startswith(TRAINING_SETTINGS)))
        if diff:
            raise ConfigError(f"{saved}: resuming with a different config ({', '.join(diff)}); "
                              "use the saved config or another run.dir")


def has_checkpoint(run_dir: Path) -> bool:
    """Whether training in `run_dir` has written a checkpoint."""
    return (Path(run_dir) / "checkpoints" / "latest").exists()


RUN_LOCK, RUN_OWNER = ".genact.lock", ".genact.owner"
_held_locks: dict[Path, FileLock] = {}


def lock_run_dir(run_dir: Path) -> None:
    """Hold `run_dir`'s lock until release_run_dir (or this process's death: the lock
    is the kernel's, so a killed run never blocks its --resume). A directory that
    another process holds is refused in one line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / RUN_LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = (run_dir / RUN_OWNER).read_text().strip() if (run_dir / RUN_OWNER).exists() else "unknown"
        raise ConfigError(f"{run_dir}: in use by another genact process ({owner}); wait for it to end, "
                          "or choose another run.dir") from None
    (run_dir / RUN_OWNER).write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
    _held_locks[run_dir] = lock


def release_run_dir(run_dir: Path) -> None:
    lock = _held_locks.pop(Path(run_dir), None)
    if lock is not None:
        lock.release()


def start_run(cfg: Any) -> tuple[Dist, Path]:
    """Join torchrun's process group (if any), take `cfg.run.dir`'s lock on the main
    process (see lock_run_dir) and check the directory (see check_run_dir). Nothing
    is written until `record_run`, so a start that fails its checks leaves nothing
    that blocks the corrected command. The caller releases the lock with
    release_run_dir when the run ends."""
    run_dir = Path(cfg.run.dir)
    dist = init_distributed(cfg.run.device, cfg.run.dist_timeout_min, threads=cfg.run.threads,
                            workers=cfg.data.num_workers)
    busy = ""
    if dist.main:
        try:
            lock_run_dir(run_dir)
        except ConfigError as e:
            busy = str(e)
    if all_reduce_sum([float(bool(busy))], dist)[0]:  # every process learns that the directory is taken
        cleanup(dist)
        raise ConfigError(busy or f"{run_dir}: in use by another genact process")
    try:
        check_run_dir(cfg)
        barrier(dist)
    except BaseException:
        release_run_dir(run_dir)
        cleanup(dist)
        raise
    return dist, run_dir


def record_run(cfg: Any, run_dir: Path, items: list[VideoItem], dist: Dist) -> None:
    """Once a start has passed its checks: write the config and the training videos
    (`config.yaml`, `videos.json`); from then on the directory holds a run. On resume,
    refuse in one line if the videos changed, since the run's per-video state (banks,
    neighbours, data order) is laid out over them."""
    path, ids = run_dir / "videos.json", [video_id(it) for it in items]
    resuming = (run_dir / "config.yaml").exists()
    barrier(dist)  # every process has looked before the main one writes
    if resuming and path.exists():
        saved = json.loads(path.read_text())
        if saved != ids:
            added, removed = sorted(set(ids) - set(saved)), sorted(set(saved) - set(ids))
            what = ", ".join(f"{len(v)} {k} (e.g. {v[0]})" for k, v in (("added", added), ("removed", removed)) if v)
            raise ConfigError(f"{run_dir}: the training videos changed since the run started "
                              f"({what or 'same videos, another order'}); restore them, or start a new run.dir")
    elif dist.main:
        atomic_write_text(path, json.dumps(ids) + "\n")
    if dist.main and (not resuming or not has_checkpoint(run_dir)):  # before training, corrections are kept
        save_config(cfg, run_dir / "config.yaml")
    barrier(dist)


def load_model(model_cfg, checkpoint: Path | None, num_frames: int | None) -> VideoBlip:
    """The checkpoint's model when resuming, else the configured BLIP / VideoBlip.
    A prompt or frame count left unset (None) is the saved model's; the log says
    which value is used and where it comes from."""
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
        return VideoBlip.from_pretrained(checkpoint / "model")
    path = model_cfg.blip
    given = {"num_frames": num_frames, "prompt": model_cfg.prompt, "image_size": model_cfg.image_size}
    overrides = {k: v for k, v in given.items() if v is not None}
    if not (resolve_model_dir(path) / ADAPTER_WEIGHTS).exists():  # no trained adapters: choose the layout
        overrides.update(use_adapters=model_cfg.use_adapters, adapter_layers=model_cfg.adapter_layers)
    model = VideoBlip.from_pretrained(path, **overrides)
    saved = VideoBlip.saved_settings(path)
    for key, name in (("prompt", "model.prompt"), ("num_frames", "data.frames"), ("image_size", "model.image_size")):
        where = ("set in the config" if given[key] is not None else
                 f"the saved model's, {path}" if saved.get(key) is not None else f"genact's default; {path} has none")
        value = model.input_size if key == "image_size" else getattr(model.config, key)
        log.info("%s = %r (%s)", name, value, where)
    return model


def resolve_model_settings(cfg: Any, model: VideoBlip) -> None:
    """Fill the config's unset model settings (model.prompt, data.frames,
    model.image_size) with the values the loaded model uses, for the stages that
    read them from the config."""
    cfg.model.prompt, cfg.data.frames, cfg.model.image_size = model.config.prompt, model.config.num_frames, \
        model.input_size


def with_frame_cache(items: list[VideoItem], data_cfg, model: VideoBlip) -> list[VideoItem]:
    """`items`, reading their frames from `data.frame_cache` where it holds them
    for the model's T and training short side (see genact.data.frame_cache)."""
    side = model.transform(train=True).resize_side
    return use_frame_cache(items, data_cfg.frame_cache, model.config.num_frames, side)


def training_split(cfg: Any) -> Split:
    """The training split a run config names."""
    dc = cfg.data
    split = load_split(dc.format, dc.root, dc.list, dc.classes, dc.subset, dc.split, dc.limit)
    log.info("%d videos in the training split", len(split.items))
    return split


class Run:
    """One training run, as a context manager every trainer shares:

        with Run(cfg, log) as run:                  # torchrun, run.dir's lock and checks, checkpoint, metrics
            model = run.load_model()                # the checkpoint's, or the configured one
            run.record(items)                       # the checks that need the videos; config.yaml, videos.json
            trainer = run.trainer(CaptionTrainer, model, run.frame_cache(items, model))
            return run.train_to_the_end(len(items))  # optim.epochs, then final/ and summary.md

    Leaving it (normally or not) closes the metrics, drops DDP before the process
    group, releases the lock and leaves torchrun's group.
    """

    def __init__(self, cfg: Any, logger: logging.Logger):
        self.cfg, self.log, self.started = cfg, logger, time.time()
        self.trainer_: CaptionTrainer | None = None

    def __enter__(self) -> "Run":
        self.dist, self.dir = start_run(self.cfg)
        try:
            self.checkpoint = Checkpoints(self.dir).latest()
            self.metrics = Metrics(self.dir, self.dist.main, self.cfg.run.tensorboard, Checkpoints.step(self.checkpoint))
        except BaseException:
            release_run_dir(self.dir)
            cleanup(self.dist)
            raise
        self.log.info("%s run in %s (%d process%s, %s)%s", type(self.cfg).__name__.removesuffix("Config"), self.dir,
                      self.dist.world, "es" if self.dist.world > 1 else "", self.dist.device,
                      f", resuming from {self.checkpoint.name}" if self.checkpoint else "")
        return self

    def __exit__(self, *exc) -> None:
        if self.trainer_ is not None:
            self.trainer_.close()  # DDP's reducer goes before the process group it holds
        self.metrics.close()
        release_run_dir(self.dir)
        cleanup(self.dist)

    def load_model(self) -> VideoBlip:
        """The checkpoint's model when resuming, else the configured one; the config's
        unset model settings are filled in with the model's (see load_model)."""
        model = load_model(self.cfg.model, self.checkpoint, self.cfg.data.frames).to(self.dist.device)
        resolve_model_settings(self.cfg, model)
        return model

    def record(self, items: list[VideoItem]) -> None:
        """Check what needs the training videos (the global batch), then record the
        run (config.yaml, videos.json; see record_run)."""
        steps_per_epoch(len(items), self.cfg.optim, self.dist.world)
        record_run(self.cfg, self.dir, items, self.dist)

    def frame_cache(self, items: list[VideoItem], model: VideoBlip) -> list[VideoItem]:
        return with_frame_cache(items, self.cfg.data, model)

    def trainer(self, cls: type[CaptionTrainer], model: VideoBlip, items: list[VideoItem], **kwargs) -> CaptionTrainer:
        """The run's trainer (CaptionTrainer or a subclass), restored from the checkpoint."""
        self.trainer_ = cls(model, items, self.cfg.optim, self.cfg.run, self.dist, self.metrics, SkipReport(),
                            self.cfg.data.num_workers, **kwargs)
        if self.checkpoint is not None:
            self.trainer_.restore(self.checkpoint)
        return self.trainer_

    def train_until(self, end_epoch: int) -> bool:
        """Train to the start of `end_epoch`; False when run.stop_at_step stopped it.
        Videos that failed to decode are recorded in the run's report."""
        done = self.trainer_.train_until(end_epoch)
        self.trainer_.report.record(self.dir, self.dist.rank, "training")
        self.trainer_.report.skipped.clear()
        return done

    def train_to_the_end(self, num_videos: int) -> Path | None:
        """Train to optim.epochs, then finish; None when run.stop_at_step stopped it."""
        return self.finish(num_videos) if self.train_until(self.cfg.optim.epochs) else None

    def finish(self, num_videos: int) -> Path:
        """Write final/ (recording which kind of run made it) and summary.md."""
        model = self.trainer_.model
        model.config.trained_by = "rest" if hasattr(self.cfg, "rest") else "regen" if hasattr(self.cfg, "regen") \
            else "supervised"
        final = self.dir / "final"
        check_finite(model.named_parameters(), "the trained weights")  # never a final/ from a diverged run
        if self.dist.main:
            with atomic_dir(final) as tmp:
                model.save_pretrained(tmp)
            write_summary(self.dir, self.cfg, time.time() - self.started, num_videos, len(self.trainer_.items),
                          loss_should_fall=self.trainer_.loss_should_fall)
        barrier(self.dist)
        return final
