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
