"""The sections of gpu_all.py; each fills its `rows` dict as it goes, so what was
measured before a deadline is kept."""

from __future__ import annotations

import platform
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import transformers

import genact
from bench_helpers import captions, random_blip
from captioning import Sides, compare
from genact.config import DEFAULT_PROMPTS, OptimConfig
from genact.models import video_blip as vb
from genact.models.attention import SdpaBlipTextSelfAttention
from genact.models.decoder import CaptionDecoder
from genact.models.precision import autocast
from genact.models.video_blip import TemporalAdapter, VideoBlip, VideoBlipConfig, trim_to_bucket
from genact.training.optim import build_optimizer

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# dense bf16 tensor-core peak, FLOP/s (NVIDIA data sheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "B200": 2250e12}


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def blip(size: SimpleNamespace, frames: int | None = None) -> VideoBlip:
    net, tok = random_blip(size.size, size.hidden, size.layers)
    return VideoBlip(net, tok, VideoBlipConfig(num_frames=frames or size.frames)).to(DEV)


# ---- env ---------------------------------------------------------------------------
def env(size: SimpleNamespace, rows: dict) -> None:
    import safetensors

    rows.update(
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        safetensors=safetensors.__version__,
        genact=genact.__version__,
        device=torch.cuda.get_device_name() if DEV.type == "cuda" else platform.processor(),
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if DEV.type == "cuda" else None,
        dtype="bfloat16 autocast" if DEV.type == "cuda" else "float32",
        tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        cudnn_tf32=torch.backends.cudnn.allow_tf32,
        sdpa_flash=torch.backends.cuda.flash_sdp_enabled(),
        sdpa_mem_efficient=torch.backends.cuda.mem_efficient_sdp_enabled(),
        threads=torch.get_num_threads(),
        smoke=size.smoke,
    )


# ---- correctness -------------------------------------------------------------------
def _reference(text, prompt, memory, eos, pad, **search):
    return text.generate(
        input_ids=prompt[None].expand(memory.shape[0], -1),
        encoder_hidden_states=memory,
        encoder_attention_mask=torch.ones(memory.shape[:2], dtype=torch.long, device=DEV),
        eos_token_id=eos,
        pad_token_id=pad,
        do_sample=False,
        **search,
    )


def _count(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """(rows, rows that differ), padding the shorter to the longer's length."""
    n = max(a.shape[1], b.shape[1])
    a = torch.nn.functional.pad(a, (0, n - a.shape[1]), value=-1)
    b = torch.nn.functional.pad(b, (0, n - b.shape[1]), value=-1)
    return a.shape[0], int((a != b).any(1).sum())


def _agreement(text, cases, eos, pad, bos, *, dtype=None, one_by_one=False) -> dict:
    """genact's decoder (or, with one_by_one, transformers' batched generate) against
    transformers' generate (one row at a time with one_by_one) over `cases`."""
    dec = CaptionDecoder(text, eos_id=eos, pad_id=pad)
    compared = mismatches = 0
    g = torch.Generator().manual_seed(0)
    prompt = torch.tensor([bos, 5, 6, 7], device=DEV)
    width = text.config.encoder_hidden_size
    for batch, beams, high, low in cases:
        memory = torch.randn(batch, 197 if width == 768 else 17, width, generator=g).to(DEV)
        search = dict(num_beams=beams, max_new_tokens=high, min_new_tokens=low)
        with torch.no_grad(), torch.autocast(DEV.type, dtype, enabled=dtype is not None):
            want = _reference(text, prompt, memory, eos, pad, **search)
            if one_by_one:
                rows = [
                    _reference(text, prompt, memory[i : i + 1], eos, pad, **search)
                    for i in range(batch)
                ]
                got = torch.cat(
                    [
                        torch.nn.functional.pad(r, (0, want.shape[1] - r.shape[1]), value=pad)
                        for r in rows
                    ]
                )
            else:
                (got,) = dec.decode(memory, [prompt], **search)
        n, bad = _count(got, want)
        compared, mismatches = compared + n, mismatches + bad
    return {"compared": compared, "mismatches": mismatches}


def _peaky(text, eos: int, scale: float, bias: float) -> None:
    """Sharper distributions and a likelier [SEP]: captions end at different lengths."""
    with torch.no_grad():
        for p in text.parameters():
            p.mul_(scale)
        text.cls.predictions.bias[eos] += bias


def correctness(size: SimpleNamespace, rows: dict) -> None:
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    try:
        models = [
            ("fp32_tiny", 64, 2, (8.0, 20.0)),
            ("fp32_blip_base", size.hidden, size.layers, (2.0, 12.0)),
        ]
        for name, hidden, layers, peaky in models:
            net, _ = random_blip(size.size, hidden, layers)
            text = net.text_decoder.to(DEV).eval()
            ids = (
                net.config.text_config.sep_token_id,
                net.config.text_config.pad_token_id,
                net.config.text_config.bos_token_id,
            )
            cases = [(b, k, 12, 12) for b in (1, 8, 32) for k in (1, 3, 5)]
            rows[name] = {"forced": _agreement(text, cases, *ids)}
            _peaky(text, ids[0], *peaky)
            natural = [(b, k, 12, 1) for b, k, _, _ in cases]
            rows[name]["natural"] = _agreement(text, natural, *ids)
            if name == "fp32_blip_base" and (DEV.type == "cuda" or size.smoke):
                cases = [(32, 3, 20, 1), (16, 5, 20, 1), (32, 1, 20, 1)]
                rows["bf16"] = {
                    "genact_vs_transformers": _agreement(text, cases, *ids, dtype=torch.bfloat16),
                    "transformers_batched_vs_one_by_one": _agreement(
                        text, cases, *ids, dtype=torch.bfloat16, one_by_one=True
                    ),
                }
            del net, text
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


# ---- generation --------------------------------------------------------------------
def generation(size: SimpleNamespace, rows: dict) -> None:
    model = blip(size, frames=1).eval()
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(size.gen_frames, 3, size.size, size.size, generator=g).to(DEV)
    for tokens in size.lengths:
        sides = Sides(model, list(DEFAULT_PROMPTS), 3, tokens)
        best, differ = compare(sides, frames, size.plain_frames, rounds=1)
        if DEV.type == "cuda":  # genact's decoder with its step captured (CUDA graphs)
            compiled = blip(size, frames=1).eval()
            compiled.load_state_dict(model.state_dict())
            compiled.compile_decoder()
            other = Sides(compiled, list(DEFAULT_PROMPTS), 3, tokens)
            for _ in range(2):  # capture, then time
                t0 = time.perf_counter()
                with torch.no_grad(), autocast(DEV):
                    other.genact(frames)
                sync()
                best["genact_compiled"] = time.perf_counter() - t0
        n = size.gen_frames
        seconds = {**best, "plain_loop": best["plain_loop"] * n / size.plain_frames}
        rows[f"{tokens}_tokens"] = {
            "frames": n,
            "prompts": len(DEFAULT_PROMPTS),
            **{
                k: {"seconds": round(t, 3), "frames_per_s": round(n / t, 2)}
                for k, t in seconds.items()
            },
            "mismatches_vs_genact": differ,
            "speedup_vs_plain": round(seconds["plain_loop"] / seconds["genact"], 2),
            "speedup_vs_batched": round(seconds["batched_generate"] / seconds["genact"], 2),
        }


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
    from genact.models.video_blip import CaptionTokenizer

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


# ---- REST stages -------------------------------------------------------------------
def rest_stages(size: SimpleNamespace, rows: dict) -> None:
    import rest_pipeline as rp

    args = SimpleNamespace(
        frames=size.frames,
        size=size.size,
        beams=3,
        tokens=15,
        videos=size.rest_videos,
        caption_batch=size.caption_batch,
        clip_batch=size.caption_batch,
        train_batch=max(size.train_batch // 4, 2),
        neighbours=2000,
        keep=3,
    )
    model = blip(size)
    rates = rp.model_stages(model, rp.build_clip(size.size, size.hidden, size.layers), args)
    rows["videos_per_s"] = {k: round(v, 2) for k, v in rates.items()}
    seconds = {}
    for n in size.neighbour_videos:
        args.neighbour_videos = n
        seconds[n] = rp.retrieval_stages(args)
        rows[f"neighbour_stages_s_at_{n}"] = {k: round(v, 2) for k, v in seconds[n].items()}
    n = size.neighbour_videos[-1]
    hours = rp.project(rates, seconds[n], n)
    rows["projected_hours_1_gpu"] = {k: round(v, 1) for k, v in hours.items()}
    rows["projected_hours_8_gpus"] = {k: round(v / 8, 1) for k, v in hours.items()}
