"""Model cards: the README.md of every model directory a genact run writes, in the
Hugging Face model-card format (YAML front matter, then what trained it, how to load
it, its limitations), and the evaluation results `genact eval --update-card` adds.
Publishing: `hf upload ORG/NAME runs/rest_k400/final .` (docs/rest.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from genact import __version__
from genact.io import atomic_write_text

MODEL_CARD = "README.md"
RESULTS_START, RESULTS_END = "<!-- genact eval results -->", "<!-- genact eval results end -->"

METHODS = {
    "rest": "REST: self-training on unlabelled videos, pseudo-captions diversified by retrieval",
    "regen": "ReGen: RL fine-tuning with class (CLS-R), video (CLIP-R) and grammar rewards",
    "supervised": "training on class names as captions ('GAR + class labels', or few-shot)",
}


def _settings(cfg: Any) -> list[tuple[str, Any]]:
    """The settings a reader of the card needs, per kind of run."""
    o, d, m = cfg.optim, cfg.data, cfg.model
    rows = [
        ("frames per clip (T)", d.frames),
        ("prompt", m.prompt),
        ("frame side", m.image_size),
        ("temporal adapters", m.use_adapters),
        ("epochs", o.epochs),
        ("global batch", o.global_batch),
        ("learning rate", f"{o.lr} -> {o.min_lr} (cosine)"),
        ("weight decay", o.weight_decay),
        ("label smoothing", o.label_smoothing),
        ("seed", cfg.run.seed),
    ]
    if cfg.kind == "rest":
        r = cfg.rest
        rows += [
            ("neighbours H", r.neighbours),
            ("captions kept K", r.keep),
            ("epochs per round R", r.epochs_per_round),
            ("retrieval rounds N_I", r.retrieval_rounds),
            ("initial prompts", ", ".join(r.prompts)),
        ]
    if cfg.kind == "regen":
        g = cfg.regen
        rows += [
            ("samples per video", g.samples),
            ("reward weights (CLS-R, CLIP-R, GRAMMAR-R)", f"{g.w_cls}, {g.w_clip}, {g.w_grammar}"),
            ("baseline", g.baseline),
            ("grammar model", g.grammar_model),
        ]
    return rows


def model_card(cfg: Any, *, videos: int, trained: int) -> str:
    """The card of a model trained by run config `cfg` (resolved) on `trained` of
    `videos` videos."""
    front = {
        "library_name": "genact",
        "base_model": cfg.model.blip,
        "pipeline_tag": "image-to-text",
        "tags": ["genact", cfg.kind, "video-captioning", "zero-shot-action-recognition", "blip"],
    }
    settings = "\n".join(f"| {k} | {v} |" for k, v in _settings(cfg))
    data = cfg.data.list or cfg.data.root
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# {Path(cfg.run.dir).name}

A video captioner made by genact {__version__}: BLIP with temporal adapters, trained by
{METHODS[cfg.kind]}. A video's caption is mapped to any list of class names by CLIP
text similarity (CLIP-TAM), so it classifies open-world.

## Training

- method: `genact {cfg.kind}`, starting from `{cfg.model.blip}`
- training videos: {trained} of the {videos} in `{data}` ({cfg.data.format} format)

| setting | value |
|---|---|
{settings}

## Use

```python
from genact import VideoClassifier

clf = VideoClassifier.from_pretrained("THIS_DIRECTORY", clip="{cfg.model.clip}")
labels = ["playing guitar", "riding a bike"]
clf("clip.mp4", candidate_labels=labels, template="a video of a person {{}}.")
```

or `genact classify clip.mp4 --model THIS_DIRECTORY --clip {cfg.model.clip} --classes classes.txt`.
As a plain `transformers.BlipForConditionalGeneration.from_pretrained("THIS_DIRECTORY")`
it is an image captioner of single frames: the temporal adapters
(`adapters.safetensors`) and the frame count and prompt (`genact_video.json`) are
genact's.

## Limitations

It describes what its training videos taught it: actions far from them get generic
captions, and a class list is only as good as its names are distinct in CLIP's text
space. It was not evaluated for uses beyond action recognition and captioning.

{RESULTS_START}
{RESULTS_END}
"""


def write_model_card(model_dir: Path, cfg: Any, *, videos: int, trained: int) -> None:
    atomic_write_text(Path(model_dir) / MODEL_CARD, model_card(cfg, videos=videos, trained=trained))


def add_results(model_dir: str | Path, res: dict) -> Path:
    """Add (or replace) the row of an evaluation (`results.json`'s contents: protocol,
    method, top-1 / top-5 mean ± std) in the card's results table; a model without a
    card gets a minimal one."""
    card = Path(model_dir) / MODEL_CARD
    text = (
        card.read_text(encoding="utf-8")
        if card.exists()
        else f"---\nlibrary_name: genact\n---\n\n# {Path(model_dir).name}\n\n"
    )
    if RESULTS_START not in text:
        text = text.rstrip() + f"\n\n{RESULTS_START}\n{RESULTS_END}\n"
    head, rest = text.split(RESULTS_START, 1)
    block, tail = rest.split(RESULTS_END, 1)
    rows = [
        ln
        for ln in block.strip().splitlines()
        if ln.startswith("| ") and not ln.startswith("| protocol")
    ]
    (m1, s1), (m5, s5) = res["mean_std"]["top1"], res["mean_std"]["top5"]
    key = f"| {res.get('protocol')} | {res.get('method')} |"
    row = f"{key} {len(res['splits'])} | {m1:.2f} ± {s1:.2f} | {m5:.2f} ± {s5:.2f} |"
    rows = [r for r in rows if not r.startswith(key)] + [row]
    table = "\n".join(
        [
            "## Evaluation results (`genact eval`)",
            "",
            "| protocol | method | splits | top-1 | top-5 |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    atomic_write_text(card, f"{head}{RESULTS_START}\n{table}\n{RESULTS_END}{tail}")
    return card


def front_matter(card_text: str) -> dict:
    """The YAML front matter of a card's text ({} when it has none)."""
    m = re.match(r"^---\n(.*?)\n---\n", card_text, re.S)
    return yaml.safe_load(m.group(1)) if m else {}
