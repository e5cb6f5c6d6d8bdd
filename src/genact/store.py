"""An append-only key -> vector store on disk, so nothing is encoded twice, shared
safely by any number of processes.

Layout of the directory: `meta.json` ({dim, dtype}), `vectors.bin` (rows of `dim`
values, raw), `keys.jsonl` (one JSON string per line; line i names row i) and
`.lock`. Writers take the lock (an OS file lock, released by the kernel when a
process dies), catch up with what others appended, then append vectors before
their keys. Readers take no lock: a key counts only once its line is complete and
its vector row is on disk, so a reader never sees a half-written record.

A directory damaged by a kill or by older, unlocked writers still opens: a partial
tail is ignored (and cut off by the next writer), a duplicate key keeps its first
row, a key line without a vector row and a line that is not a JSON string are
never used; one warning says what was dropped.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from genact.errors import ConfigError
from genact.io import atomic_write_text, disk_full_is_an_error

log = logging.getLogger(__name__)


class EmbeddingCache:
    """Vectors of one dimension keyed by strings (caption texts, video paths)."""

    def __init__(self, directory: str | os.PathLike, dim: int, dtype: str = "float16"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / ".lock"))
        meta_file, meta = self.dir / "meta.json", {"dim": dim, "dtype": dtype}
        if not meta_file.exists():
            with self._lock:
                if not meta_file.exists():
                    atomic_write_text(meta_file, json.dumps(meta))
        saved = json.loads(meta_file.read_text())
        if saved != meta:
            raise ConfigError(
                f"{self.dir}: cache holds {saved}, asked for {meta}; use another directory"
            )
        self.dim, self.dtype = dim, np.dtype(dtype)
        self._row_bytes = dim * self.dtype.itemsize
        self._vectors_file, self._keys_file = self.dir / "vectors.bin", self.dir / "keys.jsonl"
        self.rows: dict[str, int] = {}
        self._lines = 0  # key lines taken in (rows they name), duplicates and bad lines included
        self._offset = 0  # bytes of keys.jsonl taken in
        self._matrix: np.ndarray | None = None
        self._warned = False
        self._refresh()

    def _stored_rows(self) -> int:
        return (
            self._vectors_file.stat().st_size // self._row_bytes
            if self._vectors_file.exists()
            else 0
        )

    def _refresh(self) -> None:
        """Take in the complete key lines appended since the last look whose vector
        rows are on disk; warn once about damaged ones."""
        if not self._keys_file.exists():
            return
        with open(self._keys_file, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        stored = self._stored_rows()  # after the keys: a vector is written before its key
        duplicates = bad = 0
        pos = 0
        while self._lines < stored:
            end = data.find(b"\n", pos)
            if end < 0:
                break  # a line still being written, or cut short by a kill
            try:
                key = json.loads(data[pos:end])
            except (json.JSONDecodeError, UnicodeDecodeError):
                key = None
            if not isinstance(key, str):
                bad += 1
            elif key in self.rows:
                duplicates += 1
            else:
                self.rows[key] = self._lines
            self._lines += 1
            pos = end + 1
        self._offset += pos
        unbacked = data.count(b"\n", pos)  # complete key lines past the stored vectors
        if (duplicates or bad or unbacked) and not self._warned:
            self._warned = True
            log.warning(
                "%s: damaged cache; ignoring %d duplicate key(s), %d unreadable key line(s) and "
                "%d key(s) "
                "without a vector (the next write cuts the last off)",
                self.dir,
                duplicates,
                bad,
                unbacked,
            )
        self._matrix = None

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def missing(self, keys: list[str]) -> list[str]:
        """The distinct keys not stored yet (by any process), in first-seen order."""
        self._refresh()
        return [k for k in dict.fromkeys(keys) if k not in self.rows]

    def put(self, keys: list[str], vectors: torch.Tensor) -> None:
        """Append (N, dim) vectors under `keys`; keys already stored, by this or any
        other process, are skipped."""
        arr = vectors.detach().float().cpu().numpy().astype(self.dtype)
        with self._lock:
            self._refresh()
            # one row per key
            new = list({k: i for i, k in enumerate(keys) if k not in self.rows}.values())
            if not new:
                return
            self._cut_tails()
            with disk_full_is_an_error(self.dir), open(self._vectors_file, "ab") as f:
                f.write(np.ascontiguousarray(arr[new]).tobytes())
                f.flush()
                os.fsync(f.fileno())
            with disk_full_is_an_error(self.dir), open(self._keys_file, "ab") as f:
                f.write("".join(json.dumps(keys[i]) + "\n" for i in new).encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            self._refresh()

    def _cut_tails(self) -> None:
        """Under the lock: drop what a killed writer left past the last complete record."""
        for file, size in (
            (self._vectors_file, self._lines * self._row_bytes),
            (self._keys_file, self._offset),
        ):
            if file.exists() and file.stat().st_size != size:
                with open(file, "r+b") as f:
                    f.truncate(size)

    def matrix(self) -> np.ndarray:
        """Every stored row, (rows, dim), memory-mapped; self.rows maps a key to its row."""
        if self._matrix is None:
            if not self._lines:
                return np.zeros((0, self.dim), self.dtype)
            self._matrix = np.memmap(
                self._vectors_file, self.dtype, "r", shape=(self._lines, self.dim)
            )
        return self._matrix

    def get(self, keys: list[str]) -> torch.Tensor:
        """float32 (N, dim) vectors of `keys` (all must be stored, here or by another process)."""
        if any(k not in self.rows for k in keys):
            self._refresh()
        idx = [self.rows[k] for k in keys]
        return torch.from_numpy(np.asarray(self.matrix()[idx], dtype=np.float32))
