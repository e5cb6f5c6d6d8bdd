"""What the sub-commands share: their common options (path and number types, the
Decoding of the captioning options), a run config from the command line, and the
exit status. Each package registers its own sub-commands (`genact.training.cli`,
`genact.rest.cli`, `genact.regen.cli`, `genact.evaluation.cli`, `genact.world.cli`,
`genact.app.cli`); `genact.cli` puts them together. Nothing heavy is imported here,
so `--help` is fast."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def user_path(text: str) -> str:
    """argparse `type=` of a path option: `~` and `$VAR` expanded (also when quoted,
    or in `--opt=~/x` form, where the shell leaves them); an unset variable is refused."""
    import argparse

    from genact.config import expand_path
    from genact.errors import ConfigError

    try:
        return expand_path(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def count(low: int = 1, high: int | None = None):
    """argparse `type=` of a whole number in [low, high] (an option with no config
    setting behind it, such as --topk)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} must be >= {low}" + (f" and <= {high}" if high else "")
            )
        return value

    parse.__name__ = "int"
    return parse


def seconds(text: str) -> float:
    """argparse `type=` of a positive duration in seconds (--window, --stride)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive number of seconds")
    return value


def add_decoding_args(p: argparse.ArgumentParser, cache: bool = False) -> None:
    """Options of every command that captions videos; their numbers have the bounds of
    the config settings they stand for (`--beams` those of rest.num_beams)."""
    from genact.config import DataConfig, ModelConfig, RestStepsConfig, RunConfig, option

    p.add_argument(
        "--frames",
        type=option(DataConfig, "frames"),
        default=None,
        help="frames per clip (default: the model's, 8)",
    )
    p.add_argument(
        "--image-size",
        type=option(ModelConfig, "image_size"),
        default=None,
        help="frame side the ViT sees (default: the model's)",
    )
    p.add_argument(
        "--prompt", default=None, help="the text the caption starts from (default: the model's)"
    )
    p.add_argument(
        "--beams",
        type=option(RestStepsConfig, "num_beams"),
        default=3,
        help="beam size for caption search",
    )
    p.add_argument("--max-new-tokens", type=option(RestStepsConfig, "max_new_tokens"), default=30)
    p.add_argument(
        "--decoder",
        choices=["genact", "transformers"],
        default="genact",
        help="caption search: genact's (default) or transformers' generate (the reference)",
    )
    p.add_argument("--batch-size", type=option(RestStepsConfig, "caption_batch"), default=8)
    p.add_argument(
        "--num-workers",
        type=option(DataConfig, "num_workers"),
        default=0,
        help="DataLoader worker processes for decoding",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)"
    )
    p.add_argument(
        "--threads",
        type=option(RunConfig, "threads"),
        default=None,
        help="torch CPU threads (default: $OMP_NUM_THREADS, else cores / (1 + num-workers))",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars, warnings and errors only"
    )
    if cache:
        p.add_argument(
            "--cache-dir",
            type=user_path,
            help="caption / feature cache (default $GENACT_CACHE or ~/.cache/genact)",
        )


def decoding(args: argparse.Namespace, *, one_frame: bool = False) -> Any:
    """The Decoding of a command's options (see add_decoding_args); `one_frame`: the
    image captioner on the middle frame (`eval --method blip-frame`)."""
    from genact.config import Decoding

    return Decoding(
        frames=1 if one_frame else args.frames,
        image_size=args.image_size,
        prompt=args.prompt,
        beams=args.beams,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        workers=args.num_workers,
        decoder=args.decoder,
    )


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Options of the training commands: `CONFIG.yaml key=value ...`, --resume, --quiet."""
    p.add_argument(
        "settings",
        nargs="*",
        metavar="CONFIG.yaml | key=value",
        help="a config file from configs/, then overrides such as optim.lr=1e-5 run.dir=runs/x",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in run.dir (same as run.resume=auto)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars, warnings and errors only"
    )


def run_settings(args: argparse.Namespace, cls: type) -> Any:
    """A run config of dataclass `cls` from `CONFIG.yaml key=value ...` (the file is optional)."""
    from genact.config import load_config
    from genact.errors import ConfigError

    files = [s for s in args.settings if "=" not in s]
    overrides = [s for s in args.settings if "=" in s]
    if len(files) > 1:
        raise ConfigError(f"one config file at most, got {files}")
    if getattr(args, "resume", False):
        overrides.append("run.resume=auto")
    if getattr(args, "quiet", False):
        overrides.append("run.progress=false")
    return load_config(cls, files[0] if files else None, overrides)


def cache_dir(args: argparse.Namespace) -> Path:
    """--cache-dir, else $GENACT_CACHE or ~/.cache/genact."""
    from genact.inference.captions import default_cache_dir

    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def trained(final: Path | None) -> int:
    """The closing line of a training command (on the main process)."""
    if final is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"genact: trained model in {final}", file=sys.stderr)
    return 0


def exit_status(report: Any, done: int) -> int:
    """The closing line about unreadable videos and the exit status: 0 when every
    video was done, 1 when some were unreadable or none could be done (2, a user
    error, is the CLI's own)."""
    if report.skipped:
        print(f"genact: {report.summary()}", file=sys.stderr)
    return 0 if done and not report.skipped else 1
