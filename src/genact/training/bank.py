"""The caption bank W: each video's current pseudo-captions with their provenance."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from genact.errors import DataError
from genact.io import atomic_write_text

INIT, RETRIEVED, GENERATED = "init", "retrieved", "generated"


def pad_ragged(lists: list[list[int]], fill: int = -1) -> torch.Tensor:
    """Ragged lists of ids -> (len, max_len) int64 padded with `fill`."""
    width = max((len(x) for x in lists), default=0)
    out = torch.full((len(lists), max(width, 1)), fill, dtype=torch.long)
    for i, x in enumerate(lists):
        out[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
    return out


@dataclass
class Caption:
    """One pseudo-caption of a video: an id into the bank's distinct texts."""

    text_id: int
    score: float = math.nan  # video-text cosine at the last retrieval
    round: int = 0  # the REST round that produced it
    source: str = INIT  # init / retrieved / generated


class CaptionBank:
    """Distinct caption texts (so identical texts share one id and one CLIP feature)
    and, per video, its list of Captions."""

    def __init__(self, video_keys: list[str]):
        self.keys = list(video_keys)
        self.texts: list[str] = []
        self.text_ids: dict[str, int] = {}
        self.entries: list[list[Caption]] = [[] for _ in self.keys]

    def intern(self, text: str) -> int:
        """Id of `text` in the table of distinct texts (added if new)."""
        text = " ".join(text.split())
        if text not in self.text_ids:
            self.text_ids[text] = len(self.texts)
            self.texts.append(text)
        return self.text_ids[text]

    def add(self, video: int, text: str, round: int, source: str) -> None:
        """Append `text` to video's list unless it is there already."""
        tid = self.intern(text)
        if all(c.text_id != tid for c in self.entries[video]):
            self.entries[video].append(Caption(tid, math.nan, round, source))

    def captions(self, video: int) -> list[str]:
        return [self.texts[c.text_id] for c in self.entries[video]]

    def padded(self) -> torch.Tensor:
        """(N, C) text ids of every video's captions, -1 padded."""
        return pad_ragged([[c.text_id for c in e] for e in self.entries])

    def apply_retrieval(self, ids: torch.Tensor, scores: torch.Tensor, round: int) -> int:
        """Replace each W_i by its retrieved top K (ids / scores (N, K), -1 padded).

        A caption the video already had keeps its provenance; one taken from a
        neighbour becomes `retrieved` in this round. Returns how many videos' caption
        sets changed.
        """
        changed = 0
        for i, (row_ids, row_scores) in enumerate(zip(ids.tolist(), scores.tolist())):
            own = {c.text_id: c for c in self.entries[i]}
            new = []
            for tid, s in zip(row_ids, row_scores):
                if tid < 0:
                    continue
                old = own.get(tid)
                new.append(
                    Caption(tid, s, old.round, old.source)
                    if old
                    else Caption(tid, s, round, RETRIEVED)
                )
            if new:  # a video whose features are missing keeps what it has
                changed += {c.text_id for c in new} != set(own)
                self.entries[i] = new
        return changed

    # ---- persistence ----------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """JSON lines, one per video: {"video", "captions": [{text, score, round, source}]}."""
        lines = []
        for key, entries in zip(self.keys, self.entries):
            caps = [
                {
                    "text": self.texts[c.text_id],
                    "score": None if math.isnan(c.score) else round(c.score, 6),
                    "round": c.round,
                    "source": c.source,
                }
                for c in entries
            ]
            lines.append(json.dumps({"video": key, "captions": caps}))
        atomic_write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CaptionBank":
        """The bank saved at `path`; a bank that is gone or unreadable (deleted or cut
        short under a running job) is one DataError line that names it."""
        try:
            rows = [
                json.loads(ln)
                for ln in Path(path).read_text(encoding="utf-8").splitlines()
                if ln.strip()
            ]
        except FileNotFoundError:
            raise DataError(
                f"{path}: the caption bank is gone (deleted while the run was using it?); "
                "restore it, or start the run again in a new run.dir"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(
                f"{path}: the caption bank cannot be read ({e}); restore it, or start the run "
                "again "
                "in a new run.dir"
            ) from None
        bank = cls([r["video"] for r in rows])
        for i, r in enumerate(rows):
            for c in r["captions"]:
                score = math.nan if c["score"] is None else c["score"]
                bank.entries[i].append(
                    Caption(bank.intern(c["text"]), score, c["round"], c["source"])
                )
        return bank
