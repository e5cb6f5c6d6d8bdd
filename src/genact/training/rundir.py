"""The one owner of a run directory's layout: every path in it, and the readers and
writers of what it holds. A training run and an evaluation's results folder are both
a RunDir; nothing else in genact names a file of the layout.

    runs/rest_k400/
      config.yaml              the full config the run uses
      videos.json              the training videos, in order (a resume checks them)
      captions/<stage>.rank<r>.jsonl
                               caption records of a stage (REST: init, round-001, ...)
      bank/round-XXX.jsonl     REST's caption bank after each round
      features/videos/rank<r>/ CLIP video features (embedding caches), features/texts/ the texts'
      features/train_videos.pt the training videos' features, in bank order
      neighbours.npy           REST's nearest neighbours
      checkpoints/             step-XXXXXXXX/{model/, trainer.pt, manifest.json}, `latest`
      metrics.jsonl, tb/       metrics (JSON lines, TensorBoard)
      logs/skipped.rank<r>.jsonl
                               unreadable videos, per process; report.json merges them
      final/                   the trained model (a VideoBlip directory), README.md its model card
      summary.md               what happened, for people
      results.json, embeddings.npz
                               an evaluation's results and classified embeddings
      fewshot.json, caption_metrics.json
                               a few-shot table over shots and splits; caption metrics
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from genact.errors import DataError
from genact.io import ShardLog, atomic_file, atomic_write_text
from genact.training.bank import CaptionBank


class RunDir:
    """Paths, readers and writers of one run directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- paths -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    config = property(lambda self: self.path / "config.yaml")
    videos = property(lambda self: self.path / "videos.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    tensorboard = property(lambda self: self.path / "tb")
    final = property(lambda self: self.path / "final")
    report = property(lambda self: self.path / "report.json")
    summary = property(lambda self: self.path / "summary.md")
    lock = property(lambda self: self.path / ".genact.lock")
    owner = property(lambda self: self.path / ".genact.owner")
    video_features = property(lambda self: self.path / "features" / "videos")
    text_features = property(lambda self: self.path / "features" / "texts")
    train_features = property(lambda self: self.path / "features" / "train_videos.pt")
    neighbours = property(lambda self: self.path / "neighbours.npy")
    results = property(lambda self: self.path / "results.json")
    embeddings = property(lambda self: self.path / "embeddings.npz")
    fewshot = property(lambda self: self.path / "fewshot.json")
    caption_metrics = property(lambda self: self.path / "caption_metrics.json")

    def bank_path(self, r: int) -> Path:
        return self.path / "bank" / f"round-{r:03d}.jsonl"

    # ---- what kind of directory --------------------------------------------------
    def is_run(self) -> bool:
        return self.config.exists()

    def has_results(self) -> bool:
        return self.results.exists()

    def has_banks(self) -> bool:
        return (self.path / "bank").is_dir()

    # ---- config and videos -------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """config.yaml as a plain mapping ({} when the run has none)."""
        return (yaml.safe_load(self.config.read_text()) or {}) if self.config.exists() else {}

    def config_text(self) -> str:
        return self.config.read_text()

    def write_config(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.config, yaml.safe_dump(data, sort_keys=False))

    def read_videos(self) -> list[str] | None:
        return json.loads(self.videos.read_text()) if self.videos.exists() else None

    def write_videos(self, ids: list[str]) -> None:
        atomic_write_text(self.videos, json.dumps(ids) + "\n")

    # ---- caption records and banks -----------------------------------------------
    def caption_records(self, stage: str, rank: int = 0) -> ShardLog:
        """A stage's caption records: {"video", "captions"} per line, one file per process."""
        return ShardLog(self.path / "captions", stage, rank)

    @staticmethod
    def refresh_stage(r: int) -> str:
        """The caption stage of REST round r's refresh (the model captions every video)."""
        return f"round-{r:03d}"

    def generated_captions(self, r: int) -> dict[str, str]:
        """{video: the caption the model made for it} in REST round r's refresh."""
        return {
            row["video"]: row["captions"][0]
            for row in self.caption_records(self.refresh_stage(r)).read_all()
            if row.get("captions") and "video" in row
        }

    def bank_rounds(self) -> list[int]:
        """The rounds whose banks are saved, in order."""
        return sorted(int(p.stem.split("-")[1]) for p in (self.path / "bank").glob("round-*.jsonl"))

    def has_bank(self, r: int) -> bool:
        return self.bank_path(r).exists()

    def bank(self, r: int) -> CaptionBank:
        return CaptionBank.load(self.bank_path(r))

    def save_bank(self, bank: CaptionBank, r: int) -> None:
        bank.save(self.bank_path(r))

    # ---- features ----------------------------------------------------------------
    def save_train_features(self, feats: torch.Tensor) -> None:
        with atomic_file(self.train_features) as f:
            torch.save(feats, f)

    def load_train_features(self) -> torch.Tensor:
        if not self.train_features.exists():
            raise DataError(
                f"{self.train_features}: the training videos' features are gone; restore them, or "
                "start the run again in a new run.dir"
            )
        return torch.load(self.train_features, weights_only=True)

    # ---- unreadable videos, results ----------------------------------------------
    def skipped_log(self, rank: int = 0) -> ShardLog:
        """Unreadable videos found by process `rank`: {"stage", "path", "error"} per line."""
        return ShardLog(self.path / "logs", "skipped", rank)

    def write_report(self, skipped: list[dict]) -> None:
        atomic_write_text(self.report, json.dumps({"skipped_videos": skipped}, indent=2) + "\n")

    def write_summary(self, text: str) -> None:
        atomic_write_text(self.summary, text)

    def read_results(self) -> dict:
        """results.json of an evaluation (a DataError line when there is none)."""
        if not self.results.exists():
            raise DataError(f"{self.path}: no results.json (not an evaluation's results folder)")
        return json.loads(self.results.read_text())

    def write_results(self, text: str) -> None:
        atomic_write_text(self.results, text)

    def has_fewshot(self) -> bool:
        return self.fewshot.exists()

    def read_fewshot(self) -> dict:
        return json.loads(self.fewshot.read_text())

    def write_fewshot(self, data: dict) -> None:
        atomic_write_text(self.fewshot, json.dumps(data, indent=1) + "\n")

    def write_caption_metrics(self, text: str) -> None:
        atomic_write_text(self.caption_metrics, text)
