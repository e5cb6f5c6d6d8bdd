"""The web app's functions without a browser: class lists, an evaluation's worst
classes with their videos, curves of a ReGen run, run kinds."""

import json

import pytest

from genact.app.logic import curves_figure, find_runs, parse_classes, per_class, run_kind
from genact.errors import GenactError
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir


def test_typed_class_lists_are_checked():
    assert parse_classes("Swimming\n\n  riding_bike \n") == ["swimming", "riding bike"]
    with pytest.raises(GenactError, match="at least one"):
        parse_classes(" \n")
    with pytest.raises(GenactError, match="more than once: swimming"):
        parse_classes("swimming\nSwimming")


def test_an_evaluation_shows_its_worst_classes_with_their_videos(tmp_path):
    root, tmp_path = tmp_path, tmp_path / "results" / "eval"
    tmp_path.mkdir(parents=True)
    videos = [
        {"video": f"v{i}.mp4", "label": label, "caption": f"caption {i}", "top5": ["a", "b"]}
        for i, label in enumerate(["run", "run", "swim", "jump", "jump"])
    ]
    (RunDir(tmp_path).results).write_text(
        json.dumps(
            {
                "splits": {
                    "split1": {
                        "per_class": {"run": 100.0, "swim": 0.0, "jump": 50.0, "fly": None},
                        "videos": videos,
                    }
                }
            }
        )
    )
    table, examples = per_class(tmp_path, worst=2)
    assert table == [["split1", "swim", 0.0], ["split1", "jump", 50.0], ["split1", "run", 100.0]]
    assert [(e[1], e[2]) for e in examples] == [
        ("swim", "v2.mp4"),
        ("jump", "v3.mp4"),
        ("jump", "v4.mp4"),
    ]
    assert run_kind(tmp_path) == "evaluation" and find_runs(root) == [str(tmp_path)]


def test_a_regen_runs_curves_include_its_rewards(tmp_path):
    (RunDir(tmp_path).config).write_text("regen:\n  samples: 4\n")
    metrics = Metrics(tmp_path, tensorboard=False)
    for step in (1, 2):
        metrics.log(
            "train", step, loss=1.0 / step, lr=1e-5, reward_cls=-step, reward_cls_std=0.5, epoch=0
        )
    fig = curves_figure(tmp_path)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "learning rate", "rewards"] and run_kind(tmp_path) == "ReGen"
    assert [line.get_label() for line in fig.axes[2].get_lines()] == [
        "reward_cls"
    ]  # spreads left out
    with pytest.raises(GenactError, match="not a genact run"):
        run_kind(tmp_path / "nothing")


def test_plots_name_their_axes_and_an_empty_runs_folder_says_so(tmp_path):
    from genact.app.logic import no_runs_message

    metrics = Metrics(tmp_path, tensorboard=False)
    metrics.log("train", 1, loss=1.0, lr=1e-5, epoch=0)
    metrics.log("round", 0, mean_cosine=0.3)
    fig = curves_figure(tmp_path)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "training loss",
        "learning rate",
        "mean video-caption cosine",
    ]
    (tmp_path / "empty").mkdir()
    assert "No runs or evaluations below" in no_runs_message(tmp_path / "empty")
    RunDir(tmp_path).write_config({"run": {}})
    assert no_runs_message(tmp_path) == ""


def test_an_evaluation_opens_as_a_summary_whatever_its_size(tmp_path):
    """The config box gets the settings and top-1 / top-5, not the 40,000 per-video rows."""
    from genact.app.logic import run_config

    videos = [
        {"video": f"v{i}.mp4", "label": "run", "caption": "a man runs", "top5": ["run"]}
        for i in range(40_000)
    ]
    RunDir(tmp_path).write_results(
        json.dumps(
            {
                "protocol": "k400-val",
                "settings": {"genact": "0.1.0"},
                "splits": {
                    "val": {
                        "top1": 63.9,
                        "top5": 81.0,
                        "num_videos": 40_000,
                        "per_class": {"run": 63.9},
                        "videos": videos,
                    }
                },
            }
        )
    )
    text = run_config(tmp_path)
    assert "63.9" in text and "k400-val" in text and "v1.mp4" not in text and len(text) < 1000
