"""`genact app` in a real browser: Playwright drives the system's Chromium against the
app served by the command a user runs (the shipped miniature-world models)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from genact.app.logic import Models, try_video
from genact.config import RestConfig, load_config
from genact.data import write_video
from genact.rest.run import run_rest
from genact.training.rundir import RunDir
from genact.world.demo_runs import SHIPPED
from genact.world.pretrain import CAPTION_PROMPT
from helpers import free_port, tiny_rest_settings

pytestmark = pytest.mark.slow  # end to end: `make test-fast` leaves these out

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the browser tests: .ci/run installs Debian's chromium")
    pytest.skip(
        "no Chromium: `apt-get install -y chromium` (Debian) runs these browser tests",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_blip_dir, tiny_clip_dir):
    """A finished tiny REST run under runs/, as the run browser finds it."""
    root = tmp_path_factory.mktemp("app")
    settings = tiny_rest_settings(root, tiny_blip_dir, tiny_clip_dir)
    run_rest(load_config(RestConfig, None, [*settings, f"run.dir={root / 'runs' / 'rest-tiny'}"]))
    return root


@pytest.fixture(scope="module")
def app(runs):
    """`genact app` on a free port, as a user starts it; its URL."""
    port = free_port()
    (runs / "tmp").mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "genact",
            "app",
            "--runs",
            str(runs / "runs"),
            "--port",
            str(port),
            "--cache-dir",
            str(runs / "cache"),
            "--max-upload-mb",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(runs / "tmp")},
    )
    try:
        for line in proc.stderr:
            if "genact: app on" in line:
                break
        assert proc.poll() is None, "genact app exited"
        assert f"http://127.0.0.1:{port}" in line
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(30)
        assert list((runs / "tmp").glob("genact-app-*")) == []  # uploads go when the app does


@pytest.fixture(scope="module")
def browser(app):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app):
    """A fresh page on the app for each test."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app)
    yield page
    page.close()


def test_a_clip_dropped_in_gets_its_caption_and_top5_as_the_library_gives_them(page, runs):
    clip = sorted((runs / "cache" / "app-examples").glob("*.mp4"))[0]  # a world clip the app wrote
    classes = (
        "swaying ball\npulsing ball\nbouncing kite\ndrifting box\nflickering ring\ncircling cross"
    )
    page.click("#tab-try-button")
    page.locator("#video-in input[type=file]").set_input_files(str(clip))
    page.locator("#classes-in textarea").fill(classes)
    page.click("#run-button")
    caption = page.locator("#video-caption textarea")
    expect(caption).not_to_have_value("", timeout=60000)
    models = Models.load(
        str(SHIPPED / "blip"),
        str(SHIPPED / "blip"),
        str(SHIPPED / "clip"),
        prompt=CAPTION_PROMPT,
        cache_dir=runs / "cache",
    )
    want = try_video(models, str(clip), classes)
    assert caption.input_value() == want["video_caption"]
    assert page.locator("#image-caption textarea").input_value() == want["image_caption"]
    expect(page.locator("#top5")).to_contain_text(list(want["top5"])[0], timeout=30000)
    cells = [c.strip() for c in page.locator("#top5").inner_text().splitlines() if c.strip()]
    names = [c for c in cells if c in want["top5"]]
    assert names == list(want["top5"])  # best first, as the library ranks them
    for name, score in want["top5"].items():  # shown as cosines, not as percentages
        assert str(score) in cells, (score, cells)
    assert page.locator("#frames img").count() == 8
    # the upload, in the app's own folder
    assert list((runs / "tmp").glob(f"genact-app-*/**/{clip.name}"))


def test_bad_input_gets_a_message_on_the_page_and_the_server_keeps_running(page, runs):
    bad = runs / "corrupt.mp4"
    bad.write_bytes(b"not a video at all")
    page.click("#tab-try-button")
    page.locator("#video-in input[type=file]").set_input_files(str(bad))
    page.click("#run-button")
    expect(page.locator("#message")).to_contain_text("Cannot do that", timeout=60000)
    page.locator("#classes-in textarea").fill("  \n")
    page.click("#run-button")
    expect(page.locator("#message")).to_contain_text("class name", timeout=60000)
    page.click("#tab-run-button")
    (runs / "runs" / "notes").mkdir(exist_ok=True)
    page.locator("#run-pick input").fill(str(runs / "runs" / "notes"))
    page.locator("#run-pick input").press("Enter")
    expect(page.locator("#run-message")).to_contain_text("not a genact run", timeout=60000)


def test_the_run_browser_shows_a_videos_captions_with_their_provenance(page, runs):
    run = runs / "runs" / "rest-tiny"
    page.click("#tab-run-button")
    page.locator("#run-pick input").click()
    # the run directories found below --runs
    page.locator("ul[role=listbox] li", has_text=str(run)).click()
    expect(page.locator("#run-message")).to_contain_text("REST", timeout=60000)
    page.click("#show-button")
    history = page.locator("#history")
    bank = RunDir(run).bank(1)  # the page's first video: the bank's first
    expect(history).to_contain_text(bank.captions(0)[0], timeout=60000)
    text = history.inner_text()
    for c in bank.entries[0]:
        assert bank.texts[c.text_id] in text and c.source in text
    page.locator("#config-box button").first.click()  # the config, folded away by default
    expect(page.locator("#run-config")).to_contain_text("frames: 2", timeout=30000)


# ---- the page serves only what it was given ---------------------------------------
@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app, verbose=False)


def test_the_run_browser_reads_nothing_outside_its_runs_folder(client, runs):
    outside = runs / "videos"  # a real folder next to the runs folder, and the system's
    for path in (str(outside), "/etc", str(runs / "runs" / ".." / "videos")):
        message, config, *_ = client.predict(path, api_name="/open_run")
        assert "outside the runs folder" in message and not config
    os.symlink(runs / "cache", runs / "runs" / "escape")  # a link that leads out is outside too
    message, *_ = client.predict(str(runs / "runs" / "escape"), api_name="/open_run")
    assert "outside the runs folder" in message
    assert client.predict("/", api_name="/find")[0]["choices"] == []
    found = [
        c[0] if isinstance(c, (list, tuple)) else c
        for c in client.predict(str(runs / "runs"), api_name="/find")[0]["choices"]
    ]
    assert found == [str(runs / "runs" / "rest-tiny")]
    run = str(runs / "runs" / "rest-tiny")
    frames, history = client.predict(
        run, str(runs / "cache" / "app-examples" / "x.mp4"), api_name="/show_video"
    )
    assert frames == [] and (history.get("data") if isinstance(history, dict) else history) in (
        [],
        [[]],
        None,
    )
    video = RunDir(runs / "runs" / "rest-tiny").bank(0).keys[0]
    frames, _ = client.predict(run, video, api_name="/show_video")
    assert len(frames) == 8  # a video the run trained on is shown (8 frames)


def test_an_upload_over_the_limit_is_refused(client, runs):
    from gradio_client import handle_file

    big = runs / "big.mp4"
    big.write_bytes(os.urandom(2 * 2**20))
    with pytest.raises(Exception, match="(?i)(too large|maximum|size)"):
        client.predict(handle_file(str(big)), "a\nb", "{}", 8, 3, api_name="/go")


def test_a_port_in_use_is_one_line(app, runs):
    port = int(app.rstrip("/").rsplit(":", 1)[1])
    out = subprocess.run(
        [sys.executable, "-m", "genact", "app", "--runs", str(runs / "runs"), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = out.stderr.strip().splitlines()
    assert (
        out.returncode == 2 and len(lines) == 1 and f"cannot serve on 127.0.0.1:{port}" in lines[0]
    ), out.stderr


def test_a_long_upload_gets_a_timeline_of_windows(page, runs):
    """A 40 s upload: the page shows a caption and best class per 10 s window."""
    from genact.world.render import ClipSpec, render_clip

    parts = [
        render_clip(ClipSpec(verb, "ball", "grass", 2000 + k))
        for k, verb in enumerate(["swaying", "pulsing", "bouncing", "circling"])
    ]
    frames = np.concatenate(
        [np.concatenate([p] * (80 // len(p) + 1))[:80] for p in parts]
    )  # 4 x 10 s at 8 fps
    long_clip = runs / "long.mp4"
    write_video(long_clip, frames, fps=8)
    page.click("#tab-try-button")
    page.locator("#video-in input[type=file]").set_input_files(str(long_clip))
    page.locator("#classes-in textarea").fill(
        "swaying ball\npulsing ball\nbouncing ball\ncircling ball"
    )
    page.click("#run-button")
    expect(page.locator("#video-caption textarea")).not_to_have_value("", timeout=60000)
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("30", timeout=60000)
    text = timeline.inner_text()
    cells = [c.strip() for c in text.splitlines() if c.strip()]
    assert [c for c in cells if c.replace(".0", "").isdigit()] == [
        "0",
        "10",
        "10",
        "20",
        "20",
        "30",
        "30",
        "40",
    ]
    assert (
        sum(
            text.count(c)
            for c in ("swaying ball", "pulsing ball", "bouncing ball", "circling ball")
        )
        >= 4
    )


def test_the_demo_report_reads_as_the_demo_in_a_browser(browser, tmp_path):
    """The report's tables in Chromium: the demo's own rows and effects with intervals,
    the unseen and generalized settings side by side, never averaged."""
    from genact.evaluation.report import build_report
    from genact.world.effects import effects, report_tables

    paths = [f"v{i}.mp4" for i in range(40)]
    rng = np.random.default_rng(0)
    right = lambda p: "".join("1" if x < p else "0" for x in rng.random(40))  # noqa: E731
    demo = {
        "test_videos": paths,
        "rows": {
            "frame-captioner": {
                "unseen": {"top1": 50.0, "right": right(0.5)},
                "generalized": {"top1": 30.0, "right": right(0.3)},
            },
            "rest": {
                "unseen": {"top1": 59.2, "right": right(0.6)},
                "generalized": {"top1": 29.8, "right": right(0.3)},
                "base": {"top1": 40.0, "right": right(0.4)},
            },
            "rest-b2n": {
                "unseen": {"top1": 56.0, "right": right(0.56)},
                "base": {"top1": 70.0, "right": right(0.7)},
            },
        },
    }
    html = build_report(
        [], tmp_path / "report", tables=report_tables([demo], effects([demo], draws=200))
    )
    page = browser.new_page()
    page.goto(html.as_uri())
    text = page.inner_text("body")
    page.close()
    assert (
        "REST > frame captioner" in text and "95% interval" in text and "unseen (1-vs-12)" in text
    )
    assert (
        "59.2" in text and "29.8" in text and "44.5" not in text and "papers' numbers" not in text
    )
    # base-to-novel: base, novel and HM = 2 * 70 * 56 / 126 = 62.2 for the fine-tuned row
    assert "Base-to-novel" in text and "62.2" in text and "seen (1-vs-24)" in text
