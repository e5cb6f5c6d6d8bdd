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
