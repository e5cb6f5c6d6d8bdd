"""Readers that turn each dataset's split files into VideoItems and class names.

Split numbers are 1-based everywhere (HMDB-51 / UCF-101 split 1..3, Kinetics-600
zero-shot split 1..3). Videos listed but not found on disk are dropped and
reported once, as a count with examples; they never stop a run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from genact.data.datasets import VideoItem
from genact.data.video import VIDEO_EXTENSIONS
from genact.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Items of one split, the class names their labels index, and what was missing."""

    items: list[VideoItem]
    class_names: list[str]
    missing: list[str] = field(default_factory=list)


def readable_name(raw: str) -> str:
    """'ApplyEyeMakeup' -> 'apply eye makeup', 'brush_hair' -> 'brush hair'."""
    s = raw.replace("_", " ")
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", s)
    return " ".join(s.lower().split())


def _files_below(root: str | os.PathLike, suffixes: tuple[str, ...]) -> list[str]:
    """Every regular file below `root` whose name ends in one of `suffixes` (any case),
    following links. Each real folder is walked once (a link back to a parent folder
    ends there instead of looping), and every file name in it counts, so hard links
    and symbolic links to one file (deduplicated storage, link farms) are each found
    under their own name. Only those files are stat'ed."""
    seen_dirs: set[tuple[int, int]] = set()
    out = []
    for dirpath, dirnames, files in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for f in sorted(files):
            if not f.lower().endswith(suffixes):
                continue
            path = os.path.join(dirpath, f)
            try:
                fst = os.stat(path)
            except OSError:  # a dangling link
                continue
            if stat.S_ISREG(fst.st_mode):
                out.append(path)
    return out


def index_videos(root: str | os.PathLike) -> dict[str, list[str]]:
    """Map file stem -> paths of the video files below `root` with that stem (one walk)."""
    found: dict[str, list[str]] = {}
    for path in _files_below(root, VIDEO_EXTENSIONS):
        found.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
    return found


def find_video(index: dict[str, list[str]], name: str, root: str | os.PathLike) -> str | None:
    """The one video below `root` that `name` (a file name, stem or relative path)
    stands for; None when there is none. A name that fits several videos (the same
    file name in different folders) is an error that lists them."""
    candidates = index.get(Path(name).stem, [])
    if len(candidates) > 1:
        tail = os.sep + os.path.normpath(name)
        candidates = [c for c in candidates if os.path.normpath(c).endswith(tail)] or candidates
    if len(candidates) > 1:
        raise DataError(
            f"{name}: {len(candidates)} videos below {root} have this name "
            f"({', '.join(candidates[:4])}"
            f"{', ...' if len(candidates) > 4 else ''}); list them by path relative to the data "
            "root"
        )
    return candidates[0] if candidates else None


def _report_missing(missing: list[str], total: int, source: str) -> None:
    if missing and len(missing) < total:  # none found is the caller's error, in one line
        log.warning(
            "%s: %d of %d listed videos not found on disk and skipped (e.g. %s)",
            source,
            len(missing),
            total,
            ", ".join(missing[:3]),
        )


def _by_stem(
    entries: list[tuple[str, int | None]],
    root: str | os.PathLike,
    class_names: list[str],
    source: str,
) -> Split:
    """Resolve (file name, label) entries by stem under `root`; report the missing."""
    index = index_videos(root)
    items, missing = [], []
    for name, label in entries:
        path = find_video(index, name, root)
        if path is None:
            missing.append(name)
        else:
            items.append(VideoItem(path, label))
    _report_missing(missing, len(entries), source)
    return Split(items, class_names, missing)


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A split, list or class file's text (UTF-8, a byte-order mark dropped); anything
    unreadable is one DataError line naming the path."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a {what}") from None
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte {e.start}); save the {what} as UTF-8"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e.strerror})") from None


def _lines(path: str | os.PathLike, what: str = "file") -> list[str]:
    return [ln.strip() for ln in read_text(path, what).splitlines() if ln.strip()]


def _fields(line: str) -> list[str]:
    """A class-file line's fields: CSV (quotes and all, `0,"ball, bouncing"`) when it
    has a comma, else split at the first white space (`0 ball bouncing`)."""
    if "," in line:
        parts = next(csv.reader([line], skipinitialspace=True))
        return (
            [parts[0], ",".join(parts[1:])]
            if len(parts) > 2 and parts[0].strip().isdigit()
            else parts
        )
    return line.split(None, 1)


def _id_name(line: str) -> tuple[int, str] | None:
    parts = _fields(line)
    if len(parts) == 2 and parts[0].strip().isdigit():
        return int(parts[0]), parts[1].strip()
    return None


def _read_classes(path: str | os.PathLike) -> tuple[list[str], int]:
    """(readable names in id order, first id) of a class file: one name per line, or
    `id,name` lines (also `id name`) with an optional header line."""
    rows = _lines(path, "class file")
    if not rows:
        raise DataError(f"{path}: no class names (the class file is empty)")
    pairs = [_id_name(r) for r in rows]
    if all(p is not None for p in pairs[1:]) and (pairs[0] is not None or len(rows) > 1):
        if pairs[0] is None:  # a header only if it looks like one: two column names
            if len(_fields(rows[0])) != 2:
                raise DataError(
                    f"{path}: line 1 {rows[0]!r} has no class id, unlike the lines after it"
                )
            pairs = pairs[1:]
        ids = sorted(i for i, _ in pairs)
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise DataError(f"{path}: class ids are not consecutive")
        names, first = [readable_name(n) for _, n in sorted(pairs)], ids[0]
    else:
        names, first = [readable_name(ln) for ln in rows], 0
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path}: class name(s) listed more than once: {', '.join(repeated)}")
    return names, first


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names from an `id,name` CSV (header optional; also `id name`) or one
    name per line; in id order, made readable."""
    return _read_classes(path)[0]


def read_list(
    list_file: str | os.PathLike,
    root: str | os.PathLike = "",
    class_file: str | os.PathLike | None = None,
    class_names: list[str] | None = None,
) -> Split:
    """A generic `path label` list (space or comma separated; label = last field,
    an integer id or a class name) as mmaction2, X-CLIP and ViFi-CLIP use. Paths
    are relative to `root`; a listed path that is not there is looked for by its file
    name below `root` (ViFi-CLIP's lists give bare names where HMDB-51 / UCF-101 ship
    class folders). Integer ids count from the class file's first id, or
    index `class_names` (a protocol's classes) when there is no class file."""
    entries = []
    for ln in _lines(list_file):
        parts = [p.strip() for p in ln.split(",")] if "," in ln else ln.split()
        if len(parts) < 2:
            raise DataError(f"{list_file}: line {ln!r} is not 'path label'")
        entries.append((parts[0], parts[-1]))
    if class_file is not None:
        class_names, first_id = _read_classes(class_file)
    elif class_names is not None:
        first_id = 0
    else:
        class_names, first_id = (
            sorted({readable_name(lbl) for _, lbl in entries if not lbl.isdigit()}),
            0,
        )
    lookup = {n: i for i, n in enumerate(class_names)}
    items, missing = [], []
    index: dict[str, list[str]] | None = None
    for rel, lbl in entries:
        label = int(lbl) - first_id if lbl.isdigit() else lookup.get(readable_name(lbl), -1)
        if not 0 <= label < len(class_names):
            raise DataError(
                f"{list_file}: label {lbl!r} of {rel} is not one of the {len(class_names)} classes"
            )
        path = os.path.join(root, rel)
        if not os.path.isfile(path):  # e.g. a bare file name where the videos sit in class folders
            index = index_videos(root or ".") if index is None else index
            path = find_video(index, rel, root)
        if path is None:
            missing.append(rel)
        else:
            items.append(VideoItem(path, label))
    _report_missing(missing, len(entries), str(list_file))
    return Split(items, class_names, missing)


def read_kinetics_csv(
    csv_file: str | os.PathLike, root: str | os.PathLike, subset: str | None = None
) -> Split:
    """Kinetics `label,youtube_id,time_start,time_end,split[,is_cc]` CSV.

    Looks for trimmed clips `<id>_<start:06d>_<end:06d>.<ext>` anywhere below `root`
    (flat or in class folders); a full video `<id>.<ext>` is used with the
    [time_start, time_end) window instead. `subset` filters the split column.
    """
    text = read_text(csv_file, "Kinetics CSV file")
    rows = [
        r for r in csv.DictReader(io.StringIO(text)) if subset is None or r.get("split") == subset
    ]
    class_names = sorted({readable_name(r["label"]) for r in rows})
    lookup = {n: i for i, n in enumerate(class_names)}
    index = index_videos(root)
    items, missing = [], []
    for r in rows:
        start, end = int(float(r["time_start"])), int(float(r["time_end"]))
        label = lookup[readable_name(r["label"])]
        clip = f"{r['youtube_id']}_{start:06d}_{end:06d}"
        trimmed, full = find_video(index, clip, root), find_video(index, r["youtube_id"], root)
        if trimmed is not None:
            items.append(VideoItem(trimmed, label))
        elif full is not None:
            items.append(VideoItem(full, label, float(start), float(end)))
        else:
            missing.append(clip)
    _report_missing(missing, len(rows), str(csv_file))
    return Split(items, class_names, missing)


def read_hmdb51(
    splits_dir: str | os.PathLike, root: str | os.PathLike, split: int = 1, subset: str = "test"
) -> Split:
    """HMDB-51 official splits: `<class>_test_split<k>.txt`, lines `<video>.avi <0|1|2>`
    (1 = train, 2 = test). Classes sorted by folder name."""
    wanted = {"train": "1", "test": "2"}[subset]
    files = sorted(Path(splits_dir).glob(f"*_test_split{split}.txt"))
    if not files:
        raise DataError(f"{splits_dir}: no HMDB-51 files '*_test_split{split}.txt'")
    raw = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    entries = []
    for label, f in enumerate(files):
        for ln in _lines(f):
            name, tag = ln.split()
            if tag == wanted:
                entries.append((name, label))
    return _by_stem(
        entries, root, [readable_name(c) for c in raw], f"HMDB-51 split {split} {subset}"
    )


def read_ucf101(
    splits_dir: str | os.PathLike, root: str | os.PathLike, split: int = 1, subset: str = "test"
) -> Split:
    """UCF-101: `classInd.txt` (`1 ApplyEyeMakeup`), `trainlist0<k>.txt` / `testlist0<k>.txt`
    (`Class/v_...avi [id]`); the label comes from the folder part of each line."""
    raw = [ln.split()[1] for ln in _lines(Path(splits_dir) / "classInd.txt")]
    lookup = {c.lower(): i for i, c in enumerate(raw)}
    entries = []
    for ln in _lines(Path(splits_dir) / f"{subset}list0{split}.txt"):
        rel = ln.split()[0]
        folder = rel.split("/")[0].lower()
        if folder not in lookup:
            raise DataError(
                f"{subset}list0{split}.txt: class folder {folder!r} not in classInd.txt"
            )
        entries.append((rel, lookup[folder]))
    return _by_stem(
        entries, root, [readable_name(c) for c in raw], f"UCF-101 split {split} {subset}"
    )


def _k600_names(splits_dir: Path) -> list[str]:
    defn = json.loads(read_text(splits_dir / "classes620_label_defn.json"))
    if isinstance(defn, dict):
        defn = [defn[k] for k in sorted(defn, key=int)]
    return [readable_name(d if isinstance(d, str) else d.get("word") or d["name"]) for d in defn]


def read_k600_zs(
    splits_dir: str | os.PathLike,
    root: str | os.PathLike,
    split: int = 1,
    generalized: bool = False,
) -> Split:
    """Kinetics-600 zero-shot split in the ER-ZSAR files (Chen & Huang, ICCV 2021).

    `classes620_label_defn.json`: the 620 classes (400 Kinetics-400 + 220 new, as
    objects with a `word`), `tst_class_idxs.json`: three lists of 160 indices into
    them, `tst_video_metas.jsonl`: `{videoname, nframes, label}` with label an index
    into the 620. Test videos are those of split k's 160 classes; they are scored
    against those 160 names (1-vs-160) or, with `generalized`, all 620 (1-vs-620).
    """
    splits_dir = Path(splits_dir)
    names = _k600_names(splits_dir)
    test_classes = json.loads(read_text(splits_dir / "tst_class_idxs.json"))[split - 1]
    remap = {c: i for i, c in enumerate(test_classes)}
    entries = []
    for ln in _lines(splits_dir / "tst_video_metas.jsonl"):
        meta = json.loads(ln)
        if meta["label"] in remap:
            entries.append(
                (meta["videoname"], meta["label"] if generalized else remap[meta["label"]])
            )
    class_names = names if generalized else [names[c] for c in test_classes]
    kind = "1-vs-620" if generalized else "1-vs-160"
    return _by_stem(entries, root, class_names, f"Kinetics-600 zero-shot split {split} ({kind})")


def read_folder(root: str | os.PathLike) -> Split:
    """Every video file below `root`, unlabelled, in sorted order."""
    paths = sorted(p for group in index_videos(root).values() for p in group)
    if not paths:
        raise DataError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return Split([VideoItem(p) for p in paths], [])


def load_split(
    format: str,
    root: str,
    list_file: str | None = None,
    classes: str | None = None,
    subset: str | None = None,
    split: int = 1,
    limit: int | None = None,
) -> Split:
    """The split a run config names (see `genact.config.DataConfig`); `limit` keeps
    the first N videos."""
    if format == "folder":
        out = read_folder(root)
    elif list_file is None:
        raise ConfigError(f"data.format={format} needs data.list (the split file or folder)")
    elif format == "list":
        out = read_list(list_file, root, classes)
    elif format == "kinetics":
        out = read_kinetics_csv(list_file, root, subset)
    elif format == "hmdb51":
        out = read_hmdb51(list_file, root, split, subset or "train")
    elif format == "ucf101":
        out = read_ucf101(list_file, root, split, subset or "train")
    else:
        raise ConfigError(
            f"data.format={format!r}: expected folder, list, kinetics, hmdb51 or ucf101"
        )
    if limit is not None:
        out = Split(out.items[:limit], out.class_names, out.missing)
    if not out.items:
        raise DataError(f"{list_file or root}: the split has no videos")
    return out
