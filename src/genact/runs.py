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
from pathlib import Path
from typing import Any

import yaml

from genact.config import ConfigError, save_config, to_dict
from genact.data.datasets import VideoItem
from genact.data.frame_cache import use_frame_cache
from genact.distributed import Dist, barrier, init_distributed
from genact.io import ShardLog, atomic_dir, atomic_write_text
from genact.models.hub import resolve_model_dir
from genact.models.video_blip import ADAPTER_WEIGHTS, VideoBlip

log = logging.getLogger(__name__)

# settings that may differ when a run is resumed; anything else must match
RESUMABLE_CHANGES = ("run.dir", "run.resume", "run.stop_at_step", "run.progress", "run.device", "run.log_every",
                     "run.checkpoint_every", "run.keep_checkpoints", "run.tensorboard", "run.dist_timeout_min",
                     "data.num_workers", "data.frame_cache", "optim.compile")


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_run_dir(cfg: Any) -> None:
    """Refuse to start over a run that is there (unless run.resume=auto), or to
    resume it with a different config apart from RESUMABLE_CHANGES."""
    run_dir = Path(cfg.run.dir)
    if cfg.run.resume not in ("no", "auto"):
        raise ConfigError(f"run.resume={cfg.run.resume!r}: expected no or auto")
    saved = run_dir / "config.yaml"
    if saved.exists():
        if cfg.run.resume != "auto":
            raise ConfigError(f"{run_dir}: holds a run already; pass --resume (run.resume=auto) to continue it, "
                              "or choose another run.dir")
        old, new = _flat(yaml.safe_load(saved.read_text())), _flat(to_dict(cfg))
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
        if diff:
            raise ConfigError(f"{saved}: resuming with a different config ({', '.join(diff)}); "
                              "use the saved config or another run.dir")


def start_run(cfg: Any) -> tuple[Dist, Path]:
    """Join torchrun's process group (if any) and open `cfg.run.dir` (see check_run_dir)."""
    check_run_dir(cfg)
    run_dir, saved = Path(cfg.run.dir), Path(cfg.run.dir) / "config.yaml"
    d = init_distributed(cfg.run.device, cfg.run.dist_timeout_min)
    barrier(d)  # every process has looked at the directory before it changes
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not saved.exists():
            save_config(cfg, saved)
        log.info("run directory %s (%d process%s, %s)", run_dir, d.world, "es" if d.world > 1 else "", d.device)
    barrier(d)
    return d, run_dir


def load_model(model_cfg, checkpoint: Path | None, num_frames: int) -> VideoBlip:
    """The checkpoint's model when resuming, else the configured BLIP / VideoBlip."""
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
        return VideoBlip.from_pretrained(checkpoint / "model")
    overrides = dict(num_frames=num_frames, prompt=model_cfg.prompt)
    path = model_cfg.blip
    if not (resolve_model_dir(path) / ADAPTER_WEIGHTS).exists():  # no trained adapters: choose the layout
        overrides.update(use_adapters=model_cfg.use_adapters, adapter_layers=model_cfg.adapter_layers)
    return VideoBlip.from_pretrained(path, **overrides)


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
