"""The few-shot protocol (SPEC §5): fine-tune on M videos per class of a split's
train side (`genact.training.supervised`: sampling, epochs, optimiser), or on a ViFi-CLIP
style list, then classify the split's test videos with CLIP-TAM."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from genact.config import Decoding, SupervisedConfig, load_config
from genact.data.datasets import VideoItem, video_item
from genact.data.splits import Split, read_list
from genact.distributed import Dist, joined
from genact.errors import ConfigError, DataError
from genact.evaluation.clip_tam import mean_std
from genact.evaluation.evaluate import evaluate_model
from genact.evaluation.protocols import protocol_splits
from genact.models.clip import FrozenClip
from genact.models.video_blip import VideoBlip
from genact.training.rundir import RunDir
from genact.training.supervised import train_on_class_names

log = logging.getLogger(__name__)

SHOTS = (2, 4, 8, 16)


def fewshot_epochs(shots: int) -> int:
    return max(400 // shots, 30)


# ReGen supp. A.2: few-shot fine-tuning of a ReGen model uses ReGen's settings
REGEN_FEWSHOT = ("optim.lr=2.5e-6", "optim.min_lr=2.5e-8", "optim.weight_decay=0.01")


def optim_for(trained_by: str | None) -> tuple[str, ...]:
    """The optimiser settings (overrides) for fine-tuning a model that `trained_by` made
    (its genact_video.json's "trained_by"): ReGen's for a ReGen model, REST Table 10's
    otherwise."""
    return REGEN_FEWSHOT if trained_by == "regen" else ()


def sample_shots(split: Split, shots: int, seed: int = 0) -> list[VideoItem]:
    """Exactly `shots` videos of every class of `split` (its train side), drawn with `seed`."""
    by_class: dict[int, list[VideoItem]] = {c: [] for c in range(len(split.class_names))}
    for it in split.items:
        by_class[it.label].append(it)
    rng = np.random.default_rng([seed, shots])
    chosen = []
    for c, items in by_class.items():
        if len(items) < shots:
            raise DataError(
                f"class {split.class_names[c]!r} has {len(items)} training videos, fewer than "
                f"{shots} shots"
            )
        items = sorted(items, key=lambda it: (it.path, it.start or 0))
        chosen += [items[i] for i in sorted(rng.choice(len(items), shots, replace=False).tolist())]
    return chosen


def fewshot_config(
    model: str,
    run_dir: Path,
    *,
    shots: int,
    num_videos: int,
    seed: int = 0,
    progress: bool = True,
    overrides: list[str] | None = None,
) -> SupervisedConfig:
    """The fine-tuning run of `shots` per class ({num_videos} videos in all) from `model`:
    few-shot epochs and optimiser, then the user's overrides; a global batch larger
    than the set shrinks to it (2 shots x 10 classes: one step per epoch)."""
    trained_by = VideoBlip.saved_settings(model).get("trained_by")
    settings = [
        f"model.blip={model}",
        f"run.dir={run_dir}",
        f"run.seed={seed}",
        f"optim.epochs={fewshot_epochs(shots)}",
        f"run.progress={str(progress).lower()}",
        "run.resume=auto",
        *optim_for(trained_by),
        *(overrides or []),
    ]
    cfg = load_config(SupervisedConfig, None, settings)
    if num_videos < cfg.optim.global_batch:
        fit = max(num_videos // cfg.optim.batch_size, 1) * cfg.optim.batch_size
        cfg = load_config(SupervisedConfig, None, [*settings, f"optim.global_batch={fit}"])
    defaults = "ReGen supp. A.2" if optim_for(trained_by) else "REST Table 10"
    log.info(
        "few-shot optimiser for a %s model (%s, then your settings): lr %g to %g, weight decay %g",
        trained_by or "non-genact",
        defaults,
        cfg.optim.lr,
        cfg.optim.min_lr,
        cfg.optim.weight_decay,
    )
    return cfg


def process_settings(overrides: list[str]) -> SupervisedConfig:
    """The command's `key=value` training settings as a config: the process group
    (run.device, run.dist_timeout_min, run.threads, data.num_workers) comes from it,
    before any fine-tuning run is set up; a mistake stops the command here."""
    return load_config(SupervisedConfig, None, overrides)


def fewshot_sets(
    protocol: str,
    data_root: str | Path,
    splits: str | Path,
    *,
    shots: int | None,
    split: int,
    seed: int = 0,
    train_list: str | None = None,
    classes: str | None = None,
) -> tuple[Split, list]:
    """(the test split, the labelled training videos) of a few-shot run. hmdb51 /
    ucf101: `shots` per class drawn from split `split`'s train side, or a ViFi-CLIP
    style `train_list` used whole. list: `splits` is the test list and `train_list`
    the pool the shots are drawn from (all of it when `shots` is None), both labelled
    by the `classes` file."""
    if protocol == "list":
        if train_list is None or classes is None:
            raise ConfigError("fewshot --protocol list needs --train-list (the pool) and --classes")
        test = read_list(splits, data_root, classes)
        pool = read_list(train_list, data_root, classes)
        return test, pool.items if shots is None else sample_shots(pool, shots, seed)
    test = protocol_splits(protocol, data_root, splits, which=[split])[f"split{split}"]
    if train_list is not None:
        return test, read_list(train_list, data_root, class_names=test.class_names).items
    if shots is None:
        raise ConfigError(f"--shots all takes a --train-list for protocol {protocol}")
    train = protocol_splits(protocol, data_root, splits, which=[split], subset="train")[
        f"split{split}"
    ]
    return test, sample_shots(train, shots, seed)


def run_fewshot(
    protocol: str,
    data_root: str | Path,
    splits_dir: str | Path,
    model: str,
    *,
    clip: str,
    shots: int | None,
    split: int,
    out_dir: Path,
    seed: int = 0,
    train_list: str | None = None,
    classes: str | None = None,
    overrides: list[str] | None = None,
    templates: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    dist: Dist | None = None,
    rehearse: str | Path | None = None,
) -> dict:
    """Fine-tune `model` on the training videos of fewshot_sets (`shots` per class, or
    all: None), with as many of REST run `rehearse`'s videos and pseudo-captions
    beside them when given, and score the test split with CLIP `clip`. Returns the
    evaluation results (also in out_dir/<shots>shot-split<k>/results.json)."""
    test, items = fewshot_sets(
        protocol,
        data_root,
        splits_dir,
        shots=shots,
        split=split,
        seed=seed,
        train_list=train_list,
        classes=classes,
    )
    label = "all" if shots is None else str(shots)
    per_class = shots or shots_per_class(items, test.class_names)  # sets the epochs
    meta = {
        "protocol": protocol,
        "base_model": model,
        "clip": clip,
        "shots": per_class,
        "seed": seed,
        "train_list": train_list,
        "rehearsed_from": None if rehearse is None else str(rehearse),
    }
    return finetune_and_evaluate(
        test,
        items,
        model,
        clip=clip,
        name=f"split{split}",
        run_dir=out_dir / f"{label}shot-split{split}{'-rehearsed' if rehearse else ''}",
        meta=meta,
        seed=seed,
        overrides=overrides,
        templates=templates,
        cache_dir=cache_dir,
        progress=progress,
        dist=dist,
        rehearsal=None if rehearse is None else rehearsal_set(rehearse, len(items), seed),
    )


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
    dist: Dist | None = None,
    also: dict[str, Split] | None = None,
    rehearsal: list[tuple[VideoItem, list[str]]] | None = None,
) -> dict:
    """Fine-tune `model` on labelled `items` (class names of `test` as captions; and on
    the `rehearsal` videos with their own captions, rehearsal_set), then evaluate split
    `name` = `test` (and the splits `also` names, each with its own classes:
    base-to-novel's novel split) with CLIP `clip`; the training run is run_dir/train,
    results in run_dir. Both run in the caller's process group `dist`; without one, in
    a group joined for the two (torchrun's, if any)."""
    rehearsal = rehearsal or []
    cfg = fewshot_config(
        model,
        run_dir / "train",
        shots=meta.get("shots", 1),
        num_videos=len(items) + len(rehearsal),
        seed=seed,
        progress=progress,
        overrides=overrides,
    )
    log.info(
        "%s: %d training videos (+%d rehearsed), %d epochs",
        run_dir.name,
        len(items),
        len(rehearsal),
        cfg.optim.epochs,
    )
    meta = {**meta, "rehearsed_videos": len(rehearsal)}
    tests = {name: test, **(also or {})}
    args = (
        cfg,
        tests,
        items,
        test.class_names,
        clip,
        run_dir,
        meta,
        templates,
        cache_dir or run_dir / "cache",
        progress,
        rehearsal,
    )
    if dist is not None:
        return _finetune_and_evaluate(*args, dist)
    run = cfg.run
    with joined(
        run.device, run.dist_timeout_min, threads=run.threads, workers=cfg.data.num_workers
    ) as dist:
        return _finetune_and_evaluate(*args, dist)


def _finetune_and_evaluate(
    cfg: SupervisedConfig,
    tests: dict[str, Split],
    items: list[VideoItem],
    class_names: list[str],
    clip: str,
    run_dir: Path,
    meta: dict,
    templates: list[str] | None,
    cache: Path,
    progress: bool,
    rehearsal: list[tuple[VideoItem, list[str]]],
    dist: Dist,
) -> dict:
    final = train_on_class_names(cfg, items, class_names, dist=dist, rehearsal=rehearsal)
    if final is None:
        raise ConfigError(
            f"{run_dir}: training stopped early (run.stop_at_step); run again to resume"
        )
    frozen = FrozenClip.from_pretrained(clip).to(dist.device)
    meta = {**meta, "clip": clip, "train_videos": [it.path for it in items]}
    return evaluate_model(
        final,
        tests,
        frozen,
        decoding=Decoding(frames=cfg.data.frames),
        out_dir=run_dir,
        cache_dir=cache,
        meta=meta,
        templates=templates,
        progress=progress,
        dist=dist,
    )


def rehearsal_set(
    rest_run: str | Path, count: int, seed: int = 0
) -> list[tuple[VideoItem, list[str]]]:
    """`count` training videos of the REST run `rest_run` (drawn with `seed`; all of them
    when it has fewer), each with its pseudo-captions from the run's last caption bank:
    what few-shot fine-tuning rehearses beside the labelled shots, so the fine-tuned
    model keeps REST's way of captioning. A video whose file is gone is left out."""
    run = RunDir(rest_run)
    rounds = run.bank_rounds() if run.has_banks() else []
    if not rounds:
        raise ConfigError(f"{rest_run}: not a REST run directory with a caption bank")
    bank = run.bank(rounds[-1])
    videos = [
        (video_item(key), bank.captions(i))
        for i, key in enumerate(bank.keys)
        if bank.captions(i) and os.path.exists(video_item(key).path)
    ]
    if not videos:
        raise DataError(f"{rest_run}: none of the run's training videos can be read from here")
    rng = np.random.default_rng([seed, 11])
    picked = sorted(rng.choice(len(videos), min(count, len(videos)), replace=False).tolist())
    return [videos[i] for i in picked]


def shots_per_class(items: list[VideoItem], class_names: list[str]) -> int:
    """The mean number of training videos per class (what sets few-shot's epochs)."""
    return max(len(items) // max(len(class_names), 1), 1)


def fewshot_summary(
    out: Path, protocol: str, model: str, seed: int, top1: dict[int, dict[int, float]]
) -> str:
    """Write the few-shot table of results folder `out` (RunDir.fewshot) from
    {shots: {split: top-1}} and return it as text
    (one row per shot count: each split, mean and std)."""
    splits = sorted({k for row in top1.values() for k in row})
    lines = [
        f"{'shots':<6}"
        + "".join(f"{'split' + str(k):>9}" for k in splits)
        + f"{'mean':>9}{'std':>7}"
    ]
    summary = {}
    for m, row in top1.items():
        mean, std = mean_std(list(row.values()))
        summary[m] = {"top1": row, "mean": mean, "std": std}
        lines.append(
            f"{m:<6}" + "".join(f"{row[k]:>9.2f}" for k in splits) + f"{mean:>9.2f}{std:>7.2f}"
        )
    RunDir(out).write_fewshot(
        {"protocol": protocol, "model": model, "seed": seed, "shots": summary}
    )
    return "\n".join(lines)
