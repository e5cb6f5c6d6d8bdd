"""The demo's effects table: per-video outcomes from demo.json, the table over seeds,
and the Markdown blocks that `genact demo --full --markdown` writes into the docs."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from genact.errors import ConfigError
from genact.world.effects import effects, markdown, markers, results_text, write_markdown

pytestmark = pytest.mark.slow  # end to end: `make test-fast` leaves these out


def scored(right: str) -> dict:
    """One row's split in demo.json from its per-video outcomes ("1" right, "0" wrong)."""
    return {"top1": 100 * right.count("1") / len(right), "top5": 100.0, "right": right}


def demo(seed: int, rest: str, frame: str, supervised_gzs: str | None = None) -> dict:
    rows = {"rest": {"unseen": scored(rest)}, "frame-captioner": {"unseen": scored(frame)}}
    if supervised_gzs is not None:
        rows["rest"]["generalized"] = {
            "top1": 50.0,
            "top5": 90.0,
            "right": "1" * (len(rest) // 2) + "0" * (len(rest) - len(rest) // 2),
        }
        rows["supervised"] = {"generalized": {"top1": 0.0, "top5": 10.0, "right": supervised_gzs}}
    return {
        "config": {"seed": seed},
        "test_videos": [f"v{i}.mp4" for i in range(len(rest))],
        "rows": rows,
    }


def test_effects_come_from_the_per_video_outcomes_of_every_seed():
    demos = [
        demo(0, "1111111100", "1100000000"),
        demo(1, "1111111000", "1111000000", supervised_gzs="0" * 10),
    ]
    found = effects(demos, draws=2000)
    # the generalized effect needs its rows on every seed; seed 0 has no supervised row
    assert [label for label, _, _ in found] == ["REST > frame captioner"]
    ((_, split, e),) = found
    assert split == "unseen" and e.per_seed == [60.0, 30.0] and e.mean == 45.0
    assert e.verdict == "holds" and len(e.p_values) == 2
    # per seed on its own 10 videos: 6 more right of 10 holds, 3 of 10 is inside the noise
    assert e.seed_verdicts == ["holds", "inconclusive"]
    assert e.seed_count() == "holds on 1 of 2, inconclusive on 1"
    text = results_text(demos, [0, 1])
    assert "REST" in text and "75.0 +- 5.0" in text  # REST's top-1: 80 and 70
    # a video a method skipped ('-') counts as wrong
    skipped = effects([demo(0, "11-", "111")], draws=200)[0][2]
    assert skipped.per_seed == pytest.approx([-100 / 3])


def test_markdown_blocks_go_between_their_markers_and_nowhere_else(tmp_path):
    demos = [
        demo(0, "1111111100", "1100000000", "0000000000"),
        demo(1, "1111111000", "1111000000", "1000000000"),
    ]
    blocks = markdown(demos, [0, 1], effects(demos, draws=500), "genact demo --full --seeds 0 1")
    assert "| REST | unseen (1-vs-12) | 80.0 | 70.0 | 75.0 ± 5.0 |" in blocks["results"]
    assert "REST > supervised on seen classes, generalized (1-vs-36)" in blocks["effects"]
    assert all("`genact demo --full --seeds 0 1`" in b for b in blocks.values())
    doc = tmp_path / "world.md"
    begin, end = markers("effects")
    doc.write_text(f"# World\nintro\n{begin}\nold table\n{end}\nafter\n")
    assert write_markdown(doc, blocks) == ["effects"]  # no results markers in this file: left alone
    text = doc.read_text()
    assert (
        text.startswith("# World\nintro\n")
        and text.endswith(f"{end}\nafter\n")
        and "old table" not in text
    )
    assert blocks["effects"] in text and blocks["results"] not in text
    assert write_markdown(doc, blocks) == ["effects"] and doc.read_text() == text  # idempotent
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(ConfigError, match="marker"):
        write_markdown(tmp_path / "plain.md", blocks)
    assert (tmp_path / "plain.md").read_text() == "no markers\n"


def test_markdown_without_full_is_refused_before_any_work(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "genact",
            "demo",
            "--markdown",
            "docs/world.md",
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        out.returncode == 2
        and "genact: error: --markdown" in out.stderr
        and not (tmp_path / "d").exists()
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "genact",
            "demo",
            "--full",
            "--markdown",
            str(tmp_path / "none.md"),
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no such file" in out.stderr and not (tmp_path / "d").exists()
    # a typo'd file: refused before any seed runs
    (tmp_path / "plain.md").write_text("no markers here\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "genact",
            "demo",
            "--full",
            "--markdown",
            str(tmp_path / "plain.md"),
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "marker lines" in out.stderr and not (tmp_path / "d").exists()


def test_several_seeds_are_each_run_and_combined(monkeypatch, capsys):
    import genact.cli as cli
    import genact.world.demo as demo

    calls = []
    monkeypatch.setattr(
        demo, "run_full", lambda out, seeds, **k: calls.append(("full", out, seeds)) or "t"
    )
    monkeypatch.setattr(
        demo, "run_demo", lambda out, cfg, **k: calls.append(("one", out, cfg.seed)) or "t"
    )
    for argv in (["demo", "--seeds", "13", "17"], ["demo", "--seeds", "13"], ["demo"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
    assert calls == [("full", "demo-full", (13, 17)), ("one", "demo", 13), ("one", "demo", 0)]


def test_base_to_novel_rows_give_base_novel_and_their_harmonic_mean():
    """The demo's base-to-novel rows: base is each row's seen-class split, novel its
    unseen split, HM theirs per seed (then mean ± std); the two effects pair the
    fine-tuned row with the model it started from, split by split."""

    def seed(rest_base, rest_novel, b2n_base, b2n_novel) -> dict:
        return {
            "config": {},
            "test_videos": [f"u{i}" for i in range(len(rest_novel))],
            "split_videos": {"unseen": [], "base": [f"b{i}" for i in range(len(rest_base))]},
            "split_classes": {"unseen": 12, "generalized": 48, "base": 24},
            "rows": {
                "rest": {"base": scored(rest_base), "unseen": scored(rest_novel)},
                "rest-b2n": {"base": scored(b2n_base), "unseen": scored(b2n_novel)},
            },
        }

    demos = [
        seed("1100", "1111", "1111", "1000"),  # base 50 -> 100, novel 100 -> 25
        seed("1000", "1110", "1110", "1100"),  # base 25 -> 75, novel 75 -> 50
    ]
    found = {label: (s, e) for label, s, e in effects(demos, draws=500)}
    base, novel = (
        found["REST: base fine-tuning > none, on base classes"],
        found["REST: base fine-tuning > none, on novel classes"],
    )
    assert base[0] == "base" and base[1].per_seed == [50.0, 50.0]
    assert novel[0] == "unseen" and novel[1].per_seed == [-75.0, -25.0]
    text = results_text(demos, [0, 1])
    # HM per seed: REST 2*50*100/150 = 66.7 and 2*25*75/100 = 37.5 -> 52.1 +- 14.6
    assert "52.1 +- 14.6" in text and "base-to-novel" in text
    # fine-tuned: 2*100*25/125 = 40 and 2*75*50/125 = 60 -> 50.0 +- 10.0
    assert "50.0 +- 10.0" in text
    blocks = markdown(demos, [0, 1], effects(demos, draws=200), "genact demo --full")
    assert "| REST | 37.5 ± 12.5 | 87.5 ± 12.5 | 52.1 ± 14.6 |" in blocks["results"]
    assert "| REST | seen (1-vs-24) | 50.0 | 25.0 | 37.5 ± 12.5 |" in blocks["results"]
    # a split's label counts the names its videos were scored against
    assert "seen (1-vs-24)" in text and "unseen (1-vs-12)" in text


def test_demo_record_aligns_each_splits_outcomes_with_its_own_videos():
    """demo.json's `right` strings: one character per video of *that* split, in its
    own order, so a base-split row is paired video for video with its twin row."""
    from genact.data import VideoItem
    from genact.data.splits import Split
    from genact.world.demo import demo_record
    from genact.world.demo_runs import DemoConfig
    from genact.world.effects import outcomes

    tests = {
        "unseen": Split([VideoItem("u0.mp4", 0), VideoItem("u1.mp4", 1)], ["a", "b"]),
        "base": Split([VideoItem(f"b{i}.mp4", i % 3) for i in range(3)], ["c", "d", "e"]),
    }

    def result(videos: list[tuple[str, int, int]]) -> dict:
        top1 = 100 * sum(p == label for _, label, p in videos) / len(videos)
        return {
            "top1": top1,
            "top5": 100.0,
            "videos": [{"video": v, "label": label, "top5": [p]} for v, label, p in videos],
        }

    rows = {
        "rest": {
            "splits": {
                "unseen": result([("u1.mp4", 1, 1), ("u0.mp4", 0, 1)]),  # listed out of order
                "base": result([("b0.mp4", 0, 0), ("b2.mp4", 2, 1)]),  # b1 skipped
            }
        }
    }
    record = demo_record(DemoConfig(), tests, rows)
    assert record["split_videos"]["base"] == ["b0.mp4", "b1.mp4", "b2.mp4"]
    assert record["split_classes"] == {"unseen": 2, "base": 3}
    assert record["rows"]["rest"]["unseen"]["right"] == "01"
    assert record["rows"]["rest"]["base"]["right"] == "1-0"
    assert outcomes(record, "rest", "base").tolist() == [True, False, False]


def test_the_demo_fine_tunes_for_the_steps_its_docs_give(monkeypatch, tmp_path):
    """docs/world.md: few-shot trains 30 epochs at every shot count (30 optimizer steps
    for 2 shots, 180 for 8), base-to-novel 216 steps over its 384 videos, all without
    label smoothing at a global batch of 16."""
    import genact.world.demo_runs as runs
    from genact.data.datasets import VideoItem
    from genact.data.splits import Split

    calls = []

    def record(test, items, model, **kwargs):
        settings = dict(o.split("=", 1) for o in kwargs["overrides"])
        batch = int(settings["optim.global_batch"])
        steps = int(settings["optim.epochs"]) * (len(items) // batch)
        calls.append((len(items), steps, float(settings["optim.label_smoothing"])))
        return {}

    monkeypatch.setattr(runs, "finetune_and_evaluate", record)
    cfg = runs.DemoConfig()

    def pool(classes: int, per_class: int) -> Split:
        items = [VideoItem(f"v{c}-{i}.mp4", c) for c in range(classes) for i in range(per_class)]
        return Split(items, [f"class {c}" for c in range(classes)])

    for shots in (2, 8):
        runs.run_demo_fewshot(
            cfg, pool(12, 1), pool(12, 8), shots, tmp_path, tmp_path, tmp_path, False
        )
    tests = {"base": pool(24, 1), "unseen": pool(12, 1)}
    runs.run_demo_base2novel(
        cfg, tests, pool(24, 16), tmp_path, tmp_path, tmp_path, name="b2n", progress=False
    )
    assert calls == [(24, 30, 0.0), (96, 180, 0.0), (384, 216, 0.0)]


def test_the_demo_runs_regen_with_the_setting_its_docs_give(monkeypatch, tmp_path):
    """docs/world.md: the demo's ReGen is CLS-R + CLIP-R (no grammar reward), 4 samples
    per video, lr 5e-4 for 12 epochs, from the REST model it is given."""
    import genact.world.demo_runs as runs

    seen = []
    monkeypatch.setattr(runs, "run_regen", lambda cfg: seen.append(cfg) or tmp_path)
    common = runs.demo_settings(
        runs.DemoConfig(), tmp_path / "world", tmp_path / "blip", tmp_path / "clip", progress=False
    )
    rest = tmp_path / "rest-final"
    runs.run_demo_regen(runs.DemoConfig(), common, rest, tmp_path / "regen")
    (cfg,) = seen
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.regen.samples) == (12, 5e-4, 4)
    assert cfg.optim.adapter_lr_scale == 1  # only REST's new adapters train faster
    assert cfg.regen.w_grammar == 0 and cfg.regen.w_cls > 0 and cfg.regen.w_clip > 0
    assert Path(cfg.model.blip) == rest and Path(cfg.run.dir) == tmp_path / "regen"


def test_the_demo_rest_rows_differ_only_in_what_their_names_say(monkeypatch, tmp_path):
    """REST (H = 20, adapters), REST with H = 1, REST without adapters: each into its
    own run folder, with the demo's REST schedule (8 epochs in 2 rounds, lr 2e-4, the
    adapters at 10x)."""
    import genact.world.demo_runs as runs

    monkeypatch.setattr(runs, "run_rest", lambda cfg: cfg)  # the config it would train
    cfg = runs.DemoConfig()
    common = runs.demo_settings(
        cfg, tmp_path / "world", tmp_path / "blip", tmp_path / "clip", progress=False
    )
    rows = {n: runs.run_demo_rest(cfg, common, tmp_path, n) for n in runs.REST_ROWS}
    for name, rest in rows.items():
        assert Path(rest.run.dir) == tmp_path / "runs" / name
        assert (rest.optim.epochs, rest.rest.epochs_per_round, rest.optim.lr) == (8, 4, 2e-4)
        assert rest.optim.adapter_lr_scale == 10
    settings = {n: (r.rest.neighbours, r.model.use_adapters) for n, r in rows.items()}
    assert settings == {"rest": (20, True), "rest-h1": (1, True), "rest-no-adapters": (20, False)}
    # the supervised baseline is REST's training on class names: the same schedule
    seen = []
    monkeypatch.setattr(runs, "train_on_class_names", lambda c, *a: seen.append(c) or tmp_path)
    monkeypatch.setattr(runs, "read_list", lambda *a: SimpleNamespace(items=[], class_names=[]))
    runs.run_demo_supervised(cfg, common, tmp_path / "world", tmp_path / "sup")
    (sup,) = seen
    assert (sup.optim.epochs, sup.optim.lr, sup.optim.adapter_lr_scale) == (8, 2e-4, 10)


def test_regen_and_rest_are_compared_on_the_novel_word_classes_too():
    """ReGen's class-name reward favours the seen names; the novel-word effect pairs
    ReGen with REST on the novel-word videos, scored among that split's names."""

    def seed(rest_novel: str, regen_novel: str) -> dict:
        return {
            "config": {},
            "test_videos": ["u0", "u1"],
            "split_classes": {"unseen": 12, "generalized": 48, "novel": 6},
            "rows": {
                "rest": {"unseen": scored("10"), "novel": scored(rest_novel)},
                "regen": {"unseen": scored("11"), "novel": scored(regen_novel)},
            },
        }

    demos = [seed("1111", "1000"), seed("1110", "1100")]
    found = {label: (s, e) for label, s, e in effects(demos, draws=500)}
    split_name, novel = found["ReGen > REST, novel words (1-vs-6)"]
    # paired on the novel-word videos, not on the unseen ones (where ReGen is ahead)
    assert split_name == "novel" and novel.per_seed == [-75.0, -25.0]
    assert found["ReGen > REST"][1].per_seed == [50.0, 50.0]
