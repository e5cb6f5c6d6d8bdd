"""What a person reads while genact works: progress bars on a terminal only.

On a terminal a stage shows a tqdm bar; when stderr goes to a file or a pipe (a
cluster job's log) there is no bar, so the log holds one line per stage or epoch
instead of a carriage-return stream."""

from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """tqdm over `iterable` (or a manual bar with `total=`), shown only when `enabled`
    and stderr is a terminal."""
    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), **kwargs)
