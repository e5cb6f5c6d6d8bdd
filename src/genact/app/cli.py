"""`genact app`."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from genact.commands import count, user_path


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the page until Ctrl+C; uploads go to a folder of this run of the app,
    deleted when it exits."""
    check_port(args.host, args.port)  # before minutes of loading models
    uploads = tempfile.mkdtemp(prefix="genact-app-")
    os.environ["GRADIO_TEMP_DIR"] = uploads  # before Gradio is imported: it reads it there
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` too runs the clean-up below
    try:
        return _serve(args)
    finally:
        shutil.rmtree(uploads, ignore_errors=True)


def check_port(host: str, port: int) -> None:
    """One ConfigError line when `host:port` cannot be served on (in use, or not an
    address of this machine)."""
    from genact.errors import ConfigError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        raise ConfigError(
            f"cannot serve on {host}:{port} ({e.strerror}); is another app using the port? pass "
            "another "
            "--port"
        ) from None


def _serve(args: argparse.Namespace) -> int:
    from genact.errors import ConfigError

    try:
        from genact.app.ui import build_app, example_clips
    except ImportError as e:
        raise ConfigError(
            f"the web app needs Gradio ({e}); install it with: pip install 'genact[app]'"
        ) from None
    from genact.app.logic import Models
    from genact.commands import cache_dir
    from genact.data import read_class_file
    from genact.world.demo_runs import SHIPPED
    from genact.world.pretrain import CAPTION_PROMPT

    classes = read_class_file(args.classes) if args.classes else None
    shipped = args.model is None
    model = args.model or str(SHIPPED / "blip")
    models = Models.load(
        model,
        args.image_model or model,
        args.clip or str(SHIPPED / "clip"),
        prompt=CAPTION_PROMPT if shipped else None,
        cache_dir=cache_dir(args),
    )
    examples, world_classes = example_clips(cache_dir(args) / "app-examples")
    app = build_app(models, classes or world_classes, examples, args.runs)
    app.queue()
    try:
        _, url, share_url = app.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            prevent_thread_lock=True,
            quiet=True,
            show_error=False,
            max_file_size=int(args.max_upload_mb * 2**20),
            allowed_paths=[str(Path(examples[0]).parent)],
        )
    except OSError as e:
        raise ConfigError(
            f"cannot serve on {args.host}:{args.port} ({e}); is the port in use? pass another "
            "--port"
        ) from None
    print(
        f"genact: app on {url}" + (f" and {share_url}" if share_url else "") + " (Ctrl+C stops it)",
        file=sys.stderr,
        flush=True,
    )
    try:
        app.block_thread()
    finally:
        app.close()
    return 0


def add_app_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="a local web page: try a model on a video, look inside a run (pip install "
        "genact[app])",
    )
    p.add_argument(
        "--model",
        type=user_path,
        help="the video captioner (default: the miniature world's shipped captioner)",
    )
    p.add_argument(
        "--image-model",
        type=user_path,
        help="the image captioner for the middle frame (default: --model)",
    )
    p.add_argument(
        "--clip", type=user_path, help="CLIP for CLIP-TAM (default: the miniature world's)"
    )
    p.add_argument(
        "--classes",
        type=user_path,
        help="class file to start with (default: the world's unseen classes)",
    )
    p.add_argument(
        "--runs",
        type=user_path,
        default="runs",
        help="folder with run directories and results (default runs/)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only)",
    )
    p.add_argument("--port", type=count(1, 65535), default=7860)
    p.add_argument(
        "--max-upload-mb",
        type=count(1),
        default=200,
        help="largest video one may upload (default 200 MB)",
    )
    p.add_argument(
        "--share", action="store_true", help="also a public Gradio share link (off by default)"
    )
    p.add_argument(
        "--cache-dir",
        type=user_path,
        help="where the example clips go (default $GENACT_CACHE or ~/.cache/genact)",
    )
    p.set_defaults(func=cmd_app)
