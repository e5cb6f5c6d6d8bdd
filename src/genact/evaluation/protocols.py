"""The evaluation protocols of REST / ReGen (SPEC §5): which test videos, which class
names, how many splits.

| protocol | splits | classes | `splits` argument |
| --- | --- | --- | --- |
| hmdb51   | 3 official, test videos | 51 | folder of `<class>_test_split<k>.txt` |
| ucf101   | 3 official, test videos | 101 | folder with `classInd.txt`, `testlist0<k>.txt` |
| k600-zs  | 3 ER-ZSAR splits | 160 novel (1-vs-160) | folder of the ER-ZSAR files |
| k600-gzs | 3 ER-ZSAR splits | 620 = 400 + 220 (1-vs-620) | same |
| k400-val | 1 | 400 | the Kinetics-400 CSV (`split` column `val`, or a validate.csv) |
| list     | 1 | the class file's | a `path label` list; `classes` = class file |
"""

from __future__ import annotations

from pathlib import Path

from genact.data.splits import (
    Split,
    read_hmdb51,
    read_k600_zs,
    read_kinetics_csv,
    read_list,
    read_ucf101,
)
from genact.errors import ConfigError

PROTOCOLS = ("hmdb51", "ucf101", "k600-zs", "k600-gzs", "k400-val", "list")


def protocol_splits(
    protocol: str,
    data_root: str,
    splits: str,
    classes: str | None = None,
    which: list[int] | None = None,
    subset: str = "test",
) -> dict[str, Split]:
    """{split name: Split} of a protocol; `which` picks split numbers (1-based,
    default all three); `subset` = train gives the train side (few-shot sampling)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    numbers = which or [1, 2, 3]
    if protocol == "hmdb51":
        return {f"split{k}": read_hmdb51(splits, data_root, k, subset) for k in numbers}
    if protocol == "ucf101":
        return {f"split{k}": read_ucf101(splits, data_root, k, subset) for k in numbers}
    if protocol in ("k600-zs", "k600-gzs"):
        if subset != "test":
            raise ConfigError(f"{protocol} has test splits only")
        return {
            f"split{k}": read_k600_zs(splits, data_root, k, protocol == "k600-gzs") for k in numbers
        }
    if protocol == "k400-val":
        csv_rows = Path(splits).read_text().splitlines()[1:]
        with_val = any(
            r.rstrip().split(",")[4:5] == ["val"] for r in csv_rows[:1000] if r.count(",") >= 4
        )
        return {"val": read_kinetics_csv(splits, data_root, "val" if with_val else None)}
    if classes is None:
        raise ConfigError("protocol list needs a class file (--classes)")
    return {Path(splits).stem: read_list(splits, data_root, classes)}
