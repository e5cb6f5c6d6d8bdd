"""`genact rest`."""

from __future__ import annotations

import argparse

from genact.commands import add_run_args, run_settings, trained


def cmd_rest(args: argparse.Namespace) -> int:
    from genact.config import RestConfig
    from genact.rest.run import run_rest

    return trained(run_rest(run_settings(args, RestConfig)))


def add_rest_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rest",
        help="REST: self-train a video captioner on unlabelled videos (torchrun for many GPUs)",
    )
    add_run_args(p)
    p.set_defaults(func=cmd_rest)
