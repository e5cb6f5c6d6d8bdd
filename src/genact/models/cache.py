"""An append-only key -> vector store on disk, so nothing is encoded twice.

Layout of the directory: `meta.json` ({dim, dtype}), `vectors.bin` (rows of `dim`
values, raw), `keys.jsonl` (one JSON string per row). Vectors are written before
their keys, so a run killed mid-write leaves at most a tail that is ignored on
the next open.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch


class EmbeddingCache:
    """Vectors of one dimension keyed by strings (caption texts, video paths)."""

    def __init__(self, directory: str | os.PathLike, dim: int, dtype: str = "float16"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_file = self.dir / "meta.json"
        meta = {"dim": dim, "dtype": dtype}
        if meta_file.exists():
            saved = json.loads(meta_file.read_text())
            if saved != meta:
                raise ValueError(f"{self.dir}: cache holds {saved}, asked for {meta}; use another directory")
        else:
            meta_file.write_text(json.dumps(meta))
        self.dim, self.dtype = dim, np.dtype(dtype)
        self._vectors_file, self._keys_file = self.dir / "vectors.bin", self.dir / "keys.jsonl"
        self.rows: dict[str, int] = {}
        keys = self._keys_file.read_text().splitlines() if self._keys_file.exists() else []
        stored = self._vectors_file.stat().st_size // (dim * self.dtype.itemsize) if self._vectors_file.exists() else 0
        complete = min(len(keys), stored)
        for i, line in enumerate(keys[:complete]):
            try:
                self.rows.setdefault(json.loads(line), i)
            except json.JSONDecodeError:  # a key line cut short by a kill: it and what follows go
                complete = i
                break
        size = self._vectors_file.stat().st_size if self._vectors_file.exists() else 0
        if len(keys) != complete or size != complete * dim * self.dtype.itemsize:  # only then write on open
            self._truncate(complete)
        self._matrix: np.ndarray | None = None

    def _truncate(self, rows: int) -> None:
        """Drop a partial tail left by an interrupted write."""
        if self._vectors_file.exists():
            with open(self._vectors_file, "r+b") as f:
                f.truncate(rows * self.dim * self.dtype.itemsize)
        if self._keys_file.exists():
            lines = self._keys_file.read_text().splitlines()[:rows]
            self._keys_file.write_text("".join(ln + "\n" for ln in lines))

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def missing(self, keys: list[str]) -> list[str]:
        """The distinct keys not stored yet, in first-seen order."""
        return [k for k in dict.fromkeys(keys) if k not in self.rows]

    def put(self, keys: list[str], vectors: torch.Tensor) -> None:
        """Append (N, dim) vectors under `keys` (keys already stored are skipped)."""
        arr = vectors.detach().float().cpu().numpy().astype(self.dtype)
        new = [i for i, k in enumerate(keys) if k not in self.rows]
        new = list({keys[i]: i for i in new}.values())  # one row per key
        if not new:
            return
        with open(self._vectors_file, "ab") as f:
            f.write(np.ascontiguousarray(arr[new]).tobytes())
            f.flush()
            os.fsync(f.fileno())
        with open(self._keys_file, "a", encoding="utf-8") as f:
            for i in new:
                self.rows[keys[i]] = len(self.rows)
                f.write(json.dumps(keys[i]) + "\n")
        self._matrix = None

    def matrix(self) -> np.ndarray:
        """All stored vectors, (len, dim), memory-mapped."""
        if self._matrix is None:
            if not self.rows:
                return np.zeros((0, self.dim), self.dtype)
            self._matrix = np.memmap(self._vectors_file, self.dtype, "r", shape=(len(self.rows), self.dim))
        return self._matrix

    def get(self, keys: list[str]) -> torch.Tensor:
        """float32 (N, dim) vectors of `keys` (all must be stored)."""
        idx = [self.rows[k] for k in keys]
        return torch.from_numpy(np.asarray(self.matrix()[idx], dtype=np.float32))
