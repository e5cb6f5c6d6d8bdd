"""gpu_all.py's training section: the step as shipped, then each change in turn, and
each changed piece alone."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from bench_helpers import DEV, PEAK_BF16, blip, captions, sync
from genact.config import OptimConfig
from genact.models import caption_text as vb
from genact.models.adapter import TemporalAdapter
from genact.models.attention import SdpaBlipTextSelfAttention
from genact.models.caption_text import CaptionTokenizer, trim_to_bucket
from genact.models.precision import autocast
from genact.models.video_blip import VideoBlip
from genact.training.optim import build_optimizer

# ---- training ----------------------------------------------------------------------
CHANGES = [
    "text_sdpa",
    "length_buckets",
    "no_host_sync",
    "foreach_scale",
    "fast_adapter",
    "compile",
]


def _smoothed_cross_entropy(logits, targets):
    """The training loss as one F.cross_entropy (without the log-likelihood)."""
    x, t = logits.float().flatten(0, 1), targets.flatten()
    return F.cross_entropy(x, t, label_smoothing=0.2, reduction="none")


def _logsumexp_losses(logits, targets):
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1)
    return lse - x.gather(-1, targets.unsqueeze(-1)).squeeze(-1), lse - x.mean(-1)


def _blend(losses) -> torch.Tensor:
    nll, smooth = losses
    return (0.8 * nll + 0.2 * smooth).sum()


def _configure(model: VideoBlip, on: set[str]) -> None:
    """Switch the model to the step as shipped, plus the changes in `on`."""
    from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

    for m in model.modules():
        if isinstance(m, (BlipTextSelfAttention, SdpaBlipTextSelfAttention)):
            m.__class__ = SdpaBlipTextSelfAttention if "text_sdpa" in on else BlipTextSelfAttention
        if isinstance(m, TemporalAdapter):
            m._temporal_taps = (
                (lambda grid, m=m: TemporalAdapter._temporal_taps(m, grid))
                if "fast_adapter" in on
                else (lambda grid, c=m.conv: c(grid.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1))
            )
    vb.LENGTH_BUCKET = 8 if "length_buckets" in on else 1


def _step_fn(model, opt, micro, on: set[str]):
    """One optimizer step over the micro-batches, as CaptionTrainer takes it."""

    def step():
        opt.zero_grad(set_to_none=True)
        terms = torch.zeros((), dtype=torch.float64, device=DEV) if "no_host_sync" in on else 0.0
        for pixels, caps, tokens in micro:
            text = (
                (*[t.to(DEV, non_blocking=True) for t in trim_to_bucket(*tokens)], model.prompt_len)
                if "no_host_sync" in on
                else caps
            )
            with autocast(DEV):
                out = model(pixels, text, 0.2)
            out.loss_sum.backward()
            if "no_host_sync" in on:
                terms = terms + out.num_tokens.sum()
            else:
                terms += float(out.num_tokens.sum())
                float(out.loss_sum.detach())  # the loss read every micro-batch
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        scale = 1.0 / max(float(terms), 1.0)
        if "foreach_scale" in on:
            torch._foreach_mul_(grads, scale)
        else:
            for grad in grads:
                grad.mul_(scale)
        float(torch.nn.utils.get_total_norm(grads))  # the finite check
        opt.step()

    return step


def _flops(model: VideoBlip, pixels: torch.Tensor, caps: list[str]) -> float:
    """FLOPs of one forward + backward. FlopCounterMode counts a grouped convolution as a
    dense one, so the depth-wise adapters are counted by hand (2 * 27 per output element
    forward, twice that backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    adapters, model.adapters = model.adapters, torch.nn.ModuleDict()
    try:
        with FlopCounterMode(display=False) as counter:
            with autocast(DEV):
                model(pixels, caps, label_smoothing=0.2).loss_sum.backward()
    finally:
        model.adapters = adapters
        model.zero_grad(set_to_none=True)
    cfg = model.blip.config.vision_config
    tokens = pixels.shape[0] * pixels.shape[1] * (cfg.image_size // cfg.patch_size) ** 2
    return counter.get_total_flops() + len(adapters) * 3 * 2 * 27 * tokens * cfg.hidden_size


def training(size: SimpleNamespace, rows: dict) -> None:
    name = torch.cuda.get_device_name() if DEV.type == "cuda" else ""
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    g = torch.Generator().manual_seed(0)
    per = size.train_batch // size.micro_batches
    on: set[str] = set()
    flops = None
    for change in [None, *CHANGES]:
        if change == "compile" and DEV.type != "cuda":  # a GPU's change (and a C++ compiler's)
            continue
        on |= {change} if change else set()
        model = blip(size).train()
        model.prompt_len = model.prompt_ids().shape[1]
        _configure(model, on)
        caps = [captions(per, g) for _ in range(size.micro_batches)]
        text = CaptionTokenizer(model)
        micro = [
            (
                torch.randn(per, size.frames, 3, size.size, size.size, device=DEV),
                c,
                tuple(
                    t.pin_memory() if DEV.type == "cuda" else t
                    for t in text.encode(c, pad_to=vb.MAX_CAPTION_TOKENS)
                ),
            )
            for c in caps
        ]
        if change is None:  # counted once, for the step as shipped (unpadded captions)
            flops = size.micro_batches * _flops(model, micro[0][0], micro[0][1])
        if "compile" in on:
            model.compile_vision()
        opt = build_optimizer(model, OptimConfig(lr=1e-5))
        step = _step_fn(model, opt, micro, on)
        for _ in range(3 if "compile" in on else 1):
            step()
        sync()
        t0 = time.perf_counter()
        for _ in range(size.train_steps):
            step()
        sync()
        sec = (time.perf_counter() - t0) / size.train_steps
        row = {
            "step_ms": round(1e3 * sec, 1),
            "videos_per_s": round(size.train_batch / sec, 2),
            "tflop_per_step": round(flops / 1e12, 3),
        }
        if peak:
            row["mfu_pct"] = round(100 * flops / sec / peak, 1)
        rows["as_shipped" if change is None else f"+{change}"] = row
        del model, opt, micro
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
    _configure_defaults()
    rows["batch"], rows["micro_batches"] = size.train_batch, size.micro_batches
    rows["parts"] = _parts(size)


def _timed_ms(fn, steps: int = 3) -> float:
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return round(1e3 * (time.perf_counter() - t0) / steps, 2)


def _parts(size: SimpleNamespace) -> dict:
    """Forward + backward of each changed piece alone, before and after (ms), at the
    training batch: an adapter, the loss over the vocabulary, the text decoder."""
    model = blip(size).train()
    b, d = size.train_batch // size.micro_batches, model.blip.config.vision_config.hidden_size
    side = size.size // model.blip.config.vision_config.patch_size
    adapter = TemporalAdapter(d).to(DEV)
    grid = torch.randn(b, size.frames, side, side, d, device=DEV, requires_grad=True)
    conv = lambda: adapter.conv(grid.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)  # noqa: E731
    logits = torch.randn(b, 24, model.blip.config.text_config.vocab_size, device=DEV)
    logits.requires_grad_(True)
    targets = torch.randint(logits.shape[-1], (b, 24), device=DEV)
    ids, mask, p = model.tokenize(captions(b, torch.Generator().manual_seed(0)))
    memory = torch.randn(b, side * side + 1, d, device=DEV)

    def text(on: set[str]):
        _configure(model, on)
        with autocast(DEV):
            model.caption_loss(memory, ids, mask, p, 0.2).loss_sum.backward()

    out = {
        "adapter_conv3d": _timed_ms(lambda: conv().sum().backward()),
        "adapter_2d_taps": _timed_ms(lambda: adapter._temporal_taps(grid).sum().backward()),
        # genact's (one log-softmax, both terms), one F.cross_entropy, a log-sum-exp form
        "loss_log_softmax": _timed_ms(lambda: _blend(vb.token_losses(logits, targets)).backward()),
        "loss_cross_entropy": _timed_ms(
            lambda: _smoothed_cross_entropy(logits, targets).sum().backward()
        ),
        "loss_logsumexp": _timed_ms(lambda: _blend(_logsumexp_losses(logits, targets)).backward()),
        "text_decoder_eager": _timed_ms(lambda: text(set())),
        "text_decoder_sdpa": _timed_ms(lambda: text({"text_sdpa"})),
    }
    _configure_defaults()
    return out


def _configure_defaults() -> None:
    vb.LENGTH_BUCKET = 8
