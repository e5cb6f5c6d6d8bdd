"""The sections of gpu_all.py (training is in gpu_training.py); each fills its `rows`
dict as it goes, so what was measured before a deadline is kept."""

from __future__ import annotations

import platform
import time
from types import SimpleNamespace

import torch
import transformers

import genact
from bench_helpers import DEV, blip, random_blip, sync
from captioning import Sides, compare
from genact.config import DEFAULT_PROMPTS
from genact.models.decoder import CaptionDecoder
from genact.models.precision import autocast
from gpu_training import training  # noqa: F401  (a section, as gpu_all calls them)


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
