"""`genact app`: a Gradio page with two tabs, "Try a video" and "Look inside a run",
over the functions of `genact.app.logic`. A mistake in the input (an unreadable
video, no class names, a folder that is not a run) is shown on the page; the server
keeps running."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network, ever

import gradio as gr  # noqa: E402

from genact.app import logic  # noqa: E402
from genact.errors import GenactError  # noqa: E402


def _message(error: Exception) -> str:
    return f"**Cannot do that:** {error}"


def _try_tab(models: logic.Models, classes: str, examples: list[str]) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            video = gr.Video(
                label="video (upload or drop a clip)", sources=["upload"], elem_id="video-in"
            )
            names = gr.Textbox(
                label="class names, one per line", value=classes, lines=8, elem_id="classes-in"
            )
            template = gr.Textbox(label="template", value="{}", elem_id="template-in")
            with gr.Row():
                frames = gr.Slider(1, 16, value=8, step=1, label="frames (T)")
                beams = gr.Slider(1, 5, value=3, step=1, label="beams")
            run = gr.Button("Caption and classify", variant="primary", elem_id="run-button")
            if examples:
                gr.Examples(examples, inputs=video, label="the miniature world's clips")
        with gr.Column(scale=2):
            message = gr.Markdown(elem_id="message")
            strip = gr.Gallery(label="sampled frames", columns=8, height=200, elem_id="frames")
            with gr.Row():
                video_caption = gr.Textbox(label="video caption", elem_id="video-caption")
                image_caption = gr.Textbox(
                    label="image captioner, middle frame", elem_id="image-caption"
                )
            top5 = gr.Dataframe(
                headers=["class", "CLIP-TAM cosine"],
                label="top-5 classes, best first",
                elem_id="top5",
            )
            timeline = gr.Dataframe(
                headers=["start (s)", "end (s)", "caption", "best class", "cosine"],
                label=f"timeline ({logic.TIMELINE_WINDOW:g} s windows, for videos longer than "
                f"{logic.LONG_VIDEO:g} s)",
                elem_id="timeline",
                wrap=True,
            )

    def go(path, class_text, tmpl, t, b):
        if not path:
            return _message("no video: upload one or pick an example"), [], "", "", None, None
        try:
            out = logic.try_video(models, path, class_text, tmpl, frames=int(t), beams=int(b))
        except GenactError as e:
            return _message(e), [], "", "", None, None
        top = [[name, score] for name, score in out["top5"].items()]  # cosines, best first
        return "", out["frames"], out["video_caption"], out["image_caption"], top, out["timeline"]

    run.click(
        go,
        [video, names, template, frames, beams],
        [message, strip, video_caption, image_caption, top5, timeline],
    )


def _run_handlers(runs_root: str):
    """The run tab's handlers (their names are the page's API names): find runs below a
    folder, open one, show a training video's frames and captions; each reads only
    inside `runs_root` (logic.confine)."""

    def find(folder):
        try:
            where = logic.confine(runs_root, folder or ".")
        except GenactError as e:
            return gr.update(choices=[], value=None), _message(e)
        return gr.update(choices=logic.find_runs(where), value=None), logic.no_runs_message(where)

    def open_run(path):
        empty = ("", "", None, gr.update(choices=[], value=None), [], [], [], [])
        if not path:
            return empty
        try:
            path = logic.confine(runs_root, path)
            kind = logic.run_kind(path)
            table, examples = logic.per_class(path) if kind == "evaluation" else ([], [])
            videos = logic.bank_videos(path)
            return (
                f"**{kind}** — {path}",
                logic.run_config(path),
                logic.curves_figure(path),
                gr.update(choices=videos, value=videos[0] if videos else None),
                table,
                examples,
                [],
                [],
            )
        except (GenactError, OSError, ValueError) as e:
            return (_message(e),) + empty[1:]

    def show_video(path, name):
        if not path or not name:
            return [], []
        try:
            path = logic.confine(runs_root, path)
            return logic.video_frames(path, name), logic.caption_history(path, name)
        except GenactError:
            return [], []

    return find, open_run, show_video


def _run_tab(runs_root: str) -> None:
    with gr.Row():
        root = gr.Textbox(label="runs folder", value=runs_root, scale=3, elem_id="runs-root")
        scan = gr.Button("Find runs", scale=1, elem_id="scan-button")
    picked = gr.Dropdown(
        label="run or evaluation",
        choices=logic.find_runs(runs_root),
        value=None,
        elem_id="run-pick",
        allow_custom_value=True,
    )
    message = gr.Markdown(logic.no_runs_message(runs_root), elem_id="run-message")
    with gr.Accordion("config", open=False, elem_id="config-box"):
        config = gr.Code(language="yaml", elem_id="run-config")
    curves = gr.Plot(label="curves")
    with gr.Row():
        video = gr.Dropdown(
            label="training video", choices=[], elem_id="video-pick", allow_custom_value=True
        )
        show = gr.Button("Show its captions", elem_id="show-button")
    strip = gr.Gallery(label="frames", columns=8, height=180)
    history = gr.Dataframe(
        headers=["round", "caption", "source", "made in round", "CLIP score"],
        label="caption list, round by round",
        elem_id="history",
        wrap=True,
    )
    accuracy = gr.Dataframe(
        headers=["split", "class", "top-1"], label="per-class top-1, worst first"
    )
    worst = gr.Dataframe(
        headers=["split", "class", "video", "caption", "top-5"],
        label="the worst classes' videos",
        wrap=True,
    )

    find, open_run, show_video = _run_handlers(runs_root)
    scan.click(find, root, [picked, message])
    picked.change(
        open_run, picked, [message, config, curves, video, accuracy, worst, strip, history]
    )
    show.click(show_video, [picked, video], [strip, history])


def build_app(
    models: logic.Models, classes: list[str], examples: list[str], runs_root: str
) -> gr.Blocks:
    with gr.Blocks(title="genact", analytics_enabled=False) as app:
        gr.Markdown("# genact: generative zero-shot action recognition")
        with gr.Tab("Try a video", elem_id="tab-try"):
            _try_tab(models, "\n".join(classes), examples)
        with gr.Tab("Look inside a run", elem_id="tab-run"):
            _run_tab(runs_root)
    return app


def example_clips(folder: Path, count: int = 6) -> tuple[list[str], list[str]]:
    """A few clips of the miniature world's unseen classes written to `folder` (once),
    and those classes' names: what the page offers on first start."""
    from genact.data.video import write_video
    from genact.world.render import ClipSpec, render_clip
    from genact.world.world import class_name, compositions, is_unseen

    unseen = [(v, o) for v, o in compositions() if is_unseen(v, o)]
    paths = []
    for k, (verb, obj) in enumerate(unseen[:count]):
        path = folder / f"{verb}_{obj}.mp4"
        if not path.exists():
            write_video(
                path, render_clip(ClipSpec(verb, obj, ("grass", "water", "sand")[k % 3], 1000 + k))
            )
        paths.append(str(path))
    return paths, [class_name(v, o) for v, o in unseen]
