"""Typed settings: dataclasses filled from YAML files and `key=value` overrides,
checked once when they load, then frozen.

    cfg = load_config(RestConfig, "configs/rest_k400.yaml", ["optim.lr=1e-5", "data.frames=16"])

Nested dataclasses are addressed with dots. Values are parsed as YAML
(`k=3`, `x=1e-5`, `flag=true`, `layers=[0,2]`, `name=null`) and checked against the
field's type, its allowed values (`Literal[...]`) and its bounds (`bounded(...)`:
counts are positive), so a typo, a wrong type or an impossible number stops the
run before it starts, in one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from genact.errors import ConfigError
from genact.io import atomic_write_text

T = TypeVar("T")


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if isinstance(value, bool):  # YAML reads no / off as False
            value = next(
                (
                    w
                    for w in (("yes", "on", "true") if value else ("no", "off", "false"))
                    if w in typing.get_args(tp)
                ),
                value,
            )
        if value not in typing.get_args(tp):
            raise ConfigError(
                f"{where}: {value!r} is not one of {', '.join(map(str, typing.get_args(tp)))}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return origin(_check(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads "3e-5" (no dot) as a string
            number = float(value)
        except ValueError:
            number = None
        if number is not None and not math.isfinite(number):
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        if number is not None:
            return number
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if (
        isinstance(tp, type)
        and isinstance(value, tp)
        and not (tp is int and isinstance(value, bool))
    ):
        return value
    raise ConfigError(f"{where}: {value!r} is not of type {getattr(tp, '__name__', tp)}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a (nested) mapping; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {sorted(unknown)}; valid: {sorted(names)}"
        )
    kwargs = {k: _check(v, hints[k], f"{where}.{k}".lstrip(".")) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs and kwargs[f.name] is not None:
            name = f"{where}.{f.name}".lstrip(".")
            if f.metadata.get("path"):
                kwargs[f.name] = expand_path(kwargs[f.name], name)
            _check_field(kwargs[f.name], f, name)
    return cls(**kwargs)


def _check_field(value: Any, f: dataclasses.Field, where: str) -> None:
    """A value against its field's declared length and bounds (each item's, for a list)."""
    length = f.metadata.get("length")
    if length is not None and len(value) != length:
        raise ConfigError(f"{where}={value!r}: must hold {length} values")
    if "bounds" in f.metadata:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            _check_bounds(v, f.metadata["bounds"], where)


def bounded(
    default: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> Any:
    """A field whose value (when not None) must lie in [low, high]; `open_low` /
    `open_high` exclude the end. `bounded(8, 1)` is a positive count."""
    return field(default=default, metadata={"bounds": (low, high, open_low, open_high)})


def path_field(default: str | None) -> Any:
    """A path setting: `~` and `$VAR` / `${VAR}` are expanded when the config loads."""
    return field(default=default, metadata={"path": True})


_UNSET_VAR = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_path(text: str, where: str = "path") -> str:
    """`text` with `~` and environment variables expanded, as a shell would; a
    variable that is not set is a ConfigError (never a folder named `$RUNS`)."""
    out = os.path.expandvars(os.path.expanduser(text))
    unset = _UNSET_VAR.search(out)
    if unset:
        raise ConfigError(
            f"{where} {text!r}: environment variable {unset.group(1).strip('{}')} is not set"
        )
    return out


def bounded_list(
    default: list,
    low: float | None = None,
    high: float | None = None,
    *,
    length: int | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> Any:
    """A list field whose items must lie in [low, high] (see `bounded`), of `length`
    items when given."""
    return field(
        default_factory=lambda: list(default),
        metadata={"bounds": (low, high, open_low, open_high), "length": length},
    )


def option(cls: type, name: str) -> Any:
    """An argparse `type=` for a command-line number with the bounds of config field
    `cls.name`, so a command's option and a config's setting refuse the same values:
    `--beams 0` is refused like `rest.num_beams=0`."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    hint = typing.get_type_hints(cls)[name]
    kind = float if float in (typing.get_args(hint) or (hint,)) else int

    def parse(text: str) -> Any:
        import argparse

        try:
            value = _check(yaml.safe_load(text), kind, name)
            _check_field(value, f, name)
        except (ConfigError, yaml.YAMLError) as e:
            raise argparse.ArgumentTypeError(
                str(e).replace(f"{name}=", "", 1).replace(f"{name}: ", "", 1)
            ) from None
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def check_template(template: str, where: str = "template") -> str:
    """A class-name prompt template with exactly one `{}` (where the class name goes)
    and no other braces; anything else is a ConfigError (a template without `{}`
    would give every class the same text, hence the same score)."""
    if (
        not isinstance(template, str)
        or template.count("{}") != 1
        or template.replace("{}", "").count("{")
        or template.replace("{}", "").count("}")
    ):
        raise ConfigError(
            f"{where} {template!r}: needs exactly one {{}} where the class name goes, "
            "e.g. 'a video of a person {}.'"
        )
    return template


def _check_bounds(value: Any, bounds: tuple, where: str) -> None:
    low, high, open_low, open_high = bounds
    too_low = low is not None and (value <= low if open_low else value < low)
    too_high = high is not None and (value >= high if open_high else value > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if open_low else '>='} {low}"
        hi = "" if high is None else f"{'<' if open_high else '<='} {high}"
        raise ConfigError(f"{where}={value!r}: must be {' and '.join(x for x in (lo, hi) if x)}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for YAML / JSON dumps)."""
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted `key=value` pairs in a nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
    return data


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None
) -> T:
    """Defaults of `cls`, updated by the YAML file at `path`, then by `overrides`."""
    data = to_dict(cls())
    if path is not None:
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        _merge(data, loaded)
    return from_dict(cls, apply_overrides(data, list(overrides or [])))


def read_yaml(path: str | Path) -> Any:
    """A YAML file's contents; a missing file or a syntax error is one ConfigError
    line with the file, line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path}: cannot read the config file ({getattr(e, 'strerror', None) or e})"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML (what a run used, for the record and for resume),
    atomically: a full disk or a kill leaves the old file or none, never a part."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


class Section:
    """Base of every config dataclass: once `freeze` has been called on a config (when
    a run has resolved what it takes from its model), setting a field is an error, so a
    stage can never read a value that is only valid later."""

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(
                f"{type(self).__name__}.{name}: the config is frozen once the run has resolved it; "
                "use dataclasses.replace before"
            )
        object.__setattr__(self, name, value)


def freeze(cfg: Any) -> Any:
    """Freeze config `cfg` and all its sections (see Section); returns it."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            freeze(value)
    object.__setattr__(cfg, "_frozen", True)
    return cfg


def replace(cfg: Any, changes: dict[str, Any]) -> Any:
    """A copy of config `cfg` with dotted-name `changes` (`{"data.frames": 8}`), not frozen."""
    data = to_dict(cfg)
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value
    return from_dict(type(cfg), data)
