"""`genact regen`."""

from __future__ import annotations

import argparse

from genact.commands import add_run_args, run_settings, trained


def cmd_regen(args: argparse.Namespace) -> int:
    from genact.config import RegenConfig
    from genact.regen.run import run_regen

    return trained(run_regen(run_settings(args, RegenConfig)))


def add_regen_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "regen", help="ReGen: RL fine-tuning with class, CLIP and grammar rewards (torchrun too)"
    )
    add_run_args(p)
    p.set_defaults(func=cmd_regen)
