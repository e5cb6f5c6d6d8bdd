"""Evaluation: protocol splits, metrics against hand-computed values, `genact eval`
with its caption cache and baselines, and few-shot sampling and training."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genact.data import Split, VideoItem, read_hmdb51
from genact.evaluation.evaluate import SplitResult, results_table, score_captions, summarise
from genact.evaluation.fewshot import fewshot_epochs, sample_shots
from genact.evaluation.protocols import protocol_splits
from genact.training.rundir import RunDir
from helpers import FIXTURES, write_ucf101


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "genact", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")


def test_protocols_pick_the_test_videos_and_class_sets(tmp_path):
    touch(
        tmp_path,
        *[
            f"k600/{v}.mp4"
            for v in [
                "k6_aaaaaaaaaaa_000010_000020",
                "k6_bbbbbbbbbbb_000000_000010",
                "k6_ccccccccccc_000005_000015",
                "k6_ddddddddddd_000001_000011",
                "k6_eeeeeeeeeee_000030_000040",
            ]
        ],
    )
    zs = protocol_splits("k600-zs", tmp_path, FIXTURES / "k600zs")
    gzs = protocol_splits("k600-gzs", tmp_path, FIXTURES / "k600zs")
    defn = json.loads((FIXTURES / "k600zs" / "classes620_label_defn.json").read_text())
    assert list(zs) == list(gzs) == ["split1", "split2", "split3"]
    for k, classes in zip(["split1", "split2", "split3"], [[4, 5], [5, 3], [4, 2]]):
        # 1-vs-160 vs 1-vs-620
        assert len(zs[k].class_names) == 2 and len(gzs[k].class_names) == len(defn)
        assert [it.path for it in zs[k].items] == [
            it.path for it in gzs[k].items
        ]  # the same test videos
        # labels index the split's own classes in 1-vs-160, all classes in 1-vs-620; both name the
        # same class
        assert [zs[k].class_names[it.label] for it in zs[k].items] == [
            gzs[k].class_names[it.label] for it in gzs[k].items
        ]
        assert {gzs[k].items[i].label for i in range(len(gzs[k].items))} == set(classes)

    touch(
        tmp_path,
        "k400/abseiling/-0B5dHNvxjA_000002_000012.mp4",
        "k400/--3ouPhoy2A_000020_000030.mp4",
    )
    val = protocol_splits("k400-val", tmp_path / "k400", FIXTURES / "kinetics" / "train.csv")
    assert list(val) == ["val"] and [Path(it.path).name for it in val["val"].items] == [
        "-0B5dHNvxjA_000002_000012.mp4"
    ]
    assert val["val"].class_names == [
        "abseiling"
    ]  # the classes of the val rows (all 400 in the real file)

    touch(
        tmp_path,
        "hmdb/brush_hair/Atempting_to_brush_hair_u_nm_np1_fr_goo_0.avi",
        "hmdb/cartwheel/Cartwheel_Lesson_cartwheel_f_cm_np1_ri_med_0.avi",
    )
    hmdb = protocol_splits("hmdb51", tmp_path / "hmdb", FIXTURES / "hmdb51", which=[1])
    assert (
        hmdb["split1"].class_names == ["brush hair", "cartwheel"] and len(hmdb["split1"].items) == 2
    )
    with pytest.raises(ValueError, match="expected one of"):
        protocol_splits("kinetics700", tmp_path, tmp_path)


class TableClip:
    """A stand-in for FrozenClip with fixed text embeddings (hand-computable scores)."""

    dim = 2

    def __init__(self, table):
        self.table = table

    def encode_texts(self, texts, cache=None):
        return F.normalize(
            torch.tensor([self.table[t] for t in texts], dtype=torch.float32), dim=-1
        )


def test_scores_equal_hand_computed_values():
    classes = ["run", "swim", "jump"]
    clip = TableClip(
        {
            "run": [1, 0],
            "swim": [0, 1],
            "jump": [-1, 0.2],
            "a man runs": [0.9, 0.1],
            "a boy swims": [0.2, 0.9],
            "someone leaps": [0.8, 0.3],
        }
    )
    items = [
        VideoItem("a.mp4", 0),
        VideoItem("b.mp4", 1),
        VideoItem("c.mp4", 2),
        VideoItem("d.mp4", 1),
    ]
    captions = {0: "a man runs", 1: "a boy swims", 2: "someone leaps"}  # d.mp4 was unreadable

    class Captioner:  # what score_captions uses of one
        frames = 8

        def caption_and_encode(self, its, report, clip=None):
            report.add([("d.mp4", "d.mp4: cannot open")])
            return captions, {}

    captioner = Captioner()
    res, emb = score_captions(
        Split(items, classes), clip, captioner, templates=["{}"], video_cosine=False
    )
    # cosines: a -> run; b -> swim; c: run .936, swim .351, jump -.778 -> run (wrong)
    assert res.top1 == pytest.approx(200 / 3) and res.num_videos == 3 and emb.shape == (3, 2)
    assert res.top5 == 100.0  # 3 classes: top-5 holds all
    assert res.per_class == {"run": 100.0, "swim": 100.0, "jump": 0.0}
    assert [v["top5"][:2] for v in res.videos] == [
        ["run", "swim"],
        ["swim", "run"],
        ["run", "swim"],
    ]
    assert res.skipped == [["d.mp4", "d.mp4: cannot open"]]

    results = {
        "split1": SplitResult(50.0, 80.0, 10, classes, {}),
        "split2": SplitResult(70.0, 90.0, 10, classes, {}),
        "split3": SplitResult(60.0, 100.0, 10, classes, {}),
    }
    summary = summarise(results)
    assert summary["top1"] == pytest.approx([60.0, np.sqrt(200 / 3)]) and summary[
        "top5"
    ] == pytest.approx([90.0, np.sqrt(200 / 3)])
    assert "mean ± std" in results_table(results, summary)


@pytest.mark.slow
def test_eval_writes_results_and_reuses_cached_captions(fitted, tiny_clip_dir, tmp_path):
    root, videos = fitted
    (tmp_path / "test.txt").write_text("blue.mp4,swimming\nred.mp4,playing guitar\n")
    (tmp_path / "classes.txt").write_text("riding a bike\nplaying guitar\nswimming\n")
    common = [
        "eval",
        "--protocol",
        "list",
        "--data-root",
        root,
        "--splits",
        tmp_path / "test.txt",
        "--model",
        root / "model",
        "--clip",
        tiny_clip_dir,
        "--cache-dir",
        tmp_path / "cache",
        "--quiet",
    ]
    out = run(*common, "--classes", tmp_path / "classes.txt", "--out", tmp_path / "r1")
    assert out.returncode == 0, out.stderr
    # nothing was cached, so nothing is said about the cache
    assert "captions generated" not in out.stderr and "100.00" in out.stdout
    res = RunDir(tmp_path / "r1").read_results()
    split = res["splits"]["test"]
    assert split["top1"] == 100.0 and split["class_names"] == [
        "riding a bike",
        "playing guitar",
        "swimming",
    ]
    assert {Path(v["video"]).name: v["caption"] for v in split["videos"]} == {
        "blue.mp4": "swimming",
        "red.mp4": "playing guitar",
    }
    assert np.load(RunDir(tmp_path / "r1").embeddings)["test"].shape[0] == 2
    assert all(-1 <= v["video_caption_cosine"] <= 1 for v in split["videos"])

    (tmp_path / "more.txt").write_text("swimming\nplaying guitar\nsurfing\nplaying drums\n")
    again = run(
        *common,
        "--classes",
        tmp_path / "more.txt",
        "--template",
        "a video of {}.",
        "--out",
        tmp_path / "r2",
    )
    # re-scored from the cache
    assert again.returncode == 0 and "0 captions generated" in again.stderr

    for method in ("clip", "blip-frame"):
        base = run(
            *common,
            "--classes",
            tmp_path / "classes.txt",
            "--method",
            method,
            "--out",
            tmp_path / method,
        )
        assert base.returncode == 0, base.stderr
        got = RunDir(tmp_path / method).read_results()
        assert got["method"] == method and got["splits"]["test"]["num_videos"] == 2


def test_few_shot_sampling_is_seeded_and_takes_m_per_class_from_train(tmp_path):
    touch(
        tmp_path,
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "brush_hair/Atempting_to_brush_hair_u_nm_np1_fr_goo_0.avi",
        "brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi",
        "cartwheel/Cartwheel_Lesson_cartwheel_f_cm_np1_ri_med_0.avi",
        "cartwheel/Gymnastics_cartwheel_f_cm_np1_le_bad_1.avi",
    )
    train = read_hmdb51(FIXTURES / "hmdb51", tmp_path, split=2, subset="train")
    test = read_hmdb51(FIXTURES / "hmdb51", tmp_path, split=2, subset="test")
    picks = sample_shots(train, 1, seed=0)
    assert sorted(it.label for it in picks) == [0, 1] and picks == sample_shots(train, 1, seed=0)
    assert not {it.path for it in picks} & {it.path for it in test.items}
    many = Split([VideoItem(f"v{i}.mp4", i % 2) for i in range(40)], ["a", "b"])
    draws = {tuple(it.path for it in sample_shots(many, 4, seed)) for seed in range(5)}
    assert len(draws) > 1 and all(len(d) == 8 for d in draws)
    assert sorted(it.label for it in sample_shots(many, 4, 3)) == [0] * 4 + [1] * 4
    with pytest.raises(ValueError, match="has 20 training videos, fewer than 32 shots"):
        sample_shots(many, 32)
    assert [fewshot_epochs(m) for m in (2, 4, 8, 16)] == [200, 100, 50, 30]


def test_run_fewshot_trains_on_train_side_shots_and_tests_on_the_test_side(tmp_path, monkeypatch):
    import genact.evaluation.fewshot as fewshot

    splits = tmp_path / "splits"
    splits.mkdir()
    for c in ("climb", "dive"):
        lines = [f"{c}_train_{i}.avi 1" for i in range(4)] + [
            f"{c}_test_{i}.avi 2" for i in range(3)
        ]
        lines += [f"{c}_unused_{i}.avi 0" for i in range(2)]
        (splits / f"{c}_test_split1.txt").write_text("\n".join(lines) + "\n")
        touch(tmp_path / "videos", *[f"{c}/{ln.split()[0]}" for ln in lines])
    seen = {}

    def capture(test, items, *args, **kwargs):
        seen.update(test=test, items=items)
        return {"splits": {}}

    monkeypatch.setattr(fewshot, "finetune_and_evaluate", capture)
    fewshot.run_fewshot(
        "hmdb51",
        tmp_path / "videos",
        splits,
        "model",
        clip="clip",
        shots=2,
        split=1,
        out_dir=tmp_path / "out",
        seed=3,
    )
    picked = [Path(it.path).name for it in seen["items"]]
    assert len(picked) == 4 and all("_train_" in n for n in picked)
    assert sorted(it.label for it in seen["items"]) == [0, 0, 1, 1]
    assert sorted(Path(it.path).name.split("_")[1] for it in seen["test"].items) == ["test"] * 6


def test_few_shot_from_a_regen_model_uses_regens_optimiser(fitted, tmp_path, monkeypatch, caplog):
    import logging

    import genact.evaluation.fewshot as fewshot
    from genact.errors import ConfigError
    from genact.models import VideoBlip

    root, videos = fitted
    for kind in ("regen", "rest"):
        model = VideoBlip.from_pretrained(root / "model")
        model.config.trained_by = kind
        model.save_pretrained(tmp_path / kind)
    seen = []
    monkeypatch.setattr(
        fewshot,
        "train_on_class_names",
        lambda cfg, items, names, dist=None, rehearsal=None: seen.append(cfg.optim),
    )
    test = Split([VideoItem(str(v), i) for i, v in enumerate(videos)], ["a", "b"])
    for kind, overrides in (("regen", []), ("regen", ["optim.lr=1e-5"]), ("rest", [])):
        with caplog.at_level(logging.INFO), pytest.raises(ConfigError, match="stopped early"):
            fewshot.finetune_and_evaluate(
                test,
                test.items,
                str(tmp_path / kind),
                clip="clip",
                name="s",
                run_dir=tmp_path / "o",
                meta={},
                overrides=overrides,
            )
    assert [(o.lr, o.min_lr, o.weight_decay) for o in seen] == [
        (2.5e-6, 2.5e-8, 0.01),
        (1e-5, 2.5e-8, 0.01),
        (2e-5, 2e-8, 0.001),
    ]
    # the log names the rate in effect, the user's override included
    logged = [r.getMessage() for r in caplog.records if "few-shot optimiser" in r.getMessage()]
    assert [m.split(": ")[1] for m in logged] == [
        "lr 2.5e-06 to 2.5e-08, weight decay 0.01",
        "lr 1e-05 to 2.5e-08, weight decay 0.01",
        "lr 2e-05 to 2e-08, weight decay 0.001",
    ]
    assert "for a regen model (ReGen supp. A.2" in logged[1]


@pytest.mark.slow
def test_few_shot_training_beats_chance(tiny_blip_dir, tiny_clip_dir, tmp_path):
    """UCF-101 layout, 3 classes of coloured videos, 2 shots each."""
    write_ucf101(tmp_path, ["Surfing", "Rowing", "Diving"], videos=4, train=3)
    out = run(
        "fewshot",
        "--protocol",
        "ucf101",
        "--data-root",
        tmp_path / "videos",
        "--splits",
        tmp_path / "splits",
        "--model",
        tiny_blip_dir,
        "--clip",
        tiny_clip_dir,
        "--shots",
        "2",
        "--split",
        "1",
        "--quiet",
        "--out",
        tmp_path / "fs",
        "data.frames=2",
        "data.num_workers=0",
        "optim.epochs=40",
        "optim.batch_size=3",
        "optim.lr=1e-2",
        "model.use_adapters=false",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = RunDir(tmp_path / "fs" / "2shot-split1").read_results()
    assert res["model"] == str(
        RunDir(tmp_path / "fs" / "2shot-split1" / "train").final
    )  # the model scored
    assert len(res["train_videos"]) == 6 and res["splits"]["split1"]["num_videos"] == 3
    assert res["splits"]["split1"]["top1"] > 100 / 3, res["splits"]["split1"]["videos"]
    table = RunDir(tmp_path / "fs").read_fewshot()
    assert table["shots"]["2"]["top1"]["1"] == res["splits"]["split1"]["top1"]


REFS = [
    ["a man is playing a guitar on a stage", "someone plays the guitar"],
    ["a woman swims in a pool", "a person is swimming laps in the water"],
]


@pytest.mark.slow
@pytest.mark.parametrize("java", [True, False])
def test_caption_metrics_rank_good_captions_above_bad_ones(java):
    from genact.evaluation.caption_metrics import caption_metrics

    good, note = caption_metrics(
        REFS, ["a man is playing a guitar", "a woman swims in a pool"], java=java
    )
    bad, _ = caption_metrics(REFS, ["a dog runs on grass", "a car on the road"], java=java)
    names = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"] + (
        ["METEOR"] if java else []
    )
    assert sorted(good) == sorted(names) and (note == "") == java
    for name in names:
        assert good[name] > bad[name], name
    assert good["BLEU-1"] == pytest.approx(1.0, abs=0.05)  # every candidate word is in a reference


@pytest.mark.slow
def test_caption_metrics_command_on_vatex_json(fitted, tmp_path):
    root, videos = fitted
    ann = [
        {"videoID": "blue", "enCap": ["swimming", "a person swimming"]},
        {"videoID": "red", "enCap": ["playing guitar", "someone playing guitar"]},
        {"videoID": "absent", "enCap": ["nothing"]},
    ]
    (tmp_path / "vatex.json").write_text(json.dumps(ann))
    out = run(
        "caption-metrics",
        "--model",
        root / "model",
        "--annotations",
        tmp_path / "vatex.json",
        "--data-root",
        root,
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        tmp_path / "out",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    assert "1 of 3 annotated videos not found" in out.stderr
    res = json.loads((RunDir(tmp_path / "out").caption_metrics).read_text())
    # captions equal a reference
    assert res["videos"] == 2 and res["scores"]["BLEU-1"] == pytest.approx(1.0)
    assert "CIDEr" in out.stdout


def fake_results(folder: Path, method: str, spread: float, seed: int) -> None:
    """A results folder in the format `genact eval` writes: 3 classes x 5 videos."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16))
    videos, emb = [], []
    for i in range(15):
        c = i % 3
        emb.append(centres[c] + spread * rng.normal(size=16))
        videos.append(
            {
                "video": f"v{i}.mp4",
                "label": ["run", "swim", "jump"][c],
                "caption": f"caption {i}",
                "video_caption_cosine": float(rng.uniform(0.2, 0.35)),
                "top5": ["run", "swim", "jump"],
            }
        )
    splits = {
        f"split{k}": {
            "top1": 40.0 + k,
            "top5": 80.0,
            "num_videos": 15,
            "class_names": ["run", "swim", "jump"],
            "per_class": {},
            "videos": videos,
            "skipped": [],
        }
        for k in (1, 2, 3)
    }
    res = {
        "protocol": "hmdb51",
        "model": "m",
        "clip": "c",
        "method": method,
        "templates": ["{}"],
        "mean_std": {"top1": [42.0, 0.8165], "top5": [80.0, 0.0]},
        "splits": splits,
    }
    folder.mkdir(parents=True)
    (RunDir(folder).results).write_text(json.dumps(res))
    np.savez(RunDir(folder).embeddings, **{k: np.array(emb, dtype=np.float16) for k in splits})


@pytest.mark.slow
def test_report_renders_tables_plots_and_caption_evolution(tmp_path):
    from genact.training.bank import CaptionBank

    fake_results(tmp_path / "rest", "genact", 1.0, 0)
    fake_results(tmp_path / "regen", "genact", 0.2, 1)
    run_dir = tmp_path / "run"
    bank = CaptionBank(["a.mp4", "b.mp4"])
    bank.add(0, "a man walks", 0, "init")
    bank.add(1, "a dog", 0, "init")
    RunDir(run_dir).save_bank(bank, 0)
    bank.add(0, "a man runs on a track", 1, "generated")
    RunDir(run_dir).save_bank(bank, 1)
    out = run(
        "report", tmp_path / "rest", tmp_path / "regen", run_dir, "--out", tmp_path / "report"
    )
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    for section in (
        "Results and the papers",
        "49.7 ± 1.14",
        "42.00 ± 0.82",
        "t-SNE",
        "Video-caption cosine",
        "Caption evolution across REST rounds",
        "a man runs on a track [generated r1]",
    ):
        assert section in page, section
    assert page.count("data:image/png;base64,") == 2
    import matplotlib.image

    for name in ("tsne.png", "cosine.png"):
        png = (tmp_path / "report" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(tmp_path / "report" / name).shape[0] > 100
    bad = run("report", tmp_path / "nothing", "--out", tmp_path / "r2")
    assert bad.returncode == 2 and "neither an evaluation" in bad.stderr


def test_few_shot_train_list_uses_the_protocol_class_order(tmp_path):
    from genact.data import read_list

    touch(tmp_path, "a.mp4", "b.mp4")
    (tmp_path / "shots.txt").write_text("a.mp4 1\nb.mp4 0\n")  # ViFi-CLIP style: integer labels
    split = read_list(tmp_path / "shots.txt", tmp_path, class_names=["brush hair", "cartwheel"])
    assert [(Path(it.path).name, it.label) for it in split.items] == [("a.mp4", 1), ("b.mp4", 0)]
    assert split.class_names == ["brush hair", "cartwheel"]


@pytest.mark.slow
def test_few_shot_on_your_own_lists_draws_shots_from_the_pool_or_takes_it_whole(
    tiny_blip_dir, tiny_clip_dir, tmp_path
):
    """`--protocol list`: a pool list, a test list and a class file of one's own."""
    write_ucf101(tmp_path, ["Surfing", "Rowing", "Diving"], videos=4, train=3)
    splits = tmp_path / "splits"
    (tmp_path / "classes.csv").write_text("id,name\n0,Surfing\n1,Rowing\n2,Diving\n")
    label = {"Surfing": 0, "Rowing": 1, "Diving": 2}
    for name, src in (("pool.txt", "trainlist01.txt"), ("test.txt", "testlist01.txt")):
        rows = [ln.split()[0] for ln in (splits / src).read_text().splitlines()]
        (tmp_path / name).write_text("".join(f"{r} {label[r.split('/')[0]]}\n" for r in rows))
    common = [
        "fewshot",
        "--protocol",
        "list",
        "--data-root",
        tmp_path / "videos",
        "--splits",
        tmp_path / "test.txt",
        "--train-list",
        tmp_path / "pool.txt",
        "--classes",
        tmp_path / "classes.csv",
        "--model",
        tiny_blip_dir,
        "--clip",
        tiny_clip_dir,
        "--quiet",
        "--out",
        tmp_path / "fs",
        "data.frames=2",
        "data.num_workers=0",
        "optim.epochs=2",
        "optim.batch_size=3",
        "model.use_adapters=false",
    ]
    for shots, videos in (("2", 6), ("all", 9)):
        out = run(*common, "--shots", shots)
        assert out.returncode == 0, out.stderr[-3000:]
        res = RunDir(tmp_path / "fs" / f"{shots}shot-split1").read_results()
        assert len(res["train_videos"]) == videos and res["splits"]["split1"]["num_videos"] == 3
        assert res["splits"]["split1"]["class_names"] == ["surfing", "rowing", "diving"]
    assert set(RunDir(tmp_path / "fs").read_fewshot()["shots"]) == {"all"}
    missing = run(*[a for a in common if a not in ("--classes", tmp_path / "classes.csv")])
    assert (
        missing.returncode == 2 and "needs --train-list (the pool) and --classes" in missing.stderr
    )


def test_the_report_never_averages_different_settings_and_shows_a_callers_tables(tmp_path):
    """The world's unseen (1-vs-12) and generalized (1-vs-36) splits are different
    questions: each gets its own column, with no mean ± std and no papers' rows."""
    from genact.evaluation.report import build_report

    fake_results(tmp_path / "world", "genact", 1.0, 0)
    res = RunDir(tmp_path / "world").read_results()
    res["protocol"] = "world"
    res["splits"] = {
        "unseen": {**res["splits"]["split1"], "top1": 59.17},
        "generalized": {**res["splits"]["split2"], "top1": 29.79},
    }
    RunDir(tmp_path / "world").write_results(json.dumps(res))
    page = build_report(
        [tmp_path / "world"],
        tmp_path / "report",
        tables=[
            (
                "The papers' effects in the world",
                ["effect", "difference"],
                [["REST > frame captioner", "+8.5"]],
            )
        ],
    ).read_text()
    assert "59.17" in page and "29.79" in page and "44.48" not in page and "±" not in page
    assert "papers' numbers" not in page and "unseen top-1" in page and "generalized top-1" in page
    assert page.index("The papers&#x27; effects in the world") < page.index("<h2>Results</h2>")
    assert "REST &gt; frame captioner" in page


def test_evaluation_decodes_each_video_once_with_the_same_cosines(
    fitted, tiny_clip_dir, tmp_path, monkeypatch
):
    """The captioner and CLIP take their inputs from one decode of each video; the
    caption-video cosines equal those of CLIP features from a decode of its own."""
    import genact.data.datasets as datasets
    from genact.config import Decoding
    from genact.inference.captions import Captioner
    from genact.inference.features import encode_videos
    from genact.models import FrozenClip

    root, videos = fitted
    items = [VideoItem(str(v), i) for i, v in enumerate(videos)]
    clip = FrozenClip.from_pretrained(tiny_clip_dir)
    decodes, real = [], datasets.read_video_sides
    monkeypatch.setattr(
        datasets, "read_video_sides", lambda *a, **k: decodes.append(a[0]) or real(*a, **k)
    )
    captioner = Captioner.load(
        str(root / "model"),
        Decoding(max_new_tokens=5),
        cache_dir=tmp_path / "cache",
        device=torch.device("cpu"),
        progress=False,
    )
    res, emb = score_captions(
        Split(items, ["blue", "red"]), clip, captioner, templates=["{}"], frames=4, progress=False
    )
    assert sorted(decodes) == sorted(str(v) for v in videos)  # once each, for both models
    alone = encode_videos(clip, items, 4, progress=False)
    for j, video in enumerate(res.videos):
        assert video["video_caption_cosine"] == pytest.approx(float(emb[j] @ alone[j]), abs=1e-6)
    decodes.clear()  # CLIP at other frames than the captioner's: a decode of its own
    score_captions(
        Split(items, ["blue", "red"]), clip, captioner, templates=["{}"], frames=2, progress=False
    )
    assert len(decodes) == 2  # the captions were cached; CLIP decoded each video


def test_rehearsal_takes_the_rest_runs_videos_with_their_last_captions(make_video, tmp_path):
    """rehearsal_set: the REST run's last bank, `count` videos drawn with the seed, each
    with its pseudo-captions; a video whose file is gone is left out; not a REST run,
    or no readable video, is one clear error."""
    from genact.data.datasets import video_id, video_item
    from genact.errors import ConfigError, DataError
    from genact.evaluation.fewshot import rehearsal_set
    from genact.training.bank import CaptionBank

    videos = [VideoItem(str(make_video(f"r{i}.mp4"))) for i in range(4)]
    windowed = VideoItem(videos[0].path, start=1.5, end=3.0)
    assert video_item(video_id(windowed)) == windowed
    items = videos + [VideoItem(str(tmp_path / "gone.mp4"))]
    run = RunDir(tmp_path / "rest")
    for r, suffix in ((0, "old"), (1, "new")):
        bank = CaptionBank([video_id(it) for it in items])
        for i in range(len(items)):
            bank.add(i, f"caption {i} {suffix}", r, "init")
        run.path.joinpath("bank").mkdir(parents=True, exist_ok=True)
        run.save_bank(bank, r)
    got = rehearsal_set(run.path, 3, seed=0)
    assert len(got) == 3 and all(c == [f"caption {videos.index(it)} new"] for it, c in got)
    assert rehearsal_set(run.path, 3, seed=0) == got  # the seed fixes the draw
    assert len(rehearsal_set(run.path, 10)) == 4  # the missing file is left out
    with pytest.raises(ConfigError, match="caption bank"):
        rehearsal_set(tmp_path, 3)
    for it in videos:
        Path(it.path).unlink()
    with pytest.raises(DataError, match="none of the run's training videos"):
        rehearsal_set(run.path, 3)


def test_the_report_plots_a_model_that_gives_every_video_one_caption(tmp_path):
    """A collapsed model (one caption for every video: identical caption embeddings)
    gets its panel from PCA; sklearn's t-SNE on identical points kills the process."""
    from genact.evaluation.report import tsne_figure

    videos = [{"label": f"class {i % 3}"} for i in range(40)]
    model = {
        "name": "collapsed",
        "embeddings": {"test": np.ones((40, 8), np.float32)},
        "results": {"method": "genact", "splits": {"test": {"videos": videos}}},
    }
    assert tsne_figure([model], "test").startswith(b"\x89PNG")
    model["embeddings"]["test"][::2, 0] = 2.0  # two captions: t-SNE runs
    assert tsne_figure([model], "test").startswith(b"\x89PNG")
