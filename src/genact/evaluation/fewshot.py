"""The few-shot protocol (SPEC §5): fine-tune on M videos per class of a split's
train side (`genact.supervised`: sampling, epochs, optimiser), or on a ViFi-CLIP
style list, then classify the split's test videos with CLIP-TAM."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from genact.data.datasets import VideoItem
from genact.data.splits import Split, read_list
from genact.distributed import joined
from genact.errors import ConfigError
from genact.evaluation.clip_tam import mean_std
from genact.evaluation.evaluate import evaluate
from genact.evaluation.protocols import protocol_splits
from genact.inference.captions import Captioner
from genact.io import atomic_write_text
from genact.models.clip import FrozenClip
from genact.supervised import fewshot_config, sample_shots, train_on_class_names

log = logging.getLogger(__name__)


def run_fewshot(
    protocol: str,
    data_root: str | Path,
    splits_dir: str | Path,
    model: str,
    *,
    clip: str,
    shots: int,
    split: int,
    out_dir: Path,
    seed: int = 0,
    train_list: str | None = None,
    overrides: list[str] | None = None,
    templates: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Fine-tune `model` on `shots` per class of split `split`'s train side (or on
    `train_list`) and score its test side with CLIP `clip`. Returns the evaluation
    results (also in out_dir/<shots>shot-split<k>/results.json)."""
    test = protocol_splits(protocol, data_root, splits_dir, which=[split])[f"split{split}"]
    if train_list is not None:
        items = read_list(train_list, data_root, class_names=test.class_names).items
    else:
        train = protocol_splits(protocol, data_root, splits_dir, which=[split], subset="train")[f"split{split}"]
        items = sample_shots(train, shots, seed)
    meta = {"protocol": protocol, "base_model": model, "clip": clip, "shots": shots, "seed": seed}
    return finetune_and_evaluate(test, items, model, clip=clip, name=f"split{split}",
                                 run_dir=out_dir / f"{shots}shot-split{split}", meta=meta, seed=seed,
                                 overrides=overrides, templates=templates, cache_dir=cache_dir, progress=progress)


def finetune_and_evaluate(
    test: Split,
    items: list[VideoItem],
    model: str,
    *,
    clip: str,
    name: str,
    run_dir: Path,
    meta: dict,
    seed: int = 0,
    overrides: list[str] | None = None,
    templates: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Fine-tune `model` on labelled `items` (class names of `test` as captions), then
    evaluate split `name` = `test` with CLIP `clip`; the training run is
    run_dir/train, results in run_dir."""
    cfg = fewshot_config(model, run_dir / "train", shots=meta.get("shots", 1), num_videos=len(items), seed=seed,
                         progress=progress, overrides=overrides)
    log.info("%s: %d training videos, %d epochs", run_dir.name, len(items), cfg.optim.epochs)
    processes = joined(cfg.run.device, cfg.run.dist_timeout_min, threads=cfg.run.threads, workers=cfg.data.num_workers)
    with processes as dist:  # training and evaluation share the processes
        final = train_on_class_names(cfg, items, test.class_names)
        if final is None:
            raise ConfigError(f"{run_dir}: training stopped early (run.stop_at_step); run again to resume")
        cache = cache_dir or run_dir / "cache"
        captioner = Captioner.load(str(final), "genact", cfg.data.frames, cache, dist.device, progress=progress,
                                   dist=dist)
        frozen = FrozenClip.from_pretrained(clip).to(dist.device)
        meta = {**meta, "model": str(final), "clip": clip, "train_videos": [it.path for it in items]}
        return evaluate({name: test}, "genact", frozen, captioner, templates=templates or ["{}"], out_dir=run_dir,
                        meta=meta, cache_dir=cache, frames=cfg.data.frames, progress=progress, dist=dist)


def fewshot_summary(out: Path, protocol: str, model: str, seed: int, top1: dict[int, dict[int, float]]) -> str:
    """Write out/fewshot.json from {shots: {split: top-1}} and return the text table
    (one row per shot count: each split, mean and std)."""
    splits = sorted({k for row in top1.values() for k in row})
    lines = [f"{'shots':<6}" + "".join(f"{'split' + str(k):>9}" for k in splits) + f"{'mean':>9}{'std':>7}"]
    summary = {}
    for m, row in top1.items():
        mean, std = mean_std(list(row.values()))
        summary[m] = {"top1": row, "mean": mean, "std": std}
        lines.append(f"{m:<6}" + "".join(f"{row[k]:>9.2f}" for k in splits) + f"{mean:>9.2f}{std:>7.2f}")
    atomic_write_text(out / "fewshot.json", json.dumps({"protocol": protocol, "model": model, "seed": seed,
                                                        "shots": summary}, indent=1) + "\n")
    return "\n".join(lines)
