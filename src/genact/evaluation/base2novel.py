"""Base-to-novel generalization (ViFi-CLIP, CVPR 2023; then Open-VCLIP, FROSTER,
EZ-CLIP, TC-CLIP): fine-tune on 16 videos per *base* class, then classify the base
classes' test videos among the base names and the novel classes' test videos among
the novel names; report base, novel and their harmonic mean (HM), for each of the
three published samplings (s1-s3) and as mean ± std. The model as given, before any
fine-tuning, is scored on the same test sets (the zero-shot row), so a user sees
what fine-tuning on base names cost the novel classes.

The split folder holds ViFi-CLIP's files as published: `fs_base_s{1,2,3}_train.txt`,
`base_val.txt`, `novel_val.txt` (`path label` lines; labels index the matching label
file) and `*_base_labels.csv` / `*_novel_labels.csv` (`id,name` with a header; names
such as `ApplyEyeMakeup` or `brush_hair` are made readable).
"""

from __future__ import annotations

import logging
from pathlib import Path

from genact.config import Decoding
from genact.data.splits import Split, read_list
from genact.distributed import Dist
from genact.errors import DataError
from genact.evaluation.clip_tam import mean_std
from genact.evaluation.evaluate import evaluate_model
from genact.evaluation.fewshot import finetune_and_evaluate, shots_per_class
from genact.models.clip import FrozenClip
from genact.training.rundir import RunDir

log = logging.getLogger(__name__)
SAMPLINGS = (1, 2, 3)


def _labels(splits_dir: Path, kind: str) -> Path:
    found = sorted(splits_dir.glob(f"*_{kind}_labels.csv"))
    if len(found) != 1:
        raise DataError(
            f"{splits_dir}: expected one *_{kind}_labels.csv label file, found {len(found)}"
        )
    return found[0]


def base2novel_shots(data_root: str | Path, splits_dir: str | Path, sampling: int) -> list:
    """The base training shots of `sampling` (1-3), labelled in the base classes."""
    base = _labels(Path(splits_dir), "base")
    return read_list(Path(splits_dir) / f"fs_base_s{sampling}_train.txt", data_root, base).items


def base2novel_tests(data_root: str | Path, splits_dir: str | Path) -> tuple[Split, Split]:
    """The base test split (base names) and the novel test split (novel names)."""
    splits_dir = Path(splits_dir)
    base, novel = _labels(splits_dir, "base"), _labels(splits_dir, "novel")
    return read_list(splits_dir / "base_val.txt", data_root, base), read_list(
        splits_dir / "novel_val.txt", data_root, novel
    )


def base2novel_sets(
    data_root: str | Path, splits_dir: str | Path, sampling: int
) -> tuple[list, Split, Split]:
    """(the base training shots of `sampling`, the base test split, the novel test split)."""
    return base2novel_shots(data_root, splits_dir, sampling), *base2novel_tests(
        data_root, splits_dir
    )


def harmonic_mean(base: float, novel: float) -> float:
    """HM = 2 B N / (B + N), 0 when both are 0."""
    return 2 * base * novel / (base + novel) if base + novel else 0.0


def _row(res: dict) -> dict[str, float]:
    b, n = res["splits"]["base"]["top1"], res["splits"]["novel"]["top1"]
    return {"base": b, "novel": n, "hm": harmonic_mean(b, n)}


def run_base2novel(
    data_root: str | Path,
    splits_dir: str | Path,
    model: str,
    *,
    clip: str,
    out_dir: Path,
    samplings: tuple[int, ...] = SAMPLINGS,
    seed: int = 0,
    overrides: list[str] | None = None,
    templates: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    dist: Dist = Dist(),
) -> dict:
    """The zero-shot row and one fine-tuning per sampling (genact's few-shot recipe on
    the base shots); returns {"zero_shot": {base, novel, hm}, "samplings": {s: {...}},
    "mean_std": {base, novel, hm: [mean, std]}}, also written to out_dir/fewshot.json."""
    base_test, novel_test = base2novel_tests(data_root, splits_dir)  # read once, for every row
    cache = cache_dir or out_dir / "cache"
    frozen = FrozenClip.from_pretrained(clip).to(dist.device)
    zero = evaluate_model(
        model,
        {"base": base_test, "novel": novel_test},
        frozen,
        decoding=Decoding(),
        out_dir=out_dir / "zero-shot",
        cache_dir=cache,
        meta={"protocol": "base2novel", "clip": clip},
        templates=templates,
        progress=progress,
        dist=dist,
    )
    rows = {}
    for s in samplings:
        shots = base2novel_shots(data_root, splits_dir, s)
        meta = {
            "protocol": "base2novel",
            "base_model": model,
            "sampling": s,
            "shots": shots_per_class(shots, base_test.class_names),
        }
        res = finetune_and_evaluate(
            base_test,
            shots,
            model,
            clip=clip,
            name="base",
            run_dir=out_dir / f"s{s}",
            meta=meta,
            seed=seed,
            overrides=overrides,
            templates=templates,
            cache_dir=cache,
            progress=progress,
            dist=dist,
            also={"novel": novel_test},
        )
        rows[s] = _row(res)
        log.info("sampling s%d: base %.2f, novel %.2f, HM %.2f", s, *rows[s].values())
    summary = {k: list(mean_std([r[k] for r in rows.values()])) for k in ("base", "novel", "hm")}
    out = {
        "protocol": "base2novel",
        "model": model,
        "clip": clip,
        "zero_shot": _row(zero),
        "samplings": rows,
        "mean_std": summary,
    }
    if dist.main:
        RunDir(out_dir).write_fewshot(out)
    return out


def base2novel_table(out: dict) -> str:
    """The printed table: the zero-shot row, each sampling, and mean ± std."""
    lines = [f"{'':<12}{'base':>9}{'novel':>9}{'HM':>9}"]
    z = out["zero_shot"]
    lines.append(f"{'zero-shot':<12}{z['base']:>9.2f}{z['novel']:>9.2f}{z['hm']:>9.2f}")
    for s, r in out["samplings"].items():
        lines.append(f"{f's{s}':<12}{r['base']:>9.2f}{r['novel']:>9.2f}{r['hm']:>9.2f}")
    if len(out["samplings"]) > 1:
        m = out["mean_std"]
        lines.append(
            f"{'mean ± std':<12}"
            + "".join(f"{m[k][0]:>9.2f}" for k in ("base", "novel", "hm"))
            + "   (± "
            + " / ± ".join(f"{m[k][1]:.2f}" for k in ("base", "novel", "hm"))
            + ")"
        )
    return "\n".join(lines)
