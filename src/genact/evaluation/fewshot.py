"""Few-shot recognition (SPEC §5): fine-tune on M videos per class with the class
names as captions, then classify the split's test videos with CLIP-TAM.

Shots are drawn per class from the train side of the split with a seeded RNG
(sorted candidates, so the draw depends on the seed and the file lists only), or
read from a list file in the ViFi-CLIP format (`path label` lines). Epochs default
to max(400 / M, 30) (ReGen supp. A.2); the other settings are REST Table 10's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from genact.config import SupervisedConfig, load_config
from genact.data.datasets import VideoItem
from genact.data.splits import Split, read_list
from genact.evaluation.evaluate import evaluate
from genact.inference.captions import Captioner
from genact.evaluation.protocols import protocol_splits
from genact.models.clip import FrozenClip
from genact.models.video_blip import VideoBlip
from genact.rest.run import train_on_class_names
from genact.errors import ConfigError, DataError

log = logging.getLogger(__name__)
SHOTS = (2, 4, 8, 16)


def fewshot_epochs(shots: int) -> int:
    return max(400 // shots, 30)


# ReGen supp. A.2: few-shot fine-tuning of a ReGen model uses ReGen's settings
REGEN_FEWSHOT = ("optim.lr=2.5e-6", "optim.min_lr=2.5e-8", "optim.weight_decay=0.01")


def optim_for(model: str) -> tuple[str, ...]:
    """The optimiser settings (overrides) for fine-tuning `model`: ReGen's for a model
    a ReGen run made (its genact_video.json says so), REST Table 10's otherwise."""
    kind = VideoBlip.saved_settings(model).get("trained_by")
    chosen = REGEN_FEWSHOT if kind == "regen" else ()
    log.info("few-shot optimiser for a %s model: %s", kind or "non-genact",
             ", ".join(chosen) if chosen else "REST Table 10's (lr 2e-5, weight decay 0.001)")
    return chosen


def sample_shots(split: Split, shots: int, seed: int = 0) -> list[VideoItem]:
    """Exactly `shots` videos of every class of `split` (its train side), drawn with `seed`."""
    by_class: dict[int, list[VideoItem]] = {c: [] for c in range(len(split.class_names))}
    for it in split.items:
        by_class[it.label].append(it)
    rng = np.random.default_rng([seed, shots])
    chosen = []
    for c, items in by_class.items():
        if len(items) < shots:
            raise DataError(f"class {split.class_names[c]!r} has {len(items)} training videos, fewer than {shots} shots")
        items = sorted(items, key=lambda it: (it.path, it.start or 0))
        chosen += [items[i] for i in sorted(rng.choice(len(items), shots, replace=False).tolist())]
    return chosen


def run_fewshot(
    protocol: str,
    data_root: str,
    splits_dir: str,
    model: str,
    clip_id: str,
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
    """Fine-tune `model` on `shots` per class of split `split`'s train side and score
    its test side. Returns the evaluation results (also in out_dir/results.json)."""
    test = protocol_splits(protocol, data_root, splits_dir, which=[split])[f"split{split}"]
    if train_list is not None:
        items = read_list(train_list, data_root, class_names=test.class_names).items
    else:
        train = protocol_splits(protocol, data_root, splits_dir, which=[split], subset="train")[f"split{split}"]
        items = sample_shots(train, shots, seed)
    meta = {"protocol": protocol, "base_model": model, "clip": clip_id, "shots": shots, "seed": seed}
    return finetune_and_evaluate(test, items, f"split{split}", model, clip_id, out_dir / f"{shots}shot-split{split}",
                                 meta, seed, overrides, templates, cache_dir, progress)


def finetune_and_evaluate(
    test: Split,
    items: list[VideoItem],
    name: str,
    model: str,
    clip_id: str,
    run_dir: Path,
    meta: dict,
    seed: int = 0,
    overrides: list[str] | None = None,
    templates: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Fine-tune `model` on labelled `items` (class names of `test` as captions), then
    evaluate on `test`; the training run is run_dir/train, results in run_dir."""
    shots = meta.get("shots", 1)
    cfg = load_config(SupervisedConfig, None, [
        f"model.blip={model}", f"run.dir={run_dir / 'train'}", f"run.seed={seed}",
        f"optim.epochs={fewshot_epochs(shots)}", f"run.progress={str(progress).lower()}", "run.resume=auto",
        *optim_for(model), *(overrides or []),
    ])
    if len(items) < cfg.optim.global_batch:  # e.g. 2 shots x 10 classes: one step per epoch
        cfg.optim.global_batch = max(len(items) // cfg.optim.batch_size, 1) * cfg.optim.batch_size
    log.info("%s: %d training videos, %d epochs", run_dir.name, len(items), cfg.optim.epochs)
    final = train_on_class_names(cfg, items, test.class_names)
    if final is None:
        raise ConfigError(f"{run_dir}: training stopped early (run.stop_at_step); run again to resume")
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.run.device != "cpu" else "cpu")
    cache = cache_dir or run_dir / "cache"
    captioner = Captioner.load(str(final), "genact", cfg.data.frames, cache, device, progress=progress)
    clip = FrozenClip.from_pretrained(clip_id).to(device)
    meta = {**meta, "model": str(final), "clip": clip_id, "train_videos": [it.path for it in items]}
    return evaluate({name: test}, "genact", clip, captioner, templates or ["{}"], run_dir, meta, cache,
                    cfg.data.frames, progress)
