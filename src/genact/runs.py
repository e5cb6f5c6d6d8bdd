"""A training run's directory: starting or resuming it, its model, and its reports.

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
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from genact.config import ConfigError, save_config, to_dict
from genact.data.datasets import VideoItem, video_id
from genact.data.frame_cache import use_frame_cache
from genact.distributed import Dist, all_reduce_sum, barrier, init_distributed
from genact.io import ShardLog, atomic_dir, atomic_write_text
from genact.models.hub import resolve_model_dir
from genact.models.video_blip import ADAPTER_WEIGHTS, VideoBlip

log = logging.getLogger(__name__)

# settings that may differ when a run is resumed; anything else must match
# (per-pass batch sizes change memory, not results: see docs/rest.md, "Guarantees")
RESUMABLE_CHANGES = ("run.dir", "run.resume", "run.stop_at_step", "run.progress", "run.device", "run.log_every",
                     "run.checkpoint_every", "run.keep_checkpoints", "run.tensorboard", "run.dist_timeout_min",
                     "data.num_workers", "data.frame_cache", "optim.compile", "optim.batch_size",
                     "rest.caption_batch", "rest.clip_batch", "regen.clip_batch")


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
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in resumable
                      and not (k in MODEL_SETTINGS and new.get(k) is None))
        if diff:
            raise ConfigError(f"{saved}: resuming with a different config ({', '.join(diff)}); "
                              "use the saved config or another run.dir")


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
    run_dir, saved = Path(cfg.run.dir), Path(cfg.run.dir) / "config.yaml"
    d = init_distributed(cfg.run.device, cfg.run.dist_timeout_min)
    busy = ""
    if d.main:
        try:
            lock_run_dir(run_dir)
        except ConfigError as e:
            busy = str(e)
    if all_reduce_sum([float(bool(busy))], d)[0]:  # every process learns that the directory is taken
        raise ConfigError(busy or f"{run_dir}: in use by another genact process")
    try:
        check_run_dir(cfg)
        if d.main:
            log.info("run directory %s (%d process%s, %s)%s", run_dir, d.world, "es" if d.world > 1 else "", d.device,
                     ", resuming" if saved.exists() else "")
        barrier(d)
    except BaseException:
        release_run_dir(run_dir)
        raise
    return d, run_dir


def record_run(cfg: Any, run_dir: Path, items: list[VideoItem], d: Dist) -> None:
    """Once a start has passed its checks: write the config and the training videos
    (`config.yaml`, `videos.json`); from then on the directory holds a run. On resume,
    refuse in one line if the videos changed, since the run's per-video state (banks,
    neighbours, data order) is laid out over them."""
    path, ids = run_dir / "videos.json", [video_id(it) for it in items]
    resuming = (run_dir / "config.yaml").exists()
    barrier(d)  # every process has looked before the main one writes
    if resuming and path.exists():
        saved = json.loads(path.read_text())
        if saved != ids:
            added, removed = sorted(set(ids) - set(saved)), sorted(set(saved) - set(ids))
            what = ", ".join(f"{len(v)} {k} (e.g. {v[0]})" for k, v in (("added", added), ("removed", removed)) if v)
            raise ConfigError(f"{run_dir}: the training videos changed since the run started "
                              f"({what or 'same videos, another order'}); restore them, or start a new run.dir")
    elif d.main:
        atomic_write_text(path, json.dumps(ids) + "\n")
    if d.main and not resuming:
        save_config(cfg, run_dir / "config.yaml")
    barrier(d)


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


def save_final(model: VideoBlip, run_dir: Path, d: Dist) -> Path:
    """The trained model as `final/`, written atomically by the main process."""
    path = run_dir / "final"
    if d.main:
        with atomic_dir(path) as tmp:
            model.save_pretrained(tmp)
    barrier(d)
    return path


def write_report(run_dir: Path) -> list[dict]:
    """Merge every process's unreadable-video records into report.json."""
    rows = ShardLog(run_dir / "logs", "skipped", 0).read_all()
    merged: dict[str, dict] = {}
    for r in rows:
        entry = merged.setdefault(r["path"], {"path": r["path"], "error": r["error"], "stages": []})
        if r["stage"] not in entry["stages"]:
            entry["stages"].append(r["stage"])
    skipped = sorted(merged.values(), key=lambda e: e["path"])
    atomic_write_text(run_dir / "report.json", json.dumps({"skipped_videos": skipped}, indent=2) + "\n")
    return skipped


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def epoch_losses(train_records: list[dict]) -> dict[int, float]:
    """Last logged training loss of each epoch (from metrics.jsonl `train` records)."""
    return {r["epoch"]: r["loss"] for r in train_records}
