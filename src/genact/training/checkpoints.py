"""Checkpoints of a training run: `checkpoints/step-XXXXXXXX/` holds the model
(`save_pretrained`, safetensors), `trainer.pt` (optimizer state and the training
state, loaded with `weights_only=True`) and, written last, `manifest.json` (every
file's size and SHA-256). A checkpoint is written to a temporary directory and
renamed, then `checkpoints/latest` is replaced atomically, so a process killed
while writing leaves the previous checkpoint in charge. On resume the newest
checkpoint is verified against its manifest; one cut short or damaged on disk is
passed over, with a warning, for the newest intact one. Weights that are not
finite are never saved (see `check_finite`)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genact.errors import DataError
from genact.io import atomic_dir, atomic_file, atomic_write_text
from genact.models.hub import check_finite
from genact.models.video_blip import VideoBlip

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def file_digests(directory: Path) -> dict[str, dict]:
    """{relative path: {size, sha256}} of every file below `directory` but the manifest."""
    out = {}
    for f in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        out[str(f.relative_to(directory))] = {"size": f.stat().st_size, "sha256": h.hexdigest()}
    return out


def damage(path: Path) -> str | None:
    """What is wrong with checkpoint `path` (None when it is intact): a missing
    trainer.pt or manifest, or a file whose size or checksum differs from the manifest."""
    if not (path / "trainer.pt").exists():
        return "no trainer.pt"
    manifest = path / MANIFEST
    if not manifest.exists():
        return "no manifest.json"
    try:
        want = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return "an unreadable manifest.json"
    have = file_digests(path)
    bad = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    return (
        f"{', '.join(bad[:3])} differ{'s' if len(bad) == 1 else ''} from its manifest"
        if bad
        else None
    )


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch under way (or about to start)
    step_in_epoch: int = 0  # optimizer steps already taken in it
    global_step: int = 0


class Checkpoints:
    """`step-XXXXXXXX/{model/, trainer.pt, manifest.json}` and `latest` under a run's
    checkpoints folder (RunDir.checkpoints)."""

    def __init__(self, root: str | Path, keep: int = 2):
        self.root = Path(root)  # a run's RunDir.checkpoints
        self.keep = max(keep, 1)

    def latest(self) -> Path | None:
        """The newest intact checkpoint (None when there is none). One that is damaged
        (cut short, bytes flipped, a file missing) is passed over with a warning; if
        every checkpoint is damaged, that is one DataError line."""
        pointer = self.root / "latest"
        if not pointer.exists():
            return None
        named = self.root / pointer.read_text().strip()
        found = sorted((p for p in self.root.glob("step-*") if p.is_dir()), reverse=True)
        candidates = [named] + [p for p in found if p != named and p.name < named.name]
        problems = []
        for path in candidates:
            why = damage(path) if path.is_dir() else "missing"
            if why is None:
                if problems:
                    log.warning(
                        "%s; resuming from %s, the newest intact checkpoint",
                        "; ".join(problems),
                        path.name,
                    )
                return path
            problems.append(f"checkpoint {path.name} is damaged ({why})")
        raise DataError(
            f"{self.root}: no intact checkpoint ({'; '.join(problems)}); start the run again in a "
            "new "
            "run.dir"
        )

    def save(self, model: VideoBlip, optimizer: torch.optim.Optimizer, state: TrainState) -> Path:
        """Write checkpoint step-<global step>; refused (one DataError line) when the
        weights are not finite, so a diverged run never replaces a good checkpoint."""
        name = f"step-{state.global_step:08d}"
        check_finite(model.named_parameters(), f"the weights at step {state.global_step}")
        with atomic_dir(self.root / name) as tmp:
            model.save_pretrained(tmp / "model")
            with atomic_file(tmp / "trainer.pt") as f:
                torch.save({"optimizer": optimizer.state_dict(), "progress": asdict(state)}, f)
            atomic_write_text(tmp / MANIFEST, json.dumps(file_digests(tmp), indent=1) + "\n")
        atomic_write_text(self.root / "latest", name + "\n")
        done = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        # and writes a kill cut short
        for old in done[: -self.keep] + list(self.root.glob(".step-*")):
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
