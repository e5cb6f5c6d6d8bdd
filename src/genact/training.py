"""Caption-LM training shared by REST and the supervised baseline.

- Data order: each epoch is a permutation seeded by (seed, epoch), cut into global
  batches of `global_batch` videos (a last partial batch is dropped). Each global
  batch is cut into micro-batches of `batch_size`; process r takes micro-batches
  r, r + world, ... So the optimizer sees the same batches, with the same loss
  normalisation, for 1 process or 8, and a resumed run sees what an uninterrupted
  one would have.
- Randomness: frame sampling, augmentation and the caption drawn for a video are
  seeded by (seed, epoch, index); torch's RNG (ReGen's caption sampling) is
  reseeded by (seed, step, micro-batch) before every micro-batch, so 1 process and
  8 draw the same. Nothing random has to be saved to resume exactly.
- Checkpoints: `checkpoints/step-XXXXXXXX/` holds the model (`save_pretrained`) and
  `trainer.pt` (optimizer state and counters); it is written to a temporary
  directory and renamed, then `checkpoints/latest` is replaced atomically, so a
  process killed while writing leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from genact.config import ConfigError, OptimConfig, RunConfig
from genact.data.datasets import SkipReport, VideoDataset, VideoItem, make_loader
from genact.distributed import Dist, all_reduce_sum, barrier, union_keys
from genact.io import atomic_dir, atomic_write_text, disk_full_is_an_error
from genact.models.precision import autocast
from genact.models.video_blip import VideoBlip
from genact.errors import DataError
from genact.console import progress_bar

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, cfg: OptimConfig) -> float:
    """Learning rate of optimizer step `step` (0-based) of `total`: linear warm-up,
    then cosine from cfg.lr to cfg.min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(total - cfg.warmup_steps - 1, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and conv kernels, none on biases,
    norms and embeddings' 1-d parameters; the fused CUDA kernel when the model is on GPU."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def steps_per_epoch(num_videos: int, cfg: OptimConfig, world: int) -> int:
    """Optimizer steps per epoch; checks that the batch sizes fit together."""
    if cfg.global_batch % (cfg.batch_size * world):
        raise ConfigError(
            f"optim.global_batch={cfg.global_batch} must be a multiple of optim.batch_size={cfg.batch_size} "
            f"x {world} process(es)"
        )
    if num_videos < cfg.global_batch:
        raise ConfigError(f"{num_videos} training videos, fewer than optim.global_batch={cfg.global_batch}")
    return num_videos // cfg.global_batch


def epoch_order(num_videos: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of video positions used in `epoch`."""
    return np.random.default_rng([seed, epoch, 7]).permutation(num_videos)


def micro_batches(order: np.ndarray, step: int, cfg: OptimConfig, d: Dist) -> list[list[int]]:
    """This process's micro-batches (video positions) of global batch `step`."""
    batch = order[step * cfg.global_batch : (step + 1) * cfg.global_batch].tolist()
    chunks = [batch[i : i + cfg.batch_size] for i in range(0, len(batch), cfg.batch_size)]
    return chunks[d.rank :: d.world]


def pick_caption(captions: list[str], seed: int, epoch: int, index: int) -> str:
    """The caption a video is trained on in `epoch`: uniform over its list."""
    return captions[int(np.random.default_rng([seed, epoch, index, 1]).integers(len(captions)))]


@dataclass
class Progress:
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

    def save(self, model: VideoBlip, optimizer: torch.optim.Optimizer, progress: Progress) -> Path:
        name = f"step-{progress.global_step:08d}"
        with atomic_dir(self.root / name) as tmp:
            model.save_pretrained(tmp / "model")
            torch.save({"optimizer": optimizer.state_dict(), "progress": asdict(progress)}, tmp / "trainer.pt")
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
    def load(path: Path, optimizer: torch.optim.Optimizer) -> Progress:
        """Restore the optimizer from checkpoint `path`; the model is loaded with
        VideoBlip.from_pretrained(path / "model")."""
        state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        return Progress(**state["progress"])


class Metrics:
    """Metric records as JSON lines (`metrics.jsonl`) and TensorBoard scalars (`tb/`),
    written by the main process only. A resumed run calls `rewind` first, so records
    of steps it will train again are not written twice."""

    STEP_KINDS = ("train",)  # kinds whose step is the optimizer step

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None):
        self.file = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb_dir = Path(run_dir) / "tb" if enabled and tensorboard else None
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
        if not self.file.exists():
            return []
        rows = []
        for line in self.file.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        return [r for r in rows if kind is None or r.get("kind") == kind]

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


class CaptionTrainer:
    """Trains `model` to caption `items` with per-video caption lists (which the caller
    may replace between epochs, as REST does after each retrieval round)."""

    def __init__(
        self,
        model: VideoBlip,
        items: list[VideoItem],
        optim: OptimConfig,
        run: RunConfig,
        d: Dist,
        metrics: Metrics,
        report: SkipReport,
        num_workers: int = 0,
    ):
        self.num_workers = num_workers
        self.model, self.items, self.cfg, self.run, self.d = model, items, optim, run, d
        self.metrics, self.report = metrics, report
        self.steps_per_epoch = steps_per_epoch(len(items), optim, d.world)
        self.total_steps = self.steps_per_epoch * optim.epochs
        self.optimizer = build_optimizer(model, optim)
        if optim.compile:
            model.compile_vision()
        self.checkpoints = Checkpoints(run.dir, run.keep_checkpoints)
        self.progress = Progress()
        # depth-wise conv kernels (d, 1, 3, 3, 3): a stride mismatch on the size-1 axis only
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        self.ddp = DistributedDataParallel(model, device_ids=[d.device] if d.device.type == "cuda" else None) \
            if d.enabled else model
        self.dataset = VideoDataset(items, model.config.num_frames, model.transform(train=True), train=True,
                                    seed=run.seed)
        self.captions: list[list[str]] = [[] for _ in items]
        self.last_loss = float("nan")  # the last logged training loss

    def restore(self, path: Path) -> None:
        """Continue from checkpoint `path` (its model weights must already be loaded)."""
        self.progress = Checkpoints.load(path, self.optimizer)

    def save(self) -> Path | None:
        """Checkpoint on the main process (the others hold identical weights)."""
        path = self.checkpoints.save(self.model, self.optimizer, self.progress) if self.d.main else None
        barrier(self.d)
        return path

    def _batches(self, epoch: int, first_step: int):
        """This process's micro-batches of `epoch` from optimizer step `first_step` on;
        unreadable videos go to the report."""
        order = epoch_order(len(self.items), self.run.seed, epoch)
        batches = [mb for s in range(first_step, self.steps_per_epoch) for mb in micro_batches(order, s, self.cfg, self.d)]
        self.dataset.set_epoch(epoch)
        for batch in make_loader(self.dataset, self.cfg.batch_size, self.num_workers, batch_sampler=batches):
            self.report.add(batch["failed"])
            yield batch

    def train_until(self, end_epoch: int) -> bool:
        """Train up to the start of `end_epoch`. Returns False when run.stop_at_step
        stopped it first (a checkpoint has been written)."""
        p = self.progress
        per_rank = self.cfg.global_batch // (self.cfg.batch_size * self.d.world)  # micro-batches per step
        while p.epoch < end_epoch:
            if p.step_in_epoch < self.steps_per_epoch:
                if not self._train_epoch(per_rank):
                    return False
            p.epoch, p.step_in_epoch = p.epoch + 1, 0
            self.save()
        return True

    def _train_epoch(self, per_rank: int) -> bool:
        p, cfg, d = self.progress, self.cfg, self.d
        loader = self._batches(p.epoch, p.step_in_epoch)
        bar = progress_bar(total=self.steps_per_epoch, initial=p.step_in_epoch, desc=f"epoch {p.epoch + 1}/{cfg.epochs}",
                           enabled=self.run.progress and d.main)
        window = {"loss": 0.0, "n": 0.0, "videos": 0.0, "t0": time.perf_counter(), "stats": {}}
        self.model.train()
        while p.step_in_epoch < self.steps_per_epoch:
            lr = lr_at(p.global_step, self.total_steps, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            count = 0.0
            for m in range(per_rank):
                batch = next(loader)
                micro = d.rank + m * d.world  # this micro-batch's place in the global batch
                torch.manual_seed(int(np.random.SeedSequence([self.run.seed, p.global_step, micro]).generate_state(1)[0]))
                sync = m == per_rank - 1
                with (nullcontext() if sync or not d.enabled else self.ddp.no_sync()):
                    loss_sum, n, videos, stats = self._micro_step(batch, p.epoch)
                    loss_sum.backward()
                count += n
                window["loss"] += float(loss_sum.detach())
                window["n"] += n
                window["videos"] += videos
                for key, value in stats.items():
                    window["stats"][key] = window["stats"].get(key, 0.0) + value * videos
            self._normalise_gradients(count)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            p.step_in_epoch += 1
            p.global_step += 1
            bar.update(1)
            if p.global_step % self.run.log_every == 0 or p.step_in_epoch == self.steps_per_epoch:
                self._log(window, lr, bar)
            stop = self.run.stop_at_step is not None and p.global_step >= self.run.stop_at_step
            if stop or (p.global_step % self.run.checkpoint_every == 0 and p.step_in_epoch < self.steps_per_epoch):
                self.save()
            if stop:
                bar.close()
                log.info("stopped at step %d as run.stop_at_step asks; resume to continue", p.global_step)
                return False
        bar.close()
        log.info("epoch %d/%d done: step %d, loss %.4f", p.epoch + 1, cfg.epochs, p.global_step, self.last_loss)
        return True

    def _normalise_gradients(self, count: float) -> None:
        """Turn the summed loss's gradients into those of the mean over the whole global
        batch: divide by its loss terms (tokens, or videos for ReGen) counted over all
        processes. The step then does not depend on how the global batch is cut into
        micro-batches or processes (DDP has already averaged over processes)."""
        scale = self.d.world / max(all_reduce_sum([count], self.d)[0], 1.0)
        for param in self.model.parameters():
            if param.grad is not None:
                param.grad.mul_(scale)

    def _micro_step(self, batch: dict, epoch: int) -> tuple[torch.Tensor, float, int, dict[str, float]]:
        """Summed loss of one micro-batch, the number of terms in the sum (caption
        tokens), its video count, and per-video statistics to log (logged as means over
        videos). An empty batch (all videos failed) gives a zero with a graph, so every
        process joins the gradient all-reduce."""
        if not len(batch["path"]):
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0, 0.0, 0, {}
        idx = batch["index"].tolist()
        caps = [pick_caption(self.captions[i], self.run.seed, epoch, i) for i in idx]
        pixels = batch["pixels"].to(self.d.device, non_blocking=True)
        with autocast(self.d.device, self.cfg.precision):
            out = self.ddp(pixels, caps, self.cfg.label_smoothing)
        return out.loss_sum, float(out.num_tokens.sum()), len(idx), {}

    def _log(self, window: dict, lr: float, bar) -> None:
        keys = union_keys(list(window["stats"]), self.d)  # a process with only failed videos has none
        values = [window["loss"], window["n"], window["videos"]] + [window["stats"].get(k, 0.0) for k in keys]
        sums = all_reduce_sum(values, self.d)
        loss_sum, n, videos = sums[:3]
        elapsed = time.perf_counter() - window["t0"]
        loss = loss_sum / max(n, 1)
        extra = {k: round(v / max(videos, 1), 5) for k, v in zip(keys, sums[3:])}
        self.metrics.log("train", self.progress.global_step, loss=round(loss, 5), lr=lr,
                         videos_per_s=round(videos / max(elapsed, 1e-9), 3), epoch=self.progress.epoch, **extra)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
        self.last_loss = loss
        window.update(loss=0.0, n=0.0, videos=0.0, t0=time.perf_counter(), stats={})
