"""A run's metrics: records as JSON lines and TensorBoard scalars (RunDir.metrics,
RunDir.tensorboard), written by the main process, and the meter a trainer logs from."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genact.distributed import Dist, all_reduce_sum, union_keys
from genact.io import atomic_write_text, disk_full_is_an_error, read_json_lines
from genact.training.rundir import RunDir

log = logging.getLogger(__name__)


def loss_rose(first: float, now: float) -> bool:
    """Whether a caption loss `now` has climbed past twice its first logged value
    `first`: a run that is diverging (too high a learning rate) rather than learning."""
    return first > 0 and now > 2 * first


class Metrics:
    """Metric records as JSON lines and TensorBoard scalars of a run directory,
    written by the main process only. A resumed run calls `rewind` first, so records
    of steps it will train again are not written twice."""

    STEP_KINDS = ("train",)  # kinds whose step is the optimizer step

    def __init__(
        self,
        run_dir: RunDir | str | Path,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ):
        run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.file = run_dir.metrics
        self.enabled = enabled
        self.tb_dir = run_dir.tensorboard if enabled and tensorboard else None
        self.tb = None
        self._purge_step: int | None = None
        if resume_step is not None:
            self.rewind(resume_step)

    def rewind(self, step: int) -> None:
        """Forget the optimizer-step records after `step` (the resumed checkpoint's),
        in metrics.jsonl and in TensorBoard."""
        if not self.enabled:
            return
        if self.file.exists():
            lines = self.file.read_text(encoding="utf-8").splitlines()
            keep = [ln for ln in lines if not _after(ln, step, self.STEP_KINDS)]
            if len(keep) != len(lines):
                atomic_write_text(self.file, "".join(ln + "\n" for ln in keep))
        self._purge_step = step + 1

    def _writer(self):
        if self.tb is None and self.tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.tb_dir), purge_step=self._purge_step)
            except ImportError:
                log.warning("tensorboard is not installed; metrics go to metrics.jsonl only")
                self.tb_dir = None
        return self.tb

    def log(self, kind: str, step: int, **values: float) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with disk_full_is_an_error(self.file), open(self.file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        tb = self._writer()
        if tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    tb.add_scalar(f"{kind}/{key}", value, step)
            tb.flush()

    def read(self, kind: str | None = None) -> list[dict]:
        """The records (of `kind`), in the order they were logged."""
        return [r for r in read_json_lines(self.file) if kind is None or r.get("kind") == kind]

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _after(line: str, step: int, kinds: tuple[str, ...]) -> bool:
    """Whether a metrics.jsonl line is a record of `kinds` after `step` (or is cut short)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return True
    return record.get("kind") in kinds and record.get("step", 0) > step


@dataclass
class LossMeter:
    """What a trainer logs over a window of steps, summed on this process: the loss
    and its terms (tokens, or videos for ReGen), the videos, per-video statistics.
    `reduce` sums them over processes and gives the window's means."""

    loss: float = 0.0
    terms: float = 0.0
    videos: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    def add(
        self,
        loss_sum: float | torch.Tensor,
        terms: float | torch.Tensor,
        videos: int,
        stats: dict[str, float],
    ) -> None:
        self.loss, self.terms, self.videos = (
            self.loss + loss_sum,
            self.terms + terms,
            self.videos + videos,
        )
        for key, value in stats.items():  # stats are per-video means of a micro-batch
            self.stats[key] = self.stats.get(key, 0.0) + value * videos

    def reduce(self, dist: Dist) -> dict[str, float]:
        """{loss, videos_per_s, each statistic} over every process (all must call it)."""
        keys = union_keys(list(self.stats), dist)  # a process with only failed videos has none
        # loss and terms may be device tensors: read here, once per logged window
        sums = all_reduce_sum(
            [float(self.loss), float(self.terms), float(self.videos)]
            + [self.stats.get(k, 0.0) for k in keys],
            dist,
        )
        loss, terms, videos = sums[:3]
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {
            "loss": round(loss / max(terms, 1), 5),
            "videos_per_s": round(videos / elapsed, 3),
            **{k: round(v / max(videos, 1), 5) for k, v in zip(keys, sums[3:])},
        }
