"""The demo's results and the papers' effects, from one or more seeds' `demo.json`:
top-1 per method, and per effect the mean paired difference with its 95% bootstrap
interval, the McNemar p per seed and a verdict; as text for the terminal and as
Markdown for docs/world.md and the README
(`genact demo --full --markdown docs/world.md --markdown README.md`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from genact.errors import ConfigError
from genact.evaluation.base2novel import harmonic_mean
from genact.evaluation.clip_tam import mean_std
from genact.evaluation.stats import Effect, paired_effect
from genact.io import atomic_write_text

ROW_NAMES = {
    "clip": "CLIP zero-shot (video feature vs class names)",
    "frame-captioner": "frame captioner + CLIP-TAM ('BLIP')",
    "rest-h1": "REST without retrieval (H = 1)",
    "rest": "REST",
    "rest-no-adapters": "REST without temporal adapters",
    "regen": "ReGen (from REST)",
    "supervised": "supervised on seen class names ('GAR + class labels')",
    "2-shot": "REST + 2-shot fine-tuning",
    "8-shot": "REST + 8-shot fine-tuning",
    "rest-b2n": "REST + base-to-novel fine-tuning (16 shots per seen class)",
    "regen-b2n": "ReGen + base-to-novel fine-tuning (16 shots per seen class)",
}

# (effect as the papers state it, better row, worse row, split)
EFFECTS = (
    ("REST > frame captioner", "rest", "frame-captioner", "unseen"),
    ("REST > REST without retrieval (H = 1)", "rest", "rest-h1", "unseen"),
    ("REST > REST without temporal adapters", "rest", "rest-no-adapters", "unseen"),
    ("ReGen > REST", "regen", "rest", "unseen"),
    # CLS-R rewards the seen class names: what does it cost the words they lack?
    ("ReGen > REST, novel words (1-vs-{n})", "regen", "rest", "novel"),
    ("REST + 2-shot > REST (zero-shot)", "2-shot", "rest", "unseen"),
    ("REST + 8-shot > REST (zero-shot)", "8-shot", "rest", "unseen"),
    ("8-shot > 2-shot", "8-shot", "2-shot", "unseen"),
    (
        "REST > supervised on seen classes, generalized (1-vs-{n})",
        "rest",
        "supervised",
        "generalized",
    ),
    ("REST > supervised on seen classes, novel words (1-vs-{n})", "rest", "supervised", "novel"),
    ("REST: base fine-tuning > none, on base classes", "rest-b2n", "rest", "base"),
    ("REST: base fine-tuning > none, on novel classes", "rest-b2n", "rest", "unseen"),
    ("ReGen: base fine-tuning > none, on base classes", "regen-b2n", "regen", "base"),
    ("ReGen: base fine-tuning > none, on novel classes", "regen-b2n", "regen", "unseen"),
)
SPLITS = {"unseen": "unseen", "generalized": "generalized", "novel": "novel words", "base": "seen"}
# class names per split of the default world, for a demo.json that does not record them
DEFAULT_CLASS_COUNTS = {"unseen": 12, "generalized": 36, "base": 24}


def class_count(demo: dict, split: str) -> int:
    """How many class names the split's videos were scored against."""
    return demo.get("split_classes", DEFAULT_CLASS_COUNTS).get(split, 0)


def split_labels(demos: list[dict]) -> dict[str, str]:
    """{split: label, e.g. "generalized (1-vs-36)"} for the splits some row has."""
    ran = {s for d in demos for row in d["rows"].values() for s in row}
    return {
        s: f"{name} (1-vs-{class_count(demos[0], s)})" for s, name in SPLITS.items() if s in ran
    }


def outcomes(demo: dict, row: str, split: str) -> np.ndarray | None:
    """Right (True) / wrong per test video of one seed's demo.json, in the split's
    `split_videos` order (None when the row or split was not run); a skipped video
    counts as wrong."""
    got = demo["rows"].get(row, {}).get(split)
    return None if got is None else np.array([c == "1" for c in got["right"]], bool)


def effects(demos: list[dict], draws: int = 10_000) -> list[tuple[str, str, Effect]]:
    """(effect, split, Effect) for every effect whose two rows ran on every seed."""
    out = []
    for label, better, worse, split in EFFECTS:
        a = [outcomes(d, better, split) for d in demos]
        b = [outcomes(d, worse, split) for d in demos]
        if all(x is not None for x in a + b):
            effect = paired_effect(a, b, draws=draws)
            if len(demos) > 1:  # and per seed, on its own test videos
                effect.seed_verdicts = [
                    paired_effect([x], [y], draws=draws).verdict for x, y in zip(a, b)
                ]
            out.append((label.format(n=class_count(demos[0], split)), split, effect))
    return out


def _top1(demos: list[dict], row: str, split: str) -> list[float]:
    return [d["rows"][row][split]["top1"] for d in demos if split in d["rows"].get(row, {})]


def split_sizes(demo: dict) -> str:
    """How many test videos each split has, e.g. "unseen 480, novel 120"."""
    videos = demo.get("split_videos", {"unseen": demo["test_videos"]})
    shown = {"unseen": "unseen classes", "novel": "novel-word classes", "base": "seen classes"}
    return ", ".join(f"{shown[s]} {len(v)}" for s, v in videos.items() if s in shown)


# base-to-novel: (model as trained, fine-tuned on base names)
BASE2NOVEL = (("rest", "rest-b2n"), ("regen", "regen-b2n"))


def base2novel_rows(demos: list[dict]) -> list[tuple[str, list[float], list[float], list[float]]]:
    """(row, base top-1s, novel top-1s, HMs), one value per seed, for every row of
    BASE2NOVEL that has both sides on every seed; novel is the unseen classes among
    the unseen names."""
    out = []
    for pair in BASE2NOVEL:
        for r in pair:
            base, novel = _top1(demos, r, "base"), _top1(demos, r, "unseen")
            if len(base) == len(novel) == len(demos):
                hm = [harmonic_mean(b, n) for b, n in zip(base, novel)]
                out.append((r, base, novel, hm))
    return out


def _cell(values: list[float], sep: str = "+-") -> str:
    if not values:
        return ""
    m, sd = mean_std(values)
    return f"{m:.1f} {sep} {sd:.1f}" if len(values) > 1 else f"{m:.1f}"


def results_text(demos: list[dict], seeds: list[int]) -> str:
    """Top-1 per method and split (mean +- std over seeds when there are several), then
    base-to-novel's base / novel / HM."""
    rows = [r for r in ROW_NAMES if any(r in d["rows"] for d in demos)]
    plural = "s" if len(seeds) > 1 else ""
    head = f"top-1 on the world's test videos ({split_sizes(demos[0])}; seed{plural} {seeds})"
    labels = split_labels(demos)
    lines = [head, f"{'method':<60}" + "".join(f"{labels[s]:>24}" for s in labels)]
    for r in rows:
        cells = [_cell(_top1(demos, r, s)) for s in labels]
        lines.append(f"{ROW_NAMES[r]:<60}" + "".join(f"{c:>24}" for c in cells))
    b2n = base2novel_rows(demos)
    if b2n:
        lines += [
            "",
            "base-to-novel (base: seen classes among seen names; novel: unseen among unseen)",
        ]
        lines.append(f"{'':<60}" + "".join(f"{h:>16}" for h in ("base", "novel", "HM")))
        for r, base, novel, hm in b2n:
            lines.append(
                f"{ROW_NAMES[r]:<60}" + "".join(f"{_cell(v):>16}" for v in (base, novel, hm))
            )
    return "\n".join(lines)


def report_tables(
    demos: list[dict], found: list[tuple[str, str, Effect]]
) -> list[tuple[str, list[str], list]]:
    """The demo's results (top-1 per method and setting, mean ± std over seeds when
    there are several) and the effects with their intervals, as (title, header, rows)
    tables for the HTML report (genact.evaluation.report.build_report)."""
    labels = split_labels(demos)
    rows = [
        [label, *(_cell(_top1(demos, name, split), "±") or "-" for split in labels)]
        for name, label in ROW_NAMES.items()
        if any(name in d["rows"] for d in demos)
    ]
    effect_rows = [
        [
            label,
            f"{e.mean:+.1f}",
            f"[{e.low:+.1f}, {e.high:+.1f}]",
            e.verdict,
            ", ".join(f"{p:.2g}" for p in e.p_values),
        ]
        for label, _, e in found
    ]
    b2n = [
        [ROW_NAMES[r], *(_cell(v, "±") for v in values)] for r, *values in base2novel_rows(demos)
    ]
    return [
        (
            f"The demo: top-1 on the world's test videos ({len(demos)} seed(s))",
            ["method", *labels.values()],
            rows,
        ),
        *(
            [
                (
                    "Base-to-novel: base, novel and their harmonic mean",
                    ["model", "base", "novel", "HM"],
                    b2n,
                )
            ]
            if b2n
            else []
        ),
        (
            "The papers' effects in the world",
            ["effect", "difference (points)", "95% interval", "verdict", "McNemar p per seed"],
            effect_rows,
        ),
    ]


def effects_text(found: list[tuple[str, str, Effect]]) -> str:
    lines = [
        "the papers' effects: top-1 difference in points, 95% paired bootstrap interval, McNemar "
        "p per seed",
        f"{'effect':<58}{'difference':>11}{'95% interval':>18}  {'verdict':<14} McNemar p",
    ]
    for label, _, e in found:
        ps = " ".join(f"{p:.2g}" for p in e.p_values)
        lines.append(
            f"{label:<58}{e.mean:>+11.1f}{f'[{e.low:+.1f}, {e.high:+.1f}]':>18}  {e.verdict:<14} "
            f"{ps}" + (f"   (per seed: {e.seed_count()})" if e.seed_verdicts else "")
        )
    return "\n".join(lines)


def markdown(
    demos: list[dict], seeds: list[int], found: list[tuple[str, str, Effect]], command: str
) -> dict[str, str]:
    """{"results": ..., "effects": ...}: the two tables as Markdown, each saying the
    command that wrote it."""
    rows = [r for r in ROW_NAMES if any(r in d["rows"] for d in demos)]
    sizes = split_sizes(demos[0])
    made = f"Written by `{command}`: {len(seeds)} seeds; test videos per seed: {sizes}."
    seed_cols = " | ".join(f"seed {s}" for s in seeds)
    results = [
        made,
        "",
        f"| method | split | {seed_cols} | mean ± std |",
        "| --- | --- | " + "--- | " * len(seeds) + "--- |",
    ]
    labels = split_labels(demos)
    for r in rows:
        for s in labels:
            v = _top1(demos, r, s)
            if len(v) == len(demos):
                m, sd = mean_std(v)
                results.append(
                    f"| {ROW_NAMES[r]} | {labels[s]} | "
                    + " | ".join(f"{x:.1f}" for x in v)
                    + f" | {m:.1f} ± {sd:.1f} |"
                )
    b2n = base2novel_rows(demos)
    if b2n:
        results += [
            "",
            "Base-to-novel: base is the seen classes' test videos among the 24 seen names, novel "
            "the unseen classes' among the 12 unseen names; HM their harmonic mean.",
            "",
            "| model | base | novel | HM |",
            "| --- | --- | --- | --- |",
        ]
        for r, *values in b2n:
            results.append(
                f"| {ROW_NAMES[r]} | " + " | ".join(_cell(v, "±") for v in values) + " |"
            )
    effects_md = [
        made,
        "",
        "| effect (papers) | difference (points) | 95% interval | verdict | per seed | verdict per "
        "seed | McNemar p per seed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, _, e in found:
        per_seed = ", ".join(f"{d:+.1f}" for d in e.per_seed)
        ps = ", ".join(f"{p:.2g}" for p in e.p_values)
        effects_md.append(
            f"| {label} | {e.mean:+.1f} | [{e.low:+.1f}, {e.high:+.1f}] | **{e.verdict}** | "
            f"{per_seed} | {e.seed_count()} | {ps} |"
        )
    return {"results": "\n".join(results), "effects": "\n".join(effects_md)}


def markers(block: str) -> tuple[str, str]:
    return (
        f"<!-- genact demo --markdown: {block} -->",
        f"<!-- genact demo --markdown: {block} end -->",
    )


BLOCKS = ("results", "effects")


def marked_blocks(path: Path) -> list[str]:
    """The blocks (of BLOCKS) whose two marker lines `path` has; a missing file, or one
    with no markers, is a ConfigError (checked before a --full run starts)."""
    if not path.is_file():
        raise ConfigError(f"--markdown {path}: no such file")
    text = path.read_text()
    found = [b for b in BLOCKS if all(m in text for m in markers(b))]
    if not found:
        raise ConfigError(
            f"--markdown {path}: no '{markers('results')[0]}' or '{markers('effects')[0]}' "
            "marker lines to write between"
        )
    return found


def write_markdown(path: Path, blocks: dict[str, str]) -> list[str]:
    """Replace, in `path`, the text between each block's markers (see `markers`) with
    that block; returns the blocks written (see marked_blocks)."""
    written = marked_blocks(path)
    text = path.read_text()
    for name in written:
        begin, end = markers(name)
        pattern = re.escape(begin) + ".*?" + re.escape(end)
        text = re.sub(pattern, lambda _: f"{begin}\n{blocks[name]}\n{end}", text, flags=re.S)
    atomic_write_text(path, text)
    return written
