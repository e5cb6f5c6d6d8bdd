"""Everything a GPU should tell us about genact, in one run of at most 8 minutes on one
H100 / H200 (docs/performance.md, section 9). Random weights and synthetic pixels: no
downloads, no video files, nothing imported beyond torch, transformers, safetensors
and genact (PyAV is not needed).

    PYTHONPATH=src python3 benchmarks/gpu_all.py --out bench/gpu_all.json
    PYTHONPATH=src python3 benchmarks/gpu_all.py --sections generation --out bench/gpu_all.json
    python benchmarks/gpu_all.py --smoke --out /tmp/smoke.json   # tiny, CPU, < 60 s (tests)
    python benchmarks/gpu_all.py --table bench/gpu_all.json      # the docs' tables of a run

Sections (each under its own deadline; the JSON is rewritten after every section, and
`--sections` reruns some into an existing file):
- env: versions, GPU, dtype and backend flags;
- correctness: genact's decoder against transformers' generate, {"compared": rows,
  "mismatches": rows}, in fp32 (tiny and BLIP-base) and in bf16 beside transformers'
  own batched-versus-one-by-one disagreement;
- generation: REST's initial captions (frames x 3 prompts, beam 3) on the plain
  `generate` loop, batched `generate`, genact's path before its decoder, genact's
  decoder (and, on a GPU, with its step compiled), at two caption lengths;
- training: MFU at BLIP-base / ViT-B/16 of the training step as it was shipped, then
  with each change added in turn (FLOPs counted once, for the unpadded step);
- rest_stages: videos/s per REST stage, the neighbour stages at two N, and the
  projected wall time of a K400 REST run on 1 GPU and, as a projection, on 8.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_helpers, captioning, ...

import gpu_sections as sections  # noqa: E402

# each section and its deadline in seconds, in the order they run
SECTIONS = {
    "env": (sections.env, 30),
    "correctness": (sections.correctness, 90),
    "generation": (sections.generation, 150),
    "training": (sections.training, 150),
    "rest_stages": (sections.rest_stages, 60),
}


class Deadline(Exception):
    pass


@contextmanager
def deadline(seconds: float):
    """Raise Deadline in the main thread after `seconds` (checked between operations)."""

    def fire(*_):
        raise Deadline(f"stopped at its deadline of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def preset(name: str) -> SimpleNamespace:
    """Sizes: `gpu`, BLIP-base / ViT-B/16 at 224 px and T = 8; `cpu`, the same but 256
    wide and 4 layers deep, for CPU before/after figures; `smoke`, tiny, for the tests."""
    if name == "smoke":
        return SimpleNamespace(
            smoke=True, size=32, hidden=64, layers=2, frames=2, gen_frames=8, plain_frames=2,
            lengths=(4, 8), train_batch=4, micro_batches=2, train_steps=2, rest_videos=4,
            neighbour_videos=(512, 1024), caption_batch=4,
        )  # fmt: skip
    if name == "cpu":
        return SimpleNamespace(
            smoke=False, size=224, hidden=256, layers=4, frames=8, gen_frames=16, plain_frames=2,
            lengths=(10, 20), train_batch=8, micro_batches=2, train_steps=3, rest_videos=8,
            neighbour_videos=(4096, 8192), caption_batch=8,
        )  # fmt: skip
    return SimpleNamespace(
        smoke=False, size=224, hidden=None, layers=12, frames=8, gen_frames=128, plain_frames=8,
        lengths=(10, 30), train_batch=32, micro_batches=2, train_steps=6, rest_videos=64,
        neighbour_videos=(32768, 65536), caption_batch=32,
    )  # fmt: skip


def save(path: Path | None, result: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)


def run(names: list[str], size: SimpleNamespace, out: Path | None, scale: float) -> dict:
    """Run the sections in order, each under its deadline, saving after each."""
    result = json.loads(out.read_text()) if out is not None and out.exists() else {}
    result.setdefault("sections", {})
    result["smoke"] = size.smoke
    for name in names:
        rows: dict = {}
        t0 = time.perf_counter()
        try:
            section, seconds = SECTIONS[name]
            with deadline(seconds * scale):
                section(size, rows)
        except Deadline as e:
            rows["error"] = str(e)
        except Exception as e:  # one section's failure must not lose the others' figures
            rows["error"] = f"{type(e).__name__}: {e}"
        rows["seconds"] = round(time.perf_counter() - t0, 1)
        result["sections"][name] = rows
        save(out, result)
        print(json.dumps({name: rows}), flush=True)
    return result


def tables(result: dict) -> str:
    """Markdown tables of a gpu_all JSON (docs/performance.md, section 9)."""
    s = result["sections"]
    out = []
    env_ = s.get("env", {})
    out.append(
        f"Machine: {env_.get('device')}, torch {env_.get('torch')}, transformers "
        f"{env_.get('transformers')}, {env_.get('dtype')}.\n"
    )
    gen = s.get("generation", {})
    if any(k.endswith("_tokens") for k in gen):
        out.append("| caption length | side | seconds | frames / s |\n| --- | --- | --- | --- |")
        for key, row in gen.items():
            if key.endswith("_tokens"):
                for side, v in row.items():
                    if isinstance(v, dict) and "seconds" in v:
                        out.append(
                            f"| {key.replace('_', ' ')} | {side} | {v['seconds']} | "
                            f"{v['frames_per_s']} |"
                        )
                out.append(
                    f"| {key.replace('_', ' ')} | **genact vs plain / batched** | "
                    f"**{row['speedup_vs_plain']}x / {row['speedup_vs_batched']}x** | |"
                )
        out.append("")
    train = s.get("training", {})
    if "as_shipped" in train:
        out.append("| training step | ms | videos / s | MFU |\n| --- | --- | --- | --- |")
        for key, v in train.items():
            if isinstance(v, dict) and "step_ms" in v:
                out.append(
                    f"| {key} | {v['step_ms']} | {v['videos_per_s']} | {v.get('mfu_pct', '')} |"
                )
        out.append("")
    rest = s.get("rest_stages", {})
    if "projected_hours_1_gpu" in rest:
        out.append("| REST stage | videos / s | K400, 1 GPU (h) | 8 GPUs, projected (h) |")
        out.append("| --- | --- | --- | --- |")
        for k, h in rest["projected_hours_1_gpu"].items():
            rate = rest["videos_per_s"].get(k, "")
            out.append(f"| {k} | {rate} | {h} | {rest['projected_hours_8_gpus'][k]} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, under 60 s")
    p.add_argument(
        "--preset", choices=["gpu", "cpu"], default="gpu", help="model sizes (see preset)"
    )
    p.add_argument("--out", type=Path, help="JSON written after every section")
    p.add_argument("--table", type=Path, help="print the docs' tables of this JSON and exit")
    p.add_argument(
        "--deadline-scale", type=float, default=None, help="multiply every section's deadline"
    )
    args = p.parse_args()
    if args.table:
        print(tables(json.loads(args.table.read_text())))
        return
    torch.manual_seed(0)
    size = preset("smoke" if args.smoke else args.preset)
    print(f"# gpu_all on {platform.node()}: {', '.join(args.sections)}", flush=True)
    scale = args.deadline_scale or {"smoke": 0.5, "cpu": 20.0}.get(
        "smoke" if args.smoke else args.preset, 1.0
    )
    run(args.sections, size, args.out, scale)


if __name__ == "__main__":
    main()
