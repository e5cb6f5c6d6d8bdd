"""`genact demo` and `genact world`: the miniature world's commands."""

from __future__ import annotations

import argparse
import sys

from genact.commands import count, user_path


def cmd_world(args) -> int:
    from genact.world.pretrain import pretrain_world
    from genact.world.world import WorldConfig, build_world

    if args.action == "build":
        cfg = WorldConfig(seed=args.seed, novel_words=not args.without_novel_words)
        print(f"genact: world in {build_world(args.out, cfg)}", file=sys.stderr)
        return 0
    sizes = {
        k: v
        for k, v in (("clips", args.clips), ("steps", args.steps), ("more_steps", args.more_steps))
        if v is not None
    }
    blip, clip = pretrain_world(args.out, seed=args.seed, first=args.first_round, **sizes)
    print(f"genact: captioner in {blip}, CLIP in {clip}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from genact.errors import ConfigError
    from genact.world.demo import run_demo, run_full
    from genact.world.demo_runs import DemoConfig

    if args.seeds is None:
        args.seeds = [0, 1, 2, 3, 4] if args.full else [0]
    if args.markdown and not args.full:
        raise ConfigError("--markdown writes the tables of a --full run; add --full")
    if args.full or len(args.seeds) > 1:  # several seeds: each run, then combined
        out = args.out or "demo-full"
        print(
            run_full(
                out,
                tuple(args.seeds),
                progress=not args.quiet,
                markdown_to=args.markdown or [],
                workers=args.jobs,
            )
        )
        print(
            f"genact: everything is in {out}/ (one folder per seed, each with its report)"
            + (f"; tables written into {', '.join(args.markdown)}" if args.markdown else ""),
            file=sys.stderr,
        )
        return 0
    out = args.out or "demo"
    print(run_demo(out, DemoConfig(seed=args.seeds[0]), progress=not args.quiet, workers=args.jobs))
    print(f"genact: everything is in {out}/ (report: {out}/report/report.html)", file=sys.stderr)
    return 0


def add_world_commands(sub: argparse._SubParsersAction) -> None:
    """Add `demo` and `world` to the `genact` parser's subcommands."""
    p = sub.add_parser("demo", help="the whole method on the miniature world, offline, in minutes")
    p.add_argument(
        "--out",
        type=user_path,
        help="folder for the world, runs, results and report (default demo/, demo-full/)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="the demo once per seed; mean +- std and the effects' intervals over all seeds",
    )
    p.add_argument(
        "--seeds",
        type=count(0),
        nargs="+",
        default=None,
        help="world seeds; several are each run, then combined (default 0; 0 1 2 3 4 with --full)",
    )
    p.add_argument(
        "--markdown",
        metavar="FILE",
        action="append",
        help="with --full: write the results and effects tables into FILE between its "
        "'genact demo --markdown' markers (docs/world.md, README.md); repeatable",
    )
    p.add_argument(
        "--jobs",
        type=count(1),
        default=None,
        help="training runs at once, one CPU thread each (default 2 where there are 2 cores; "
        "the figures do not depend on it)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "world", help="the miniature world: build its videos, or pretrain its tiny BLIP and CLIP"
    )
    p.add_argument("action", choices=["build", "pretrain"])
    p.add_argument(
        "--out",
        type=user_path,
        required=True,
        help="folder for the world (build) or the two models (pretrain)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--clips",
        type=int,
        default=None,
        help="pretraining clips, one frame of each used (default 8640, what the shipped weights "
        "used)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="first-round optimizer steps per model, batch 64 (default 1500)",
    )
    p.add_argument(
        "--more-steps",
        type=int,
        default=None,
        help="second-round steps, on frames with the novel-word classes too (default 300; "
        "0: the first round alone, world version 2's models)",
    )
    p.add_argument(
        "--first-round",
        type=user_path,
        default=None,
        help="pretrain: a folder with first-round models to continue from (the shipped "
        "weights/round-1 reproduce the shipped models); default: train the first round too",
    )
    p.add_argument(
        "--without-novel-words",
        action="store_true",
        help="build: the world without the novel-word classes (as world version 2)",
    )
    p.set_defaults(func=cmd_world)
