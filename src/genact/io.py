"""Crash-safe writes: atomic files and directories (a killed process leaves the old
version or the new one, never half of either) and append-only JSON-lines records."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from genact.errors import GenactError


class DiskFullError(GenactError):
    """No space (or quota) left while writing; what was being written is not kept."""


def _no_space(e: BaseException | None) -> OSError | None:
    """The ENOSPC / EDQUOT OSError behind `e`, if any (torch.save wraps the one its
    file's write raised in a RuntimeError)."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


@contextmanager
def disk_full_is_an_error(path: str | os.PathLike) -> Iterator[None]:
    """Turn ENOSPC / EDQUOT raised inside the block into a DiskFullError naming `path`."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        full = _no_space(e)
        if full is not None:
            raise DiskFullError(
                f"{path}: no space left on the device ({full.strerror}); nothing half-written is "
                "kept, "
                "free some space and run the command again"
            ) from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file (0o666) or directory (0o777) made by mkstemp / mkdtemp (0o600 /
    0o700) the mode the user's umask asks for, as open() and mkdir() would: on a
    shared machine others can then read the results and use the model."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` in one rename when the block ends
    (after an fsync); a kill or a full disk (one DiskFullError line) leaves the old
    file or none, never a part. The file gets the user's umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        # f.name says which file it stands for
        with disk_full_is_an_error(path), open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        public_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (see atomic_file)."""
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `path` in one rename, it
    and all it holds with the user's umask (as mkdir and open would give them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        with disk_full_is_an_error(path):
            yield tmp
        for dirpath, _, files in os.walk(tmp):  # libraries write some files 0600 (safetensors)
            public_mode(dirpath, directory=True)
            for name in files:
                public_mode(os.path.join(dirpath, name))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class ShardLog:
    """Append-only JSON-lines records, one file per process: `<dir>/<name>.rank<r>.jsonl`."""

    def __init__(self, directory: str | Path, name: str, rank: int):
        self.dir, self.name = Path(directory), name
        self.file = self.dir / f"{name}.rank{rank}.jsonl"

    def append(self, records: list[dict]) -> None:
        """Append `records`; a line that a kill cut short is ended first, so it
        cannot swallow the first new record."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with disk_full_is_an_error(self.file), open(self.file, "a+b") as f:
            if f.tell() and os.pread(f.fileno(), 1, f.tell() - 1) != b"\n":
                f.write(b"\n")
            f.write("".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def read_all(self) -> list[dict]:
        """Every process's records; a line cut short by a kill is ignored."""
        return [
            r
            for path in sorted(self.dir.glob(f"{self.name}.rank*.jsonl"))
            for r in read_json_lines(path)
        ]


def read_json_lines(path: str | Path) -> list:
    """The records of a JSON-lines file ([] when there is none); a line cut short by
    a kill is ignored."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
