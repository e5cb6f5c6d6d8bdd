"""`genact app`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_app(args: argparse.Namespace) -> int:
    from genact.errors import ConfigError

    try:
        from genact.app.ui import build_app, example_clips
    except ImportError as e:
        raise ConfigError(f"the web app needs Gradio ({e}); install it with: pip install 'genact[app]'") from None
    from genact.app.logic import Models
    from genact.commands import cache_dir
    from genact.data import read_class_file
    from genact.world.demo import SHIPPED
    from genact.world.pretrain import CAPTION_PROMPT

    shipped = args.model is None
    model = args.model or str(SHIPPED / "blip")
    models = Models.load(model, args.image_model or model, args.clip or str(SHIPPED / "clip"),
                         prompt=CAPTION_PROMPT if shipped else None)
    examples, world_classes = example_clips(cache_dir(args) / "app-examples")
    classes = read_class_file(args.classes) if args.classes else world_classes
    app = build_app(models, classes, examples, args.runs)
    app.queue()
    _, url, share_url = app.launch(server_name=args.host, server_port=args.port, share=args.share,
                                   prevent_thread_lock=True, quiet=True, show_error=False,
                                   allowed_paths=[str(Path(args.runs).resolve()), str(Path(examples[0]).parent)])
    print(f"genact: app on {url}" + (f" and {share_url}" if share_url else "") + " (Ctrl+C stops it)",
          file=sys.stderr, flush=True)
    try:
        app.block_thread()
    finally:
        app.close()
    return 0


def add_app_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="a local web page: try a model on a video, look inside a run (pip install genact[app])")
    p.add_argument("--model", help="the video captioner (default: the miniature world's shipped captioner)")
    p.add_argument("--image-model", help="the image captioner for the middle frame (default: --model)")
    p.add_argument("--clip", help="CLIP for CLIP-TAM (default: the miniature world's)")
    p.add_argument("--classes", help="class file to start with (default: the world's unseen classes)")
    p.add_argument("--runs", default="runs", help="folder with run directories and results (default runs/)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also a public Gradio share link (off by default)")
    p.add_argument("--cache-dir", help="where the example clips go (default $GENACT_CACHE or ~/.cache/genact)")
    p.set_defaults(func=cmd_app)
