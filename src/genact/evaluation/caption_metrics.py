"""Caption quality against human references (VaTeX): BLEU-1..4, METEOR, ROUGE-L, CIDEr
with the COCO caption evaluation code (`pip install genact[metrics]`).

METEOR and the PTB tokenizer run Java. Without `java` on PATH the captions are
tokenised by lower-casing and splitting on non-alphanumerics, and METEOR is
left out with a note; BLEU, ROUGE-L and CIDEr need no Java.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from genact.data.datasets import VideoItem
from genact.data.splits import find_video, index_videos, read_text
from genact.errors import DataError
from genact.training.rundir import RunDir


def read_vatex(
    path: str | Path, data_root: str | Path
) -> tuple[list[VideoItem], list[list[str]], list[str]]:
    """VaTeX JSON (`[{"videoID", "enCap": [...]}, ...]`) -> the videos found below
    `data_root` (by file stem = videoID), their reference captions, and the ids
    of videos not found."""
    rows = json.loads(read_text(path, "VaTeX JSON file"))
    if not isinstance(rows, list) or not all("videoID" in r and "enCap" in r for r in rows):
        raise DataError(f"{path}: expected a VaTeX list of {{videoID, enCap}} objects")
    found = index_videos(data_root)
    items, refs, missing = [], [], []
    for r in rows:
        video = find_video(found, r["videoID"], data_root)
        if video is not None:
            items.append(VideoItem(video))
            refs.append([str(c) for c in r["enCap"]])
        else:
            missing.append(r["videoID"])
    return items, refs, missing


def _simple_tokens(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def caption_metrics(
    references: list[list[str]], candidates: list[str], java: bool | None = None
) -> tuple[dict, str]:
    """Corpus scores of `candidates` (one per video) against `references` (several
    per video). Returns ({metric: score}, a note on what was left out)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    java = shutil.which("java") is not None if java is None else java
    gts = {i: refs for i, refs in enumerate(references)}
    res = {i: [c] for i, c in enumerate(candidates)}
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in gts.items()})
        res = tok.tokenize({i: [{"caption": c[0]}] for i, c in res.items()})
    else:
        gts = {i: [_simple_tokens(c) for c in refs] for i, refs in gts.items()}
        res = {i: [_simple_tokens(c[0])] for i, c in res.items()}
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores.update({f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)})
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        scores["METEOR"] = float(Meteor().compute_score(gts, res)[0])
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    note = (
        ""
        if java
        else (
            "java not found on PATH: METEOR left out, captions tokenised by a lower-case word "
            "split instead of the PTB tokenizer"
        )
    )
    return scores, note


def write_caption_metrics(out: Path, result: dict) -> Path:
    """Write `result` (model, scores, note, missing and skipped videos, every caption
    with its references) in results folder `out` (RunDir.caption_metrics)."""
    results = RunDir(out)
    results.write_caption_metrics(json.dumps(result, indent=1) + "\n")
    return results.caption_metrics
