"""Checkpoints of a training run: `checkpoints/step-XXXXXXXX/` holds the model
(`save_pretrained`, safetensors) and `trainer.pt` (optimizer state and the training
state, loaded with `weights_only=True`). A checkpoint is written to a temporary
directory and renamed, then `checkpoints/latest` is replaced atomically, so a
process killed while writing leaves the previous checkpoint in charge."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genact.errors import DataError
from genact.io import atomic_dir, atomic_write_text
from genact.models.video_blip import VideoBlip


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch under way (or about to start)
    step_in_epoch: int = 0  # optimizer steps already taken in it
    global_step: int = 0


class Checkpoints:
    """`checkpoints/step-XXXXXXXX/{model/, trainer.pt}` under a run directory."""

    def __init__(self, run_dir: str | Path, keep: int = 2):
        self.root = Path(run_dir) / "checkpoints"
        self.keep = max(keep, 1)

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        if not (path / "trainer.pt").exists():
            raise DataError(f"{pointer}: names {path.name}, which is missing or incomplete")
        return path

    def save(self, model: VideoBlip, optimizer: torch.optim.Optimizer, state: TrainState) -> Path:
        name = f"step-{state.global_step:08d}"
        with atomic_dir(self.root / name) as tmp:
            model.save_pretrained(tmp / "model")
            torch.save({"optimizer": optimizer.state_dict(), "progress": asdict(state)}, tmp / "trainer.pt")
        atomic_write_text(self.root / "latest", name + "\n")
        done = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for old in done[: -self.keep] + list(self.root.glob(".step-*")):  # and writes a kill cut short
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return self.root / name

    @staticmethod
    def step(path: Path | None) -> int:
        """The optimizer step a checkpoint was written at (0 for none)."""
        return 0 if path is None else int(path.name.split("-")[1])

    @staticmethod
    def load(path: Path, optimizer: torch.optim.Optimizer) -> TrainState:
        """Restore the optimizer from checkpoint `path`; the model is loaded with
        VideoBlip.from_pretrained(path / "model")."""
        saved = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        return TrainState(**saved["progress"])
