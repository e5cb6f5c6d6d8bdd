"""The caption-LM trainer's loss: label smoothing reaches it, and a step's gradient
does not depend on how the global batch is cut into micro-batches."""

import pytest
import torch

from genact.config import OptimConfig, RunConfig, SupervisedConfig, load_config
from genact.data import SkipReport, VideoItem
from genact.distributed import Dist
from genact.errors import ConfigError
from genact.models import VideoBlip
from genact.training.metrics import Metrics
from genact.training.trainer import CaptionTrainer
from helpers import CAPTIONS


def trainer_on(fitted, tmp_path, **optim) -> CaptionTrainer:
    root, videos = fitted
    model = VideoBlip.from_pretrained(root / "model").eval()  # no dropout: deterministic losses
    items = [VideoItem(str(v)) for v in videos * 2]
    captions = [
        [CAPTIONS[0]],
        [CAPTIONS[1] + " on a stage"],
        [CAPTIONS[0]],
        [CAPTIONS[1] + " on a stage"],
    ]
    return CaptionTrainer(
        model,
        items,
        captions,
        OptimConfig(epochs=1, **optim),
        RunConfig(dir=str(tmp_path), progress=False, tensorboard=False),
        Dist(),
        Metrics(tmp_path, enabled=False),
        SkipReport(),
    )


def test_label_smoothing_reaches_the_loss(fitted, tmp_path):
    trainer = trainer_on(fitted, tmp_path, global_batch=4, batch_size=4, label_smoothing=0.3)
    batch = next(trainer._batches(0, 0))
    loss_sum, tokens, videos, _ = trainer._micro_step(batch, 0)
    caps = [trainer.captions[i][0] for i in batch["index"].tolist()]
    with torch.no_grad():
        smoothed = trainer.model(batch["pixels"], caps, 0.3)
        plain = trainer.model(batch["pixels"], caps, 0.0)
    assert float(loss_sum.detach()) / tokens == pytest.approx(float(smoothed.loss), rel=1e-5)
    assert abs(float(smoothed.loss) - float(plain.loss)) > 1e-3


def test_a_steps_gradient_is_the_same_for_any_micro_batch_size(fitted, tmp_path):
    """Captions of different lengths: the mean over the global batch's tokens, not a
    mean of micro-batch means."""
    grads = []
    for batch_size in (4, 2, 1):
        trainer = trainer_on(
            fitted,
            tmp_path / str(batch_size),
            global_batch=4,
            batch_size=batch_size,
            label_smoothing=0.2,
            lr=0.0,
            min_lr=0.0,
        )
        per_rank = 4 // batch_size
        loader = trainer._batches(0, 0)
        trainer.optimizer.zero_grad()
        count = 0.0
        for _ in range(per_rank):
            loss_sum, n, _, _ = trainer._micro_step(next(loader), 0)
            loss_sum.backward()
            count += n
        grads_of = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        trainer._normalise_gradients(grads_of, torch.as_tensor(count), torch.zeros(()))
        grads.append(
            torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        )
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(
        grads[0], grads[2], atol=1e-6
    )
    assert grads[0].abs().sum() > 0


def test_rehearsed_videos_train_on_their_own_captions_beside_the_class_names(monkeypatch):
    import genact.training.supervised as supervised
    from genact.data import VideoItem

    seen = {}

    class FakeRun:
        def __init__(self, cfg, log, dist):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def load_model(self):
            return "model"

        def record_videos(self, videos):
            seen["recorded"] = [v.path for v in videos]

        def frame_cache(self, videos, model):
            return videos

        def make_trainer(self, cls, model, videos, captions):
            seen["videos"], seen["captions"] = [v.path for v in videos], captions

        def train_to_the_end(self, n):
            seen["n"] = n
            return "final"

    monkeypatch.setattr(supervised, "Run", FakeRun)
    shots = [VideoItem("a.mp4", 1), VideoItem("b.mp4", 0)]
    rehearsal = [(VideoItem("r.mp4"), ["a ball rolls", "a red ball"])]
    cfg = load_config(SupervisedConfig, None, [])
    got = supervised.train_on_class_names(cfg, shots, ["jump", "swim"], rehearsal=rehearsal)
    assert got == "final" and seen["n"] == 3
    assert seen["videos"] == seen["recorded"] == ["a.mp4", "b.mp4", "r.mp4"]
    assert seen["captions"] == [["swim"], ["jump"], ["a ball rolls", "a red ball"]]
    # the caption's form applies to the class names, never to the rehearsed captions
    cfg = load_config(SupervisedConfig, None, ["labels.template=a person doing {}"])
    supervised.train_on_class_names(cfg, shots, ["jump", "swim"], rehearsal=rehearsal)
    assert seen["captions"] == [
        ["a person doing swim"],
        ["a person doing jump"],
        ["a ball rolls", "a red ball"],
    ]
    # a form without the class name would give every video the same caption
    with pytest.raises(ConfigError, match="labels.template"):
        load_config(SupervisedConfig, None, ["labels.template=a video"])


def test_adapter_lr_scale_multiplies_the_adapters_step_only(fitted, tmp_path):
    """AdamW's first step moves each weight by about lr: with adapter_lr_scale = 10 the
    adapters move 10x as far and every other weight exactly as far as with 1."""
    from genact.training.metrics import LossMeter

    moved = {}
    for scale in (1.0, 10.0):
        trainer = trainer_on(
            fitted,
            tmp_path / str(scale),
            global_batch=4,
            batch_size=4,
            lr=1e-3,
            min_lr=1e-3,
            weight_decay=0.0,
            adapter_lr_scale=scale,
        )
        if scale == 1.0:  # the two groups of earlier checkpoints: they still resume
            assert len(trainer.optimizer.param_groups) == 2
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer._step(trainer._batches(0, 0), LossMeter())
        moved[scale] = {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}
    adapters = [n for n in moved[1.0] if n.startswith("adapters.")]
    assert adapters and all(moved[1.0][n].abs().max() > 0 for n in adapters)
    for name, delta in moved[1.0].items():
        want = delta * 10 if name in adapters else delta
        torch.testing.assert_close(moved[10.0][name], want, rtol=1e-4, atol=1e-9)
