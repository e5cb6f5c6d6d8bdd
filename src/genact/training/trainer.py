"""Caption-LM training shared by REST, the supervised baseline and few-shot; ReGen's
trainer subclasses it with its policy-gradient micro-step.

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
- Checkpoints (`genact.training.checkpoints`) after every epoch and every
  `run.checkpoint_every` steps; metrics (`genact.training.metrics`) every `run.log_every`.
- Divergence: a step whose loss or gradient is not finite is not taken; training
  stops with one line (TrainingDiverged) naming the step and the last good
  checkpoint, and nothing is saved from it. A caption loss that climbs past
  twice its first logged value is flagged in the log and in summary.md.
"""

from __future__ import annotations

import logging
import math
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from genact.config import ConfigError, OptimConfig, RunConfig
from genact.console import progress_bar
from genact.data.datasets import SkipReport, VideoDataset, VideoItem, make_loader
from genact.distributed import Dist, all_reduce_sum, barrier
from genact.errors import GenactError
from genact.inference.processing import blip_transform
from genact.models.caption_text import MAX_CAPTION_TOKENS, CaptionTokenizer, trim_to_bucket
from genact.models.precision import autocast
from genact.models.video_blip import VideoBlip
from genact.training.checkpoints import Checkpoints, TrainState
from genact.training.metrics import LossMeter, Metrics, loss_rose
from genact.training.optim import build_optimizer, lr_at
from genact.training.rundir import RunDir

log = logging.getLogger(__name__)


class TrainingDiverged(GenactError):
    """A loss or gradient that is not finite: the step is not taken and nothing is saved."""


def steps_per_epoch(num_videos: int, cfg: OptimConfig, world: int) -> int:
    """Optimizer steps per epoch; checks that the batch sizes fit together."""
    if cfg.global_batch % (cfg.batch_size * world):
        raise ConfigError(
            f"optim.global_batch={cfg.global_batch} must be a multiple of "
            f"optim.batch_size={cfg.batch_size} "
            f"x {world} process(es)"
        )
    if num_videos < cfg.global_batch:
        raise ConfigError(
            f"{num_videos} training videos, fewer than optim.global_batch={cfg.global_batch}"
        )
    return num_videos // cfg.global_batch


def epoch_order(num_videos: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of video positions used in `epoch`."""
    return np.random.default_rng([seed, epoch, 7]).permutation(num_videos)


def micro_batches(order: np.ndarray, step: int, cfg: OptimConfig, dist: Dist) -> list[list[int]]:
    """This process's micro-batches (video positions) of global batch `step`."""
    batch = order[step * cfg.global_batch : (step + 1) * cfg.global_batch].tolist()
    chunks = [batch[i : i + cfg.batch_size] for i in range(0, len(batch), cfg.batch_size)]
    return chunks[dist.rank :: dist.world]


def pick_caption(captions: list[str], seed: int, epoch: int, index: int) -> str:
    """The caption a video is trained on in `epoch`: uniform over its list."""
    return captions[int(np.random.default_rng([seed, epoch, index, 1]).integers(len(captions)))]


class CaptionTokens:
    """The token ids of the caption each training video gets in an epoch (pick_caption),
    made in the DataLoader's workers: (index, epoch) -> (ids, mask), each
    (MAX_CAPTION_TOKENS,); the trainer cuts a batch to its length bucket."""

    def __init__(self, model: VideoBlip, captions: list[list[str]], seed: int):
        self.text, self.captions, self.seed = CaptionTokenizer(model), captions, seed

    def __call__(self, index: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        caption = pick_caption(self.captions[index], self.seed, epoch, index)
        ids, mask = self.text.encode([caption], pad_to=MAX_CAPTION_TOKENS)
        return ids[0], mask[0]


class CaptionTrainer:
    """Trains `model` to caption `items` with per-video caption lists `captions` (one
    list per item; `use_captions` replaces them between epochs, as REST does after each
    retrieval round)."""

    def __init__(
        self,
        model: VideoBlip,
        items: list[VideoItem],
        captions: list[list[str]],
        optim: OptimConfig,
        run: RunConfig,
        dist: Dist,
        metrics: Metrics,
        report: SkipReport,
        num_workers: int = 0,
    ):
        self.model, self.items, self.optim, self.run, self.dist = model, items, optim, run, dist
        self.metrics, self.report, self.num_workers = metrics, report, num_workers
        self.steps_per_epoch = steps_per_epoch(len(items), optim, dist.world)
        self.total_steps = self.steps_per_epoch * optim.epochs
        if optim.freeze_video_encoder:
            for p in [*model.blip.vision_model.parameters(), *model.adapters.parameters()]:
                p.requires_grad_(False)
        self.optimizer = build_optimizer(model, optim)
        if optim.compile:
            model.compile_vision()
        self.checkpoints = Checkpoints(RunDir(run.dir).checkpoints, run.keep_checkpoints)
        self.state = TrainState()
        # depth-wise conv kernels (d, 1, 3, 3, 3): a stride mismatch on the size-1 axis only
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        self.ddp = (
            DistributedDataParallel(
                model, device_ids=[dist.device] if dist.device.type == "cuda" else None
            )
            if dist.enabled
            else model
        )
        self.dataset = VideoDataset(
            items,
            model.config.num_frames,
            blip_transform(model, train=True),
            train=True,
            seed=run.seed,
        )
        self.prompt_len = model.prompt_ids().shape[1]
        self.captions: list[list[str]] = []
        self.use_captions(captions)
        self.last_loss = float("nan")  # the last logged training loss
        self.first_loss: float | None = (
            None  # the first logged since this start (a caption loss: see loss_rose)
        )

    # whether the logged loss is a caption NLL that should fall (ReGen's policy loss need not)
    loss_should_fall = True
    # whether micro-batches come with their captions' token ids (made in the loader's workers)
    tokenized_captions = True

    def use_captions(self, captions: list[list[str]]) -> None:
        """Train on these caption lists from now on (one non-empty list per item, or
        none at all for a trainer whose loss needs no captions, such as ReGen's)."""
        if captions and (len(captions) != len(self.items) or not all(captions)):
            raise ValueError(
                f"{len(captions)} caption lists for {len(self.items)} videos, or an empty list"
            )
        self.captions = captions
        if self.tokenized_captions:
            self.dataset.tokens = CaptionTokens(self.model, captions, self.run.seed)

    def close(self) -> None:
        """Drop the DDP wrapper (before the process group goes; destroying it after
        can deadlock in gloo's teardown)."""
        self.ddp = self.model

    def restore(self, path: Path) -> None:
        """Continue from checkpoint `path` (its model weights must already be loaded)."""
        self.state = Checkpoints.load(path, self.optimizer)

    def save(self) -> Path | None:
        """Checkpoint on the main process (the others hold identical weights)."""
        path = (
            self.checkpoints.save(self.model, self.optimizer, self.state)
            if self.dist.main
            else None
        )
        barrier(self.dist)
        return path

    def _batches(self, epoch: int, first_step: int) -> Iterator[dict]:
        """This process's micro-batches of `epoch` from optimizer step `first_step` on;
        unreadable videos go to the report."""
        order = epoch_order(len(self.items), self.run.seed, epoch)
        batches = [
            mb
            for s in range(first_step, self.steps_per_epoch)
            for mb in micro_batches(order, s, self.optim, self.dist)
        ]
        self.dataset.set_epoch(epoch)
        for batch in make_loader(
            self.dataset, self.optim.batch_size, self.num_workers, batch_sampler=batches
        ):
            self.report.add(batch["failed"])
            yield batch

    def train_until(self, end_epoch: int) -> bool:
        """Train up to the start of `end_epoch`. Returns False when run.stop_at_step
        stopped it first (a checkpoint has been written)."""
        st = self.state
        while st.epoch < end_epoch:
            if st.step_in_epoch < self.steps_per_epoch:
                if not self._train_epoch():
                    return False
            st.epoch, st.step_in_epoch = st.epoch + 1, 0
            self.save()
        return True

    def _train_epoch(self) -> bool:
        """The rest of the current epoch; False when run.stop_at_step stopped it."""
        st, run = self.state, self.run
        loader = self._batches(st.epoch, st.step_in_epoch)
        bar = progress_bar(
            total=self.steps_per_epoch,
            initial=st.step_in_epoch,
            desc=f"epoch {st.epoch + 1}/{self.optim.epochs}",
            enabled=run.progress and self.dist.main,
        )
        meter = LossMeter()
        self.model.train()
        while st.step_in_epoch < self.steps_per_epoch:
            lr = self._step(loader, meter)
            bar.update(1)
            if st.global_step % run.log_every == 0 or st.step_in_epoch == self.steps_per_epoch:
                self._log(meter, lr, bar)
                meter = LossMeter()
            stop = run.stop_at_step is not None and st.global_step >= run.stop_at_step
            if stop or (
                st.global_step % run.checkpoint_every == 0
                and st.step_in_epoch < self.steps_per_epoch
            ):
                self.save()
            if stop:
                bar.close()
                log.info(
                    "stopped at step %d as run.stop_at_step asks; resume to continue",
                    st.global_step,
                )
                return False
        bar.close()
        log.info(
            "epoch %d/%d done: step %d, loss %.4f",
            st.epoch + 1,
            self.optim.epochs,
            st.global_step,
            self.last_loss,
        )
        return True

    def _step(self, loader: Iterator[dict], meter: LossMeter) -> float:
        """One optimizer step over this process's micro-batches of the global batch;
        returns its learning rate."""
        st, dist = self.state, self.dist
        per_rank = self.optim.global_batch // (self.optim.batch_size * dist.world)
        lr = lr_at(st.global_step, self.total_steps, self.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        # summed on the device: the host waits once per step (the finite check), not per
        # micro-batch
        terms = torch.zeros((), dtype=torch.float64, device=dist.device)
        bad_loss = torch.zeros((), dtype=torch.float64, device=dist.device)
        for m in range(per_rank):
            batch = next(loader)
            micro = dist.rank + m * dist.world  # this micro-batch's place in the global batch
            torch.manual_seed(
                int(
                    np.random.SeedSequence([self.run.seed, st.global_step, micro]).generate_state(
                        1
                    )[0]
                )
            )
            with nullcontext() if m == per_rank - 1 or not dist.enabled else self.ddp.no_sync():
                loss_sum, n, videos, stats = self._micro_step(batch, st.epoch)
                loss_sum.backward()
            loss = loss_sum.detach()
            terms += n
            bad_loss += (~torch.isfinite(loss)).double()
            meter.add(loss, n, videos, stats)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        bad_loss = self._normalise_gradients(grads, terms, bad_loss)
        norm = (
            torch.nn.utils.clip_grad_norm_(grads, self.optim.grad_clip)
            if self.optim.grad_clip
            else torch.nn.utils.get_total_norm(grads)
        )
        if bad_loss or not math.isfinite(float(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self._diverged("loss" if bad_loss else f"gradient norm ({float(norm)})")
        self.optimizer.step()
        st.step_in_epoch, st.global_step = st.step_in_epoch + 1, st.global_step + 1
        return lr

    def _normalise_gradients(
        self, grads: list[torch.Tensor], terms: torch.Tensor, bad_loss: torch.Tensor
    ) -> float:
        """Turn the summed loss's gradients into those of the mean over the whole global
        batch: divide by its loss terms (tokens, or videos for ReGen) counted over all
        processes. The step then does not depend on how the global batch is cut into
        micro-batches or processes (DDP has already averaged over processes). Returns
        how many micro-batches had a non-finite loss, over all processes."""
        counts = torch.stack([terms.to(torch.float64), bad_loss.to(terms.device, torch.float64)])
        total, bad = all_reduce_sum(counts.tolist(), self.dist)
        if grads:
            torch._foreach_mul_(grads, self.dist.world / max(total, 1.0))
        return bad

    def _diverged(self, what: str) -> None:
        """Stop: step `global_step + 1` had a non-finite `what`."""
        pointer = self.checkpoints.root / "latest"
        good = (
            f"the last good checkpoint is {self.checkpoints.root / pointer.read_text().strip()}"
            if pointer.exists()
            else "no checkpoint was written before it"
        )
        raise TrainingDiverged(
            f"training diverged at optimizer step {self.state.global_step + 1} (epoch "
            f"{self.state.epoch + 1}): the "
            f"{what} is not finite; the step was not taken and nothing was saved from it "
            f"({good}). Lower optim.lr "
            "(or set optim.grad_clip) and start a new run.dir"
        )

    def _micro_step(
        self, batch: dict, epoch: int
    ) -> tuple[torch.Tensor, float, int, dict[str, float]]:
        """Summed loss of one micro-batch, the number of terms in the sum (caption
        tokens), its video count, and per-video statistics to log (logged as means over
        videos). An empty batch (all videos failed) gives a zero with a graph, so every
        process joins the gradient all-reduce."""
        if not len(batch["path"]):
            return (
                sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0,
                0.0,
                0,
                {},
            )
        dev = self.dist.device
        ids, mask = trim_to_bucket(batch["caption_ids"], batch["caption_mask"])
        tokens = (ids.to(dev, non_blocking=True), mask.to(dev, non_blocking=True), self.prompt_len)
        pixels = batch["pixels"].to(dev, non_blocking=True)
        with autocast(dev, self.optim.precision):
            out = self.ddp(pixels, tokens, self.optim.label_smoothing)
        return out.loss_sum, out.num_tokens.sum(), len(batch["index"]), {}

    def _log(self, meter: LossMeter, lr: float, bar) -> None:
        values = meter.reduce(self.dist)  # every process takes part
        self.metrics.log("train", self.state.global_step, lr=lr, epoch=self.state.epoch, **values)
        bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
        self.last_loss = values["loss"]
        if self.first_loss is None:
            self.first_loss = values["loss"]
        elif (
            self.loss_should_fall and loss_rose(self.first_loss, values["loss"]) and self.dist.main
        ):
            log.warning(
                "the training loss has risen from %.4f to %.4f at step %d: the run may be "
                "diverging "
                "(optim.lr=%g too high?)",
                self.first_loss,
                values["loss"],
                self.state.global_step,
                self.optim.lr,
            )
