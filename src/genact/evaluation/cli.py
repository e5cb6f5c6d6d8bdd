"""`genact eval`, `genact fewshot`, `genact caption-metrics` and `genact report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genact.commands import add_decoding_args, cache_dir, count, decoding, exit_status, user_path


def cmd_eval(args: argparse.Namespace) -> int:
    from genact.distributed import joined

    with joined(args.device, threads=args.threads, workers=args.num_workers) as dist:
        return _eval(args, dist)


def _eval(args: argparse.Namespace, dist) -> int:
    from genact.errors import ConfigError
    from genact.evaluation.evaluate import closing_lines, evaluate
    from genact.evaluation.protocols import protocol_splits
    from genact.inference.captions import Captioner
    from genact.models import FrozenClip
    from genact.training.card import add_results
    from genact.training.rundir import RunDir

    if args.method != "clip" and not args.model:
        raise ConfigError(f"--method {args.method} needs --model")
    if args.update_card and not (args.model and Path(args.model).is_dir()):
        raise ConfigError(
            "--update-card writes into the model's README.md: give --model as a local directory"
        )
    splits = protocol_splits(args.protocol, args.data_root, args.splits, args.classes, args.split)
    cache = cache_dir(args)
    captioner = None
    if args.method != "clip":
        captioner = Captioner.load(
            args.model,
            decoding(args, one_frame=args.method == "blip-frame"),
            cache_dir=cache,
            device=dist.device,
            progress=not args.quiet,
            dist=dist,
        )
    clip = FrozenClip.from_pretrained(args.clip).to(dist.device)
    out_dir = Path(args.out or f"results/{args.protocol}-{args.method}")
    meta = {"protocol": args.protocol, "model": args.model, "clip": args.clip}
    frames = args.frames or (captioner.model.config.num_frames if captioner else 8)
    res = evaluate(
        splits,
        clip,
        captioner,
        method=args.method,
        templates=args.template,
        out_dir=out_dir,
        meta=meta,
        cache_dir=cache,
        frames=frames,
        progress=not args.quiet,
        dist=dist,
    )
    if not dist.main:
        return 0
    print(res["table"])
    scored = sum(r["num_videos"] for r in res["splits"].values())
    cached = captioner is not None and captioner.generated < scored
    made = f" ({captioner.generated} captions generated, the rest cached)" if cached else ""
    print(f"genact: results in {RunDir(out_dir).results}{made}", file=sys.stderr)
    if args.update_card:
        print(f"genact: results added to {add_results(args.model, res)}", file=sys.stderr)
    for line in closing_lines(res, args.data_root):
        print(f"genact: {line}", file=sys.stderr)
    # 1: some videos were unreadable
    return 1 if any(r["skipped"] for r in res["splits"].values()) else 0


def cmd_fewshot(args: argparse.Namespace) -> int:
    from genact.distributed import joined
    from genact.evaluation.fewshot import process_settings

    run = process_settings(args.settings)  # checked once, before the process group
    with joined(
        run.run.device,
        run.run.dist_timeout_min,
        threads=run.run.threads,
        workers=run.data.num_workers,
    ) as dist:  # one group for every fine-tuning run and evaluation
        return _fewshot(args, dist)


def _fewshot(args: argparse.Namespace, dist) -> int:
    from genact.errors import ConfigError
    from genact.evaluation.fewshot import SHOTS, fewshot_summary, run_fewshot
    from genact.training.rundir import RunDir

    if args.protocol == "base2novel":
        if args.rehearse:
            raise ConfigError("--rehearse is not part of the base-to-novel protocol")
        return _base2novel(args, dist)
    shots = list(SHOTS) if args.all else [None if args.shots == "all" else int(args.shots)]
    splits = [1, 2, 3] if args.all and args.protocol != "list" else [args.split]
    if args.train_list and args.all and args.protocol != "list":
        raise ConfigError("--train-list fixes one shot count and split; it cannot go with --all")
    out = Path(args.out or f"results/fewshot-{args.protocol}")
    top1: dict[int, dict[int, float]] = {}
    for m in shots:
        for k in splits:
            res = run_fewshot(
                args.protocol,
                args.data_root,
                args.splits,
                args.model,
                clip=args.clip,
                shots=m,
                split=k,
                out_dir=out,
                seed=args.seed,
                train_list=args.train_list,
                classes=args.classes,
                overrides=args.settings,
                templates=args.template,
                progress=not args.quiet,
                dist=dist,
                rehearse=args.rehearse,
            )
            top1.setdefault("all" if m is None else m, {})[k] = res["splits"][f"split{k}"]["top1"]
    if not dist.main:
        return 0
    print(fewshot_summary(out, args.protocol, args.model, args.seed, top1))
    print(f"genact: few-shot results in {RunDir(out).fewshot}", file=sys.stderr)
    return 0


def _base2novel(args: argparse.Namespace, dist) -> int:
    from genact.evaluation.base2novel import SAMPLINGS, base2novel_table, run_base2novel
    from genact.training.rundir import RunDir

    out_dir = Path(args.out or "results/base2novel")
    out = run_base2novel(
        args.data_root,
        args.splits,
        args.model,
        clip=args.clip,
        out_dir=out_dir,
        samplings=(args.shots_split,) if args.shots_split else SAMPLINGS,
        seed=args.seed,
        overrides=args.settings,
        templates=args.template,
        progress=not args.quiet,
        dist=dist,
    )
    if dist.main:
        print(base2novel_table(out))
        print(f"genact: base-to-novel results in {RunDir(out_dir).fewshot}", file=sys.stderr)
    return 0


def cmd_caption_metrics(args: argparse.Namespace) -> int:
    from genact.distributed import joined

    with joined(args.device, threads=args.threads, workers=args.num_workers) as dist:
        return _caption_metrics(args, dist)


def _caption_metrics(args: argparse.Namespace, dist) -> int:
    from genact.data import SkipReport
    from genact.errors import DataError
    from genact.evaluation.caption_metrics import caption_metrics, read_vatex, write_caption_metrics
    from genact.inference.captions import Captioner

    items, refs, missing = read_vatex(args.annotations, args.data_root)
    if missing:
        print(
            f"genact: {len(missing)} of {len(missing) + len(items)} annotated videos not found "
            "below "
            f"{args.data_root}, e.g. {missing[0]}",
            file=sys.stderr,
        )
    if args.limit:
        items, refs = items[: args.limit], refs[: args.limit]
    if not items:
        raise DataError(f"{args.data_root}: none of the videos of {args.annotations}")
    captioner = Captioner.load(
        args.model,
        decoding(args),
        cache_dir=cache_dir(args),
        device=dist.device,
        progress=not args.quiet,
        dist=dist,
    )
    report = SkipReport()
    caps = captioner(items, report)
    if not dist.main:
        return 0
    done = sorted(caps)
    scores, note = caption_metrics([refs[i] for i in done], [caps[i] for i in done])
    for name, value in scores.items():
        print(f"{name:<8} {100 * value:6.2f}")
    if note:
        print(f"genact: {note}", file=sys.stderr)
    captions = [{"video": items[i].path, "caption": caps[i], "references": refs[i]} for i in done]
    write_caption_metrics(
        Path(args.out or "results/caption-metrics"),
        {
            "model": args.model,
            "annotations": args.annotations,
            "videos": len(done),
            "scores": scores,
            "note": note,
            "missing": missing,
            "skipped": report.skipped,
            "captions": captions,
        },
    )
    return exit_status(report, len(done))


def shot_count(text: str) -> int | str:
    """argparse `type=` of --shots: a positive whole number, or `all`."""
    return "all" if text == "all" else count(1)(text)


def cmd_report(args: argparse.Namespace) -> int:
    from genact.evaluation.report import build_report

    path = build_report(args.sources, args.out)
    print(f"genact: report in {path}", file=sys.stderr)
    return 0


def add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    for add in (_add_eval, _add_fewshot, _add_caption_metrics, _add_report):
        add(sub)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="zero-shot evaluation on a protocol (HMDB-51, UCF-101, K600, K400, list)"
    )
    p.add_argument(
        "--protocol",
        required=True,
        choices=["hmdb51", "ucf101", "k600-zs", "k600-gzs", "k400-val", "list"],
    )
    p.add_argument(
        "--data-root", type=user_path, required=True, help="folder with the dataset's videos"
    )
    p.add_argument(
        "--splits",
        type=user_path,
        required=True,
        help="split files: a folder, or the CSV / list file",
    )
    p.add_argument("--classes", type=user_path, help="class file (protocol list)")
    p.add_argument(
        "--split", type=count(1, 3), action="append", help="split number(s) to run (default: all)"
    )
    p.add_argument("--method", default="genact", choices=["genact", "blip-frame", "clip"])
    p.add_argument(
        "--model",
        type=user_path,
        help="VideoBlip / BLIP: hub id or directory (not needed for --method clip)",
    )
    p.add_argument("--clip", type=user_path, required=True, help="CLIP: hub id or directory")
    p.add_argument(
        "--template", action="append", default=None, help="class prompt template (default '{}')"
    )
    add_decoding_args(p, cache=True)
    p.add_argument(
        "--out", type=user_path, help="results folder (default results/<protocol>-<method>)"
    )
    p.add_argument(
        "--update-card",
        action="store_true",
        help="add the results to the model directory's model card (README.md)",
    )
    p.set_defaults(func=cmd_eval)


def _add_fewshot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fewshot",
        help="few-shot: fine-tune on M videos per class (class names as captions), then eval",
    )
    p.add_argument(
        "settings",
        nargs="*",
        metavar="key=value",
        help="training overrides, e.g. optim.batch_size=4",
    )
    p.add_argument("--protocol", required=True, choices=["hmdb51", "ucf101", "list", "base2novel"])
    p.add_argument("--data-root", type=user_path, required=True)
    p.add_argument(
        "--splits",
        type=user_path,
        required=True,
        help="the protocol's split folder; for list, the test list (`path label` lines); for "
        "base2novel, the folder of ViFi-CLIP's base-to-novel files",
    )
    p.add_argument("--classes", type=user_path, help="class file (protocol list)")
    p.add_argument(
        "--model",
        type=user_path,
        required=True,
        help="the model to fine-tune (REST / ReGen run's final/, or a hub id)",
    )
    p.add_argument("--clip", type=user_path, required=True)
    p.add_argument(
        "--shots",
        type=shot_count,
        default=2,
        help="videos per class (2, 4, 8, 16), or all (the whole --train-list)",
    )
    p.add_argument("--split", type=count(1, 3), default=1)
    p.add_argument(
        "--shots-split",
        type=count(1, 3),
        default=None,
        help="base2novel: run this sampling (s1-s3) only (default: all three)",
    )
    p.add_argument("--all", action="store_true", help="shots 2, 4, 8, 16 x splits 1-3 in one table")
    p.add_argument("--seed", type=count(0), default=0)
    p.add_argument(
        "--train-list",
        type=user_path,
        help="hmdb51 / ucf101: a ViFi-CLIP style `path label` list used instead of sampling; "
        "list: the pool the shots are drawn from",
    )
    p.add_argument("--template", action="append", default=None)
    p.add_argument(
        "--rehearse",
        type=user_path,
        metavar="REST_RUN",
        help="rehearsal: as many of this REST run's training videos as labelled ones, with "
        "their pseudo-captions, train beside the class names (docs/evaluation.md)",
    )
    p.add_argument(
        "--out",
        type=user_path,
        help="folder for runs and results (default results/fewshot-<protocol>)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fewshot)


def _add_caption_metrics(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "caption-metrics", help="BLEU / METEOR / ROUGE-L / CIDEr against VaTeX-style references"
    )
    p.add_argument("--model", type=user_path, required=True)
    p.add_argument(
        "--annotations",
        type=user_path,
        required=True,
        help="VaTeX JSON: a list of {videoID, enCap: [...]}",
    )
    p.add_argument(
        "--data-root",
        type=user_path,
        required=True,
        help="videos named <videoID>.<ext> anywhere below",
    )
    p.add_argument("--limit", type=count(1), help="the first N videos only")
    add_decoding_args(p, cache=True)
    p.add_argument("--out", type=user_path, help="results folder (default results/caption-metrics)")
    p.set_defaults(func=cmd_caption_metrics)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="an HTML report (tables vs the papers, t-SNE, cosines, caption evolution)"
    )
    p.add_argument(
        "sources",
        type=user_path,
        nargs="+",
        metavar="RUN_OR_RESULTS",
        help="results folders of genact eval / fewshot, and REST run directories",
    )
    p.add_argument(
        "--out", type=user_path, required=True, help="folder for report.html and its PNGs"
    )
    p.set_defaults(func=cmd_report)
