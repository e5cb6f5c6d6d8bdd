"""`genact supervised` and `genact cache-frames`."""

from __future__ import annotations

import argparse
import sys

from genact.commands import add_run_args, run_settings, trained


def cmd_supervised(args: argparse.Namespace) -> int:
    from genact.config import SupervisedConfig
    from genact.training.supervised import run_supervised

    return trained(run_supervised(run_settings(args, SupervisedConfig)))


def cmd_cache_frames(args: argparse.Namespace) -> int:
    from genact.config import RegenConfig, RestConfig, SupervisedConfig
    from genact.data.frame_cache import build_frame_cache
    from genact.distributed import joined
    from genact.errors import ConfigError
    from genact.inference.processing import saved_training_short_side
    from genact.models.video_blip import VideoBlip
    from genact.training.run import training_split

    cfg = run_settings(
        args, next(c for c in (RestConfig, RegenConfig, SupervisedConfig) if c.kind == args.kind)
    )
    if not cfg.data.frame_cache:
        raise ConfigError(
            "say where the cache goes: data.frame_cache=DIR (the runs then read it from there)"
        )
    frames = cfg.data.frames or VideoBlip.saved_settings(cfg.model.blip).get("num_frames", 8)
    side = args.short_side or saved_training_short_side(cfg.model.blip, cfg.model.image_size)
    with joined("cpu", cfg.run.dist_timeout_min) as dist:
        written, report = build_frame_cache(
            training_split(cfg).items,
            cfg.data.frame_cache,
            frames,
            side,
            fmt=args.format,
            quality=args.quality,
            shard_videos=args.shard_videos,
            num_workers=cfg.data.num_workers,
            dist=dist,
            progress=cfg.run.progress and dist.main,
        )
    print(
        f"genact: {written} videos cached in {cfg.data.frame_cache} (T={frames}, short side "
        f"{side}); "
        f"{report.summary()}",
        file=sys.stderr,
    )
    return 0


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "supervised", help="baseline 'GAR + class labels': train on class names as captions"
    )
    add_run_args(p)
    p.set_defaults(func=cmd_supervised)

    p = sub.add_parser(
        "cache-frames", help="decode every video's T frames once into shards that runs then read"
    )
    p.add_argument(
        "kind", choices=["rest", "regen", "supervised"], help="the run whose config follows"
    )
    p.add_argument(
        "settings",
        nargs="*",
        metavar="CONFIG.yaml | key=value",
        help="that run's config and overrides; data.frame_cache=DIR says where the cache goes",
    )
    p.add_argument(
        "--short-side", type=int, help="default: the training resize of the config's model"
    )
    p.add_argument(
        "--format",
        default="jpeg",
        choices=["jpeg", "raw"],
        help="jpeg (small) or raw uint8 (fastest)",
    )
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--shard-videos", type=int, default=1000, help="videos per shard file")
    # the run config's data and model sections are used
    p.set_defaults(func=cmd_cache_frames, resume=False)
