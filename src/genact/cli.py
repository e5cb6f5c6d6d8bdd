"""The `genact` command line (also `python -m genact`, so `torchrun -m genact` works)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from genact.errors import ConfigError, DataError, GenactError

log = logging.getLogger("genact")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Plain timestamped logs on stderr (warnings only with --quiet, and on processes
    other than torchrun's rank 0); only errors from transformers / hub."""
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else (logging.INFO if rank == 0 and not quiet else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_device(name: str) -> "torch.device":  # noqa: F821
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA GPU is visible")
    return torch.device(name)


def video_items(paths: list[str]) -> list:
    """Video files given on the command line; a directory stands for every video below
    it, unless it is named like a video (then it is an unreadable video, skipped and
    counted like any other)."""
    from genact.data import VideoItem, read_folder
    from genact.data.video import VIDEO_EXTENSIONS

    items = []
    for p in paths:
        folder = Path(p).is_dir() and Path(p).suffix.lower() not in VIDEO_EXTENSIONS
        items.extend(read_folder(p).items if folder else [VideoItem(p)])
    return items


def _add_video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of videos")
    p.add_argument("--model", required=True, help="VideoBlip / BLIP: hub id or local directory")
    _add_decoding_args(p, cache=True)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _add_decoding_args(p: argparse.ArgumentParser, cache: bool = False) -> None:
    """Options of every command that captions videos."""
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's, 8)")
    p.add_argument("--image-size", type=int, default=None, help="frame side the ViT sees (default: the model's)")
    p.add_argument("--beams", type=int, default=3, help="beam size for caption search")
    p.add_argument("--max-new-tokens", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes for decoding")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if cache:
        p.add_argument("--cache-dir", help="caption / feature cache (default $GENACT_CACHE or ~/.cache/genact)")


def _captions(args) -> tuple[list, dict[int, str], "SkipReport"]:  # noqa: F821
    """Caption the command line's videos through the caption cache, so a rerun after
    a kill reuses what was saved (every 64 videos)."""
    from genact.data import SkipReport
    from genact.inference.captions import Captioner, default_cache_dir

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    captioner = Captioner.load(args.model, "genact", args.frames, cache_dir, resolve_device(args.device),
                               image_size=args.image_size, batch_size=args.batch_size, num_workers=args.num_workers,
                               num_beams=args.beams, max_new_tokens=args.max_new_tokens, progress=not args.quiet)
    items = video_items(args.videos)
    report = SkipReport()
    return items, captioner(items, report), report


def _finish(report, ok: int) -> int:
    if report.skipped:
        print(f"genact: {report.summary()}", file=sys.stderr)
    return 0 if ok else 1


def cmd_caption(args) -> int:
    items, caps, report = _captions(args)
    rows = [{"video": it.path, "caption": caps[i]} for i, it in enumerate(items) if i in caps]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['video']}\t{r['caption']}")
    return _finish(report, len(rows))


def cmd_classify(args) -> int:
    from genact.data import read_class_file
    from genact.evaluation import ClipTam
    from genact.models import FrozenClip

    class_names = read_class_file(args.classes)
    items, caps, report = _captions(args)
    clip = FrozenClip.from_pretrained(args.clip).to(resolve_device(args.device))
    tam = ClipTam(clip, class_names, args.template)
    done = [i for i in range(len(items)) if i in caps]
    top = tam.topk([caps[i] for i in done], args.topk)
    rows = [
        {"video": items[i].path, "caption": caps[i], "top": [{"class": c, "score": round(s, 4)} for c, s in t]}
        for i, t in zip(done, top)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['video']}\n  caption: {r['caption']}")
            for rank, t in enumerate(r["top"], 1):
                print(f"  {rank}. {t['class']:<40s} {t['score']:.4f}")
    return _finish(report, len(rows))


def cmd_eval(args) -> int:
    from genact.data import SkipReport
    from genact.evaluation.evaluate import evaluate
    from genact.inference.captions import Captioner, default_cache_dir
    from genact.evaluation.protocols import protocol_splits
    from genact.models import FrozenClip

    if args.method != "clip" and not args.model:
        raise ConfigError(f"--method {args.method} needs --model")
    device = resolve_device(args.device)
    splits = protocol_splits(args.protocol, args.data_root, args.splits, args.classes, args.split)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    captioner = None
    if args.method != "clip":
        captioner = Captioner.load(args.model, args.method, args.frames, cache_dir, device, image_size=args.image_size,
                                   batch_size=args.batch_size, num_workers=args.num_workers, num_beams=args.beams,
                                   max_new_tokens=args.max_new_tokens, progress=not args.quiet)
    clip = FrozenClip.from_pretrained(args.clip).to(device)
    out_dir = Path(args.out or f"results/{args.protocol}-{args.method}")
    meta = {"protocol": args.protocol, "model": args.model, "clip": args.clip}
    frames = args.frames or (captioner.model.config.num_frames if captioner else 8)
    res = evaluate(splits, args.method, clip, captioner, args.template, out_dir, meta, cache_dir, frames,
                   not args.quiet)
    print(res["table"])
    print(f"genact: results in {out_dir / 'results.json'}"
          + (f" ({captioner.generated} captions generated, the rest cached)" if captioner else ""), file=sys.stderr)
    splits_out = res["splits"].values()
    missing = sum(len(r["missing"]) for r in splits_out)
    if missing:
        print(f"genact: {missing} listed video(s) not found below {args.data_root} (listed per split in results.json)",
              file=sys.stderr)
    report = SkipReport([tuple(s) for r in splits_out for s in r["skipped"]])
    if report.skipped:
        print(f"genact: {report.summary()}", file=sys.stderr)
    return 0


def cmd_fewshot(args) -> int:
    from genact.evaluation.clip_tam import mean_std
    from genact.evaluation.fewshot import SHOTS, run_fewshot
    from genact.io import atomic_write_text

    shots = list(SHOTS) if args.all else [args.shots]
    splits = [1, 2, 3] if args.all else [args.split]
    if args.train_list and (args.all or len(shots) > 1):
        raise ConfigError("--train-list fixes one shot count and split; it cannot go with --all")
    out = Path(args.out or f"results/fewshot-{args.protocol}")
    table: dict[int, dict[int, float]] = {}
    for m in shots:
        for k in splits:
            res = run_fewshot(args.protocol, args.data_root, args.splits, args.model, args.clip, m, k, out, args.seed,
                              args.train_list, args.settings, args.template, None, not args.quiet)
            table.setdefault(m, {})[k] = res["splits"][f"split{k}"]["top1"]
    lines = [f"{'shots':<6}" + "".join(f"{'split' + str(k):>9}" for k in splits) + f"{'mean':>9}{'std':>7}"]
    summary = {}
    for m, row in table.items():
        mean, std = mean_std(list(row.values()))
        summary[m] = {"top1": row, "mean": mean, "std": std}
        lines.append(f"{m:<6}" + "".join(f"{row[k]:>9.2f}" for k in splits) + f"{mean:>9.2f}{std:>7.2f}")
    atomic_write_text(out / "fewshot.json", json.dumps({"protocol": args.protocol, "model": args.model,
                                                        "seed": args.seed, "shots": summary}, indent=1) + "\n")
    print("\n".join(lines))
    print(f"genact: few-shot results in {out / 'fewshot.json'}", file=sys.stderr)
    return 0


def cmd_caption_metrics(args) -> int:
    from genact.data import SkipReport
    from genact.evaluation.caption_metrics import caption_metrics, read_vatex
    from genact.inference.captions import Captioner, default_cache_dir
    from genact.io import atomic_write_text

    items, refs, missing = read_vatex(args.annotations, args.data_root)
    if missing:
        print(f"genact: {len(missing)} of {len(missing) + len(items)} annotated videos not found below "
              f"{args.data_root}, e.g. {missing[0]}", file=sys.stderr)
    if args.limit:
        items, refs = items[: args.limit], refs[: args.limit]
    if not items:
        raise DataError(f"{args.data_root}: none of the videos of {args.annotations}")
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    captioner = Captioner.load(args.model, "genact", args.frames, cache_dir, resolve_device(args.device),
                               image_size=args.image_size, batch_size=args.batch_size, num_workers=args.num_workers,
                               num_beams=args.beams, max_new_tokens=args.max_new_tokens, progress=not args.quiet)
    report = SkipReport()
    caps = captioner(items, report)
    done = sorted(caps)
    scores, note = caption_metrics([refs[i] for i in done], [caps[i] for i in done])
    for name, value in scores.items():
        print(f"{name:<8} {100 * value:6.2f}")
    if note:
        print(f"genact: {note}", file=sys.stderr)
    out = Path(args.out or "results/caption-metrics")
    result = {"model": args.model, "annotations": args.annotations, "videos": len(done), "scores": scores,
              "note": note, "missing": missing, "skipped": report.skipped,
              "captions": [{"video": items[i].path, "caption": caps[i], "references": refs[i]} for i in done]}
    atomic_write_text(out / "caption_metrics.json", json.dumps(result, indent=1) + "\n")
    return _finish(report, len(done))


def cmd_regen(args) -> int:
    from genact.config import RegenConfig
    from genact.regen.run import run_regen

    return _trained(run_regen(_settings(args, RegenConfig)))


def cmd_report(args) -> int:
    from genact.evaluation.report import build_report

    path = build_report(args.sources, args.out)
    print(f"genact: report in {path}", file=sys.stderr)
    return 0


def _settings(args, cls):
    """A run config from `CONFIG.yaml key=value ...` (the file is optional)."""
    from genact.config import ConfigError, load_config

    files = [s for s in args.settings if "=" not in s]
    overrides = [s for s in args.settings if "=" in s]
    if len(files) > 1:
        raise ConfigError(f"one config file at most, got {files}")
    if args.resume:
        overrides.append("run.resume=auto")
    if getattr(args, "quiet", False):
        overrides.append("run.progress=false")
    return load_config(cls, files[0] if files else None, overrides)


def _trained(final: Path | None) -> int:
    if final is not None and int(os.environ.get("RANK", "0")) == 0:
        print(f"genact: trained model in {final}", file=sys.stderr)
    return 0


def cmd_rest(args) -> int:
    from genact.config import RestConfig
    from genact.rest.run import run_rest

    return _trained(run_rest(_settings(args, RestConfig)))


def cmd_supervised(args) -> int:
    from genact.config import SupervisedConfig
    from genact.rest.run import run_supervised

    return _trained(run_supervised(_settings(args, SupervisedConfig)))


def cmd_cache_frames(args) -> int:
    from genact.config import RegenConfig, RestConfig, SupervisedConfig
    from genact.data.frame_cache import build_frame_cache
    from genact.distributed import cleanup, init_distributed
    from genact.models.video_blip import VideoBlip
    from genact.rest.run import training_split

    cfg = _settings(args, {"rest": RestConfig, "regen": RegenConfig, "supervised": SupervisedConfig}[args.kind])
    if not cfg.data.frame_cache:
        raise ConfigError("say where the cache goes: data.frame_cache=DIR (the runs then read it from there)")
    cfg.data.frames = cfg.data.frames or VideoBlip.saved_settings(cfg.model.blip).get("num_frames", 8)
    side = args.short_side or VideoBlip.training_short_side(cfg.model.blip, cfg.model.image_size)
    d = init_distributed("cpu", cfg.run.dist_timeout_min)
    try:
        written, report = build_frame_cache(training_split(cfg).items, cfg.data.frame_cache, cfg.data.frames, side,
                                            args.format, args.quality, args.shard_videos, cfg.data.num_workers,
                                            d, progress=cfg.run.progress and d.main)
    finally:
        cleanup(d)
    print(f"genact: {written} videos cached in {cfg.data.frame_cache} (T={cfg.data.frames}, short side {side}); "
          f"{report.summary()}", file=sys.stderr)
    return 0


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("settings", nargs="*", metavar="CONFIG.yaml | key=value",
                   help="a config file from configs/, then overrides such as optim.lr=1e-5 run.dir=runs/x")
    p.add_argument("--resume", action="store_true", help="continue the run in run.dir (same as run.resume=auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


def build_parser() -> argparse.ArgumentParser:
    from genact import __version__
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

    p = sub.add_parser("classify", help="caption videos and map each caption to a class list (CLIP-TAM)")
    _add_video_args(p)
    p.add_argument("--classes", required=True, help="class file: one name per line, or id,name CSV")
    p.add_argument("--clip", required=True, help="CLIP: hub id (e.g. openai/clip-vit-base-patch16) or directory")
    p.add_argument("--template", action="append", default=None,
                   help="class prompt template such as 'a video of {}.' (repeat to average several)")
    p.add_argument("--topk", type=int, default=5)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("regen", help="ReGen: RL fine-tuning with class, CLIP and grammar rewards (torchrun too)")
    _add_run_args(p)
    p.set_defaults(func=cmd_regen)

    p = sub.add_parser("eval", help="zero-shot evaluation on a protocol (HMDB-51, UCF-101, K600, K400, list)")
    p.add_argument("--protocol", required=True, choices=["hmdb51", "ucf101", "k600-zs", "k600-gzs", "k400-val", "list"])
    p.add_argument("--data-root", required=True, help="folder with the dataset's videos")
    p.add_argument("--splits", required=True, help="split files: a folder, or the CSV / list file")
    p.add_argument("--classes", help="class file (protocol list)")
    p.add_argument("--split", type=int, action="append", help="split number(s) to run (default: all)")
    p.add_argument("--method", default="genact", choices=["genact", "blip-frame", "clip"])
    p.add_argument("--model", help="VideoBlip / BLIP: hub id or directory (not needed for --method clip)")
    p.add_argument("--clip", required=True, help="CLIP: hub id or directory")
    p.add_argument("--template", action="append", default=None, help="class prompt template (default '{}')")
    _add_decoding_args(p, cache=True)
    p.add_argument("--out", help="results folder (default results/<protocol>-<method>)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("fewshot", help="few-shot: fine-tune on M videos per class (class names as captions), then eval")
    p.add_argument("settings", nargs="*", metavar="key=value", help="training overrides, e.g. optim.batch_size=4")
    p.add_argument("--protocol", required=True, choices=["hmdb51", "ucf101"])
    p.add_argument("--data-root", required=True)
    p.add_argument("--splits", required=True, help="the protocol's split folder")
    p.add_argument("--model", required=True, help="the model to fine-tune (REST / ReGen run's final/, or a hub id)")
    p.add_argument("--clip", required=True)
    p.add_argument("--shots", type=int, default=2, help="videos per class (2, 4, 8, 16)")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--all", action="store_true", help="shots 2, 4, 8, 16 x splits 1-3 in one table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-list", help="use this ViFi-CLIP style `path label` list instead of sampling")
    p.add_argument("--template", action="append", default=None)
    p.add_argument("--out", help="folder for runs and results (default results/fewshot-<protocol>)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fewshot)

    p = sub.add_parser("caption-metrics", help="BLEU / METEOR / ROUGE-L / CIDEr against VaTeX-style references")
    p.add_argument("--model", required=True)
    p.add_argument("--annotations", required=True, help="VaTeX JSON: a list of {videoID, enCap: [...]}")
    p.add_argument("--data-root", required=True, help="videos named <videoID>.<ext> anywhere below")
    p.add_argument("--limit", type=int, help="the first N videos only")
    _add_decoding_args(p, cache=True)
    p.add_argument("--out", help="folder for caption_metrics.json (default results/caption-metrics)")
    p.set_defaults(func=cmd_caption_metrics)

    add_world_commands(sub)

    p = sub.add_parser("report", help="an HTML report (tables vs the papers, t-SNE, cosines, caption evolution)")
    p.add_argument("sources", nargs="+", metavar="RUN_OR_RESULTS",
                   help="results folders of genact eval / fewshot, and REST run directories")
    p.add_argument("--out", required=True, help="folder for report.html and its PNGs")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("rest", help="REST: self-train a video captioner on unlabelled videos (torchrun for many GPUs)")
    _add_run_args(p)
    p.set_defaults(func=cmd_rest)

    p = sub.add_parser("cache-frames", help="decode every video's T frames once into shards that runs then read")
    p.add_argument("kind", choices=["rest", "regen", "supervised"], help="the run whose config follows")
    p.add_argument("settings", nargs="*", metavar="CONFIG.yaml | key=value",
                   help="that run's config and overrides; data.frame_cache=DIR says where the cache goes")
    p.add_argument("--short-side", type=int, help="default: the training resize of the config's model")
    p.add_argument("--format", default="jpeg", choices=["jpeg", "raw"], help="jpeg (small) or raw uint8 (fastest)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--shard-videos", type=int, default=1000, help="videos per shard file")
    p.set_defaults(func=cmd_cache_frames, resume=False)  # the run config's data and model sections are used

    p = sub.add_parser("supervised", help="baseline 'GAR + class labels': train on class names as captions")
    _add_run_args(p)
    p.set_defaults(func=cmd_supervised)
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
    args = parse_args(argv)
    if getattr(args, "template", "unset") is None:
        args.template = ["{}"]
    setup_logging(args.verbose, getattr(args, "quiet", False))
    try:
        code = args.func(args)
    except GenactError as e:
        if args.verbose:
            raise
        print(f"genact: error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)
