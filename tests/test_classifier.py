"""The Python classifier (genact.VideoClassifier): the same captions and classes as
`genact classify --json`, class embeddings once per label list, a list in and a list
out, unreadable videos reported per video."""

import json
import subprocess
import sys

import pytest

import genact.classifier as classifier_module
from genact import VideoClassifier
from genact.errors import ConfigError, DataError
from helpers import CAPTIONS

LABELS = ["riding a bike", "playing guitar", "swimming"]


@pytest.fixture(scope="module")
def clf(fitted, tiny_clip_dir, tmp_path_factory):
    root, _ = fitted
    return VideoClassifier.from_pretrained(
        root / "model", tiny_clip_dir, device="cpu", cache_dir=tmp_path_factory.mktemp("cache")
    )


@pytest.mark.slow
def test_the_classifier_gives_what_genact_classify_prints(clf, fitted, tiny_clip_dir, tmp_path):
    root, videos = fitted
    (tmp_path / "classes.txt").write_text("\n".join(LABELS) + "\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "genact",
            "classify",
            *map(str, videos),
            "--model",
            str(root / "model"),
            "--clip",
            str(tiny_clip_dir),
            "--classes",
            str(tmp_path / "classes.txt"),
            "--json",
            "--topk",
            "2",
            "--template",
            "a video of {}.",
            "--cache-dir",
            str(tmp_path / "c"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    api = clf([str(v) for v in videos], candidate_labels=LABELS, template="a video of {}.", top_k=2)
    assert [r["caption"] for r in api] == [r["caption"] for r in cli] == CAPTIONS
    assert [r["labels"] for r in api] == [[t["class"] for t in r["top"]] for r in cli]
    assert [[round(s, 4) for s in r["scores"]] for r in api] == [
        [t["score"] for t in r["top"]] for r in cli
    ]


def test_one_video_in_one_result_out_and_labels_ranked_by_cosine(clf, fitted):
    _, videos = fitted
    one = clf(videos[0], candidate_labels=LABELS)
    assert one["video"] == str(videos[0]) and one["caption"] == CAPTIONS[0]
    assert sorted(one["labels"]) == sorted(LABELS) and one["scores"] == sorted(
        one["scores"], reverse=True
    )
    assert one["labels"][0] == CAPTIONS[0]  # the caption is a class name: its own label ranks first
    assert clf.caption(videos[1]) == {"video": str(videos[1]), "caption": CAPTIONS[1]}


def test_class_embeddings_are_computed_once_per_label_list(clf, fitted, monkeypatch):
    _, videos = fitted
    calls = []
    real = classifier_module.class_embeddings
    monkeypatch.setattr(
        classifier_module, "class_embeddings", lambda *a, **k: calls.append(a[1]) or real(*a, **k)
    )
    labels = ["a", "b"]
    for _ in range(3):
        clf(videos, candidate_labels=labels)
    clf(videos, candidate_labels=["c", "d"])
    assert calls == [labels, ["c", "d"]]


def test_an_unreadable_video_gets_an_error_and_the_others_their_classes(clf, fitted, tmp_path):
    _, videos = fitted
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    rows = clf([str(videos[0]), str(bad)], candidate_labels=LABELS)
    assert rows[0]["caption"] == CAPTIONS[0] and "labels" in rows[0]
    assert (
        rows[1]["video"] == str(bad)
        and "cannot open" in rows[1]["error"]
        and "labels" not in rows[1]
    )


def test_bad_labels_and_templates_are_refused(clf, fitted):
    _, videos = fitted
    with pytest.raises(DataError, match="each once"):
        clf(videos[0], candidate_labels=["a", "a"])
    with pytest.raises(ConfigError, match="exactly one {}"):
        clf(videos[0], candidate_labels=["a"], template="a video of")
    with pytest.raises(DataError, match="no CLIP"):
        VideoClassifier(clf.captioner, None)(videos[0], candidate_labels=["a"])


def test_time_windows_tile_a_video_and_keep_its_tail():
    from genact.data import time_windows

    assert time_windows(25, 10) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25)]
    assert time_windows(21, 10) == [(0.0, 10.0), (10.0, 21)]  # a short tail joins the last window
    assert time_windows(5, 10) == [(0.0, 5)]
    assert time_windows(20, 10) == [(0.0, 10.0), (10.0, 20.0)]  # a whole number of windows: no tail
    assert time_windows(30, 10, 5)[:3] == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0)]


def halves(path, rng):
    """A 4 s video: 2 s of the blue clip the model calls swimming, then 2 s of red."""
    import numpy as np

    from genact.data import write_video
    from genact.testing import coloured_frames

    frames = np.concatenate(
        [coloured_frames(rng, (16, 48, 64), 2, 180), coloured_frames(rng, (16, 48, 64), 0, 180)]
    )
    write_video(path, frames, fps=8)
    return path


def test_a_long_video_is_captioned_and_classified_window_by_window(
    clf, fitted, tiny_clip_dir, tmp_path
):
    import numpy as np

    root, _ = fitted
    video = str(halves(tmp_path / "long.mp4", np.random.default_rng(3)))
    got = clf.caption(video, window=2)
    assert [(s["start"], s["end"], s["caption"]) for s in got["segments"]] == [
        (0.0, 2.0, CAPTIONS[0]),
        (2.0, 4.0, CAPTIONS[1]),
    ]
    ranked = clf(video, candidate_labels=LABELS, window=2, stride=2)
    assert [s["labels"][0] for s in ranked["segments"]] == ["swimming", "playing guitar"]
    (tmp_path / "classes.txt").write_text("\n".join(LABELS) + "\n")
    common = [
        sys.executable,
        "-m",
        "genact",
        "classify",
        video,
        "--model",
        str(root / "model"),
        "--clip",
        str(tiny_clip_dir),
        "--classes",
        str(tmp_path / "classes.txt"),
        "--window",
        "2",
        "--cache-dir",
        str(tmp_path / "c"),
        "--quiet",
    ]
    out = subprocess.run([*common, "--csv"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "video,start,end,caption,class,score" and len(lines) == 3
    assert lines[1].startswith(f"{video},0.0,2.0,{CAPTIONS[0]},swimming,")
    out = subprocess.run([*common, "--json"], capture_output=True, text=True, timeout=300)
    (row,) = json.loads(out.stdout)
    assert [s["top"][0]["class"] for s in row["segments"]] == ["swimming", "playing guitar"]
    bad = subprocess.run([*common, "--window", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "positive number of seconds" in bad.stderr


LONG_RUN = """
import resource, sys
from genact import VideoClassifier
clf = VideoClassifier.from_pretrained(sys.argv[1], device="cpu", cache_dir=sys.argv[3])
rows = clf.caption(sys.argv[2], window=60)
print(len(rows["segments"]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_windows_keep_memory_flat_on_a_30_minute_video(fitted, tmp_path):
    """Peak memory captioning a 30-minute video in 60 s windows is that of a 2-minute
    one: all its frames at once would be 3600 x 96 x 128 x 3 bytes = 133 MB more."""
    import numpy as np

    from genact.data import write_video

    root, _ = fitted
    rng = np.random.default_rng(0)

    def frames(n):
        for i in range(n):
            yield (
                rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
                if i % 50 == 0
                else np.full((96, 128, 3), i % 255, np.uint8)
            )

    peaks = {}
    for minutes in (2, 30):
        path = tmp_path / f"{minutes}min.mp4"
        write_video(path, frames(minutes * 60 * 2), fps=2, crf=30)
        out = subprocess.run(
            [sys.executable, "-c", LONG_RUN, str(root / "model"), str(path), str(tmp_path / "c")],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        windows, peak_kb = map(int, out.stdout.split())
        assert windows == minutes
        peaks[minutes] = peak_kb / 1024
    assert peaks[30] - peaks[2] < 40, peaks


def test_other_decoding_settings_give_the_captions_of_a_model_loaded_with_them(
    clf, fitted, tmp_path
):
    """with_decoding reuses the loaded model: its captions and recorded settings are
    those of a classifier loaded afresh with the same frames and beams."""
    root, videos = fitted
    other = clf.with_decoding(frames=2, beams=1, max_new_tokens=5)
    fresh = VideoClassifier.from_pretrained(
        root / "model",
        None,
        device="cpu",
        frames=2,
        beams=1,
        max_new_tokens=5,
        cache_dir=tmp_path / "fresh",
    )
    assert other.caption(videos) == fresh.caption(videos)
    assert other.captioner.settings == fresh.captioner.settings and other.captioner.frames == 2
    assert clf.captioner.frames == 4  # the original keeps its own
