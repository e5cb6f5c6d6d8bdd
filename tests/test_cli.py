"""The two commands end to end, run as a user runs them (`python -m genact ...`)."""

import json
import os
import subprocess
import sys

import pytest

from genact.io import read_json_lines
from genact.models import VideoBlip
from genact.training.rundir import RunDir
from helpers import CAPTIONS


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "genact", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.slow
def test_caption_prints_one_caption_per_video(fitted, tmp_path):
    root, videos = fitted
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    out = run("caption", *videos, broken, "--model", root / "model", "--json", "--quiet")
    # 1: some videos were unreadable (the others are captioned)
    assert out.returncode == 1, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["video"], r["caption"]) for r in rows] == list(zip(map(str, videos), CAPTIONS))
    assert f"skipped 1 unreadable video(s), e.g. {broken}: cannot open" in out.stderr
    text = run(
        "caption", videos[1], "--model", root / "model", "--frames", "4", "--beams", "2", "--quiet"
    )
    assert text.returncode == 0 and text.stdout.strip() == f"{videos[1]}\tplaying guitar"


@pytest.mark.slow
def test_classify_maps_captions_to_the_class_list(fitted, tiny_clip_dir, tmp_path):
    root, videos = fitted
    classes = tmp_path / "classes.txt"
    classes.write_text("riding a bike\nplaying guitar\nswimming\n")
    out = run(
        "classify",
        root,
        "--model",
        root / "model",
        "--clip",
        tiny_clip_dir,
        "--classes",
        classes,
        "--json",
        "--topk",
        "3",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    rows = {os.path.basename(r["video"]): r for r in json.loads(out.stdout)}
    assert set(rows) == {
        "blue.mp4",
        "red.mp4",
    }  # the folder stands for its videos; model files are skipped
    for name, caption in zip(["blue.mp4", "red.mp4"], CAPTIONS):
        assert rows[name]["caption"] == caption
        top = rows[name]["top"]
        assert (
            len(top) == 3
            and top[0]["class"] == caption
            and top[0]["score"] == pytest.approx(1.0, abs=1e-3)
        )
    text = run(
        "classify",
        videos[0],
        "--model",
        root / "model",
        "--clip",
        tiny_clip_dir,
        "--classes",
        classes,
        "--template",
        "a video of {}.",
        "--quiet",
    )
    assert text.returncode == 0 and "caption: swimming" in text.stdout and "  1. " in text.stdout


@pytest.mark.slow
def test_offline_hub_id_gives_one_clear_line(fitted, tmp_path):
    root, videos = fitted
    out = run(
        "caption",
        videos[0],
        "--model",
        "Salesforce/blip-image-captioning-base",
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0] and "pass that directory" in lines[0]
    missing = run("caption", videos[0], "--model", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such model directory" in missing.stderr


@pytest.mark.slow
def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0 and "caption" in out.stdout and "classify" in out.stdout


@pytest.mark.slow
def test_supervised_trains_on_class_names_and_refuses_to_overwrite(fitted, tiny_blip_dir, tmp_path):
    root, videos = fitted
    listing = tmp_path / "train.txt"
    listing.write_text(
        "".join(f"{v.name} {name}\n" for v, name in zip(videos * 2, ["swimming", "surfing"] * 2))
    )
    args = [
        "supervised",
        f"data.root={root}",
        "data.format=list",
        f"data.list={listing}",
        f"model.blip={tiny_blip_dir}",
        "data.frames=2",
        "data.num_workers=0",
        "optim.epochs=3",
        "optim.global_batch=2",
        "optim.batch_size=1",
        "optim.lr=1e-2",
        f"run.dir={tmp_path / 'run'}",
        "run.progress=false",
    ]
    out = run(*args)
    assert out.returncode == 0, out.stderr
    assert f"trained model in {tmp_path / 'run' / 'final'}" in out.stderr
    train = read_json_lines(RunDir(tmp_path / "run").metrics)
    assert len(train) == 3 and train[-1]["loss"] < train[0]["loss"]
    model = VideoBlip.from_pretrained(RunDir(tmp_path / "run").final)
    assert model.config.num_frames == 2
    again = run(*args)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "holds a run already; pass --resume" in again.stderr
