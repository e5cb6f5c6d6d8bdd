"""The `genact` command line (also `python -m genact`, so `torchrun -m genact` works)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

from genact.commands import (
    add_decoding_args,
    cache_dir,
    count,
    decoding,
    exit_status,
    seconds,
    user_path,
)
from genact.distributed import setup_logging
from genact.errors import GenactError

log = logging.getLogger("genact")


def video_items(paths: list[str]) -> list:
    """Video files given on the command line; a directory stands for every video below
    it, unless it is named like a video (then it is an unreadable video, skipped and
    counted like any other)."""
    from genact.data import VideoItem, read_folder
    from genact.data.video import VIDEO_EXTENSIONS
    from genact.errors import DataError

    items = []
    for p in paths:
        if not os.path.lexists(p):
            raise DataError(f"{p}: no such video file or folder")
        folder = Path(p).is_dir() and Path(p).suffix.lower() not in VIDEO_EXTENSIONS
        items.extend(read_folder(p).items if folder else [VideoItem(p)])
    return items


def _add_video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "videos",
        type=user_path,
        nargs="+",
        metavar="VIDEO",
        help="video files or folders of videos",
    )
    p.add_argument(
        "--model", type=user_path, required=True, help="VideoBlip / BLIP: hub id or local directory"
    )
    add_decoding_args(p, cache=True)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--csv", action="store_true", help="print CSV: a line per video or window")
    p.add_argument(
        "--window",
        type=seconds,
        default=None,
        help="caption a long video in windows of this many seconds (each window decoded alone)",
    )
    p.add_argument(
        "--stride",
        type=seconds,
        default=None,
        help="seconds between the windows' starts (default: the window, so they tile)",
    )


def _classifier(args, dist, clip: str | None = None):
    """The VideoClassifier of the command line's model and decoding options, with the
    command's cache (so a rerun after a kill reuses what was saved, every 64 videos);
    under torchrun each process captions its share."""
    from genact.classifier import VideoClassifier

    d = decoding(args)
    return VideoClassifier.from_pretrained(
        args.model,
        clip,
        frames=d.frames,
        beams=d.beams,
        max_new_tokens=d.max_new_tokens,
        prompt=d.prompt,
        image_size=d.image_size,
        batch_size=d.batch_size,
        num_workers=d.workers,
        decoder=d.decoder,
        cache_dir=cache_dir(args),
        progress=not args.quiet,
        dist=dist,
    )


def _report(rows: list[dict]):
    """The unreadable videos of a classifier's rows, as a SkipReport for the closing line."""
    from genact.data import SkipReport

    return SkipReport([(r["video"], r["error"]) for r in rows if "error" in r])


def cmd_caption(args) -> int:
    from genact.distributed import joined

    # a path that is not there stops the command before any model loads
    paths = [it.path for it in video_items(args.videos)]
    with joined(args.device, threads=args.threads, workers=args.num_workers) as dist:
        rows = _classifier(args, dist).caption(paths, window=args.window, stride=args.stride)
    if not dist.main:
        return 0
    return _print_rows(rows, args)


def cmd_classify(args) -> int:
    from genact.data import read_class_file
    from genact.distributed import joined

    class_names = read_class_file(args.classes)
    paths = [it.path for it in video_items(args.videos)]
    with joined(args.device, threads=args.threads, workers=args.num_workers) as dist:
        clf = _classifier(args, dist, args.clip)
        rows = clf(
            paths,
            class_names,
            args.template,
            top_k=args.topk,
            window=args.window,
            stride=args.stride,
        )
    if not dist.main:
        return 0
    return _print_rows(rows, args)


def _shown(r: dict) -> dict:
    """A caption (of a video or a segment) as printed: its top classes as {class, score}."""
    out = {k: r[k] for k in ("video", "start", "end", "caption") if k in r}
    if "labels" in r:
        out["top"] = [{"class": c, "score": round(v, 4)} for c, v in zip(r["labels"], r["scores"])]
    return out


def _print_rows(rows: list[dict], args) -> int:
    """Print the classifier's rows as JSON, CSV (one line per video or segment: video,
    start, end, caption, and the best class and its cosine) or text; the exit status."""
    done = [r for r in rows if "error" not in r]
    shown = [
        {
            **_shown(r),
            **({"segments": [_shown(s) for s in r["segments"]]} if "segments" in r else {}),
        }
        for r in done
    ]
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    elif args.csv:
        writer = csv.writer(sys.stdout)
        top = any("top" in r for r in shown) or any(
            "top" in s for r in shown for s in r.get("segments", [])
        )
        writer.writerow(["video", "start", "end", "caption"] + (["class", "score"] if top else []))
        for r in shown:
            for seg in r.get("segments") or [r]:
                best = seg["top"][0] if seg.get("top") else None
                writer.writerow(
                    [r["video"], seg.get("start", ""), seg.get("end", ""), seg["caption"]]
                    + ([best["class"], best["score"]] if best else [])
                )
    else:
        for r in shown:
            for seg in r.get("segments") or [r]:
                when = f" [{seg['start']:.1f}-{seg['end']:.1f} s]" if "start" in seg else ""
                if "top" not in seg:
                    print(f"{r['video']}{when}\t{seg['caption']}")
                    continue
                print(f"{r['video']}{when}\n  caption: {seg['caption']}")
                for rank, t in enumerate(seg["top"], 1):
                    print(f"  {rank}. {t['class']:<40s} {t['score']:.4f}")
    return exit_status(_report(rows), len(done))


def build_parser() -> argparse.ArgumentParser:
    from genact import __version__
    from genact.app.cli import add_app_commands
    from genact.evaluation.cli import add_evaluation_commands
    from genact.regen.cli import add_regen_commands
    from genact.rest.cli import add_rest_commands
    from genact.training.cli import add_training_commands
    from genact.world.cli import add_world_commands

    parser = argparse.ArgumentParser(
        prog="genact", description="Generative zero-shot video action recognition (REST + ReGen)."
    )
    parser.add_argument("--version", action="version", version=f"genact {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # name -> sub-command parser

    p = sub.add_parser("caption", help="caption videos with a VideoBlip / BLIP model")
    _add_video_args(p)
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser(
        "classify", help="caption videos and map each caption to a class list (CLIP-TAM)"
    )
    _add_video_args(p)
    p.add_argument(
        "--classes",
        type=user_path,
        required=True,
        help="class file: one name per line, or id,name CSV",
    )
    p.add_argument(
        "--clip",
        type=user_path,
        required=True,
        help="CLIP: hub id (e.g. openai/clip-vit-base-patch16) or directory",
    )
    p.add_argument(
        "--template",
        action="append",
        default=None,
        help="class prompt template such as 'a video of {}.' (repeat to average several)",
    )
    p.add_argument("--topk", type=count(1), default=5)
    p.set_defaults(func=cmd_classify)

    add_rest_commands(sub)
    add_training_commands(sub)
    add_regen_commands(sub)
    add_evaluation_commands(sub)
    add_world_commands(sub)
    add_app_commands(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with options accepted anywhere after the sub-command (also
    after `key=value` settings); an error prints the sub-command's usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.commands[args.command]
        try:
            again = command.parse_intermixed_args(argv[argv.index(args.command) + 1 :])
        except TypeError:  # a sub-command whose arguments argparse cannot intermix
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        vars(args).update(vars(again))
    return args


def main(argv: list[str] | None = None) -> None:
    from genact.config import check_template

    args = parse_args(argv)
    if getattr(args, "template", "unset") is None:
        args.template = ["{}"]
    setup_logging(args.verbose, getattr(args, "quiet", False))
    try:
        for t in getattr(args, "template", None) or []:
            check_template(t, "--template")
        code = args.func(args)
    except GenactError as e:
        if args.verbose:
            raise
        print(f"genact: error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)
