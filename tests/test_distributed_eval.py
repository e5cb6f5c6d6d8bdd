"""Evaluation and captioning under torchrun: two processes (gloo) share the videos out
and give exactly what one process gives, unreadable videos included."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genact.data import write_video
from genact.testing import coloured_frames
from genact.training.rundir import RunDir
from helpers import free_port, write_ucf101

pytestmark = pytest.mark.slow  # end to end: `make test-fast` leaves these out

CLASSES = ["red thing", "green thing", "blue thing"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Seven readable videos of three colours (an odd count: the shares differ) and one
    broken file."""
    root = tmp_path_factory.mktemp("dist_eval")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(7):
        write_video(
            root / "videos" / f"v{i}.mp4", coloured_frames(rng, (8, 32, 32), i % 3, 160 + 10 * i)
        )
        lines.append(f"v{i}.mp4,{CLASSES[i % 3]}")
    (root / "videos" / "broken.mp4").write_bytes(b"not a video")
    lines.insert(3, "broken.mp4,red thing")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def genact(*args, procs: int = 1) -> subprocess.CompletedProcess:
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(procs),
            "--master_port",
            str(free_port()),
        ]
        if procs > 1
        else [sys.executable]
    )
    return subprocess.run(
        [*launcher, "-m", "genact", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_two_processes_evaluate_exactly_like_one(videos, tiny_blip_dir, tiny_clip_dir):
    results = {}
    for procs in (1, 2):
        out_dir = videos / f"eval{procs}"
        out = genact(
            "eval",
            "--protocol",
            "list",
            "--data-root",
            videos / "videos",
            "--splits",
            videos / "test.txt",
            "--classes",
            videos / "classes.txt",
            "--model",
            tiny_blip_dir,
            "--clip",
            tiny_clip_dir,
            "--frames",
            2,
            "--max-new-tokens",
            6,
            "--batch-size",
            2,
            "--cache-dir",
            videos / f"cache{procs}",
            "--out",
            out_dir,
            "--quiet",
            procs=procs,
        )
        assert out.returncode == 1, out.stderr[
            -3000:
        ]  # 1: a video was unreadable (the rest are scored)
        # one table and one closing line, from the main process, whatever the number of processes
        assert out.stdout.count("top-1") == 1
        assert (
            out.stderr.count("genact: results in") == 1
            and "captions generated" not in out.stderr
            and out.stderr.count("skipped 1 unreadable") == 1
        )
        results[procs] = RunDir(out_dir).read_results()["splits"]["test"]
    one, two = results[1], results[2]
    assert [v["video"] for v in two["videos"]] == [v["video"] for v in one["videos"]]
    assert [v["caption"] for v in two["videos"]] == [v["caption"] for v in one["videos"]]
    assert [v["top5"] for v in two["videos"]] == [v["top5"] for v in one["videos"]]
    for key in ("top1", "top5", "num_videos", "per_class", "skipped"):
        assert two[key] == one[key], key
    assert one["num_videos"] == 7 and [Path(p).name for p, _ in one["skipped"]] == ["broken.mp4"]
    np.testing.assert_allclose(
        [v["video_caption_cosine"] for v in two["videos"]],
        [v["video_caption_cosine"] for v in one["videos"]],
        atol=1e-3,
    )
    # both processes wrote their share of the captions to the shared cache: a rerun generates
    # nothing
    again = genact(
        "caption",
        videos / "videos",
        "--model",
        tiny_blip_dir,
        "--frames",
        2,
        "--max-new-tokens",
        6,
        "--cache-dir",
        videos / "cache2",
        "--json",
        "--quiet",
        procs=2,
    )
    assert again.returncode == 1, again.stderr[-3000:]
    rows = json.loads(again.stdout)  # printed once, by the main process
    assert {Path(r["video"]).name: r["caption"] for r in rows} == {
        Path(v["video"]).name: v["caption"] for v in one["videos"]
    }
    assert again.stderr.count("skipped 1 unreadable") == 1


def test_two_processes_evaluate_clip_features_like_one(videos, tiny_clip_dir):
    results = {}
    for procs in (1, 2):
        out_dir = videos / f"clip{procs}"
        out = genact(
            "eval",
            "--protocol",
            "list",
            "--data-root",
            videos / "videos",
            "--splits",
            videos / "test.txt",
            "--classes",
            videos / "classes.txt",
            "--method",
            "clip",
            "--clip",
            tiny_clip_dir,
            "--frames",
            2,
            "--cache-dir",
            videos / f"clipcache{procs}",
            "--out",
            out_dir,
            "--quiet",
            procs=procs,
        )
        assert out.returncode == 1, out.stderr[-3000:]  # the broken video
        results[procs] = RunDir(out_dir).read_results()["splits"]["test"]
        emb = np.load(RunDir(out_dir).embeddings)["test"]
        assert emb.shape[0] == 7
        results[procs]["emb"] = emb
    one, two = results[1], results[2]
    assert [v["top5"] for v in two["videos"]] == [v["top5"] for v in one["videos"]]
    assert two["top1"] == one["top1"] and two["skipped"] == one["skipped"]
    np.testing.assert_allclose(two["emb"], one["emb"], atol=1e-3)


def test_each_process_captions_its_fixed_share_whatever_the_cache_holds(
    videos, tiny_blip_dir, monkeypatch
):
    """Rank 0 of 2 looks at the shared cache after rank 1 stored its video: rank 0
    must still caption both videos of its own share (a share drawn from the videos
    not yet cached would skip one of them, and no process would caption it)."""
    from genact.config import Decoding
    from genact.data import SkipReport, VideoItem
    from genact.distributed import Dist
    from genact.inference import captions as captions_module
    from genact.inference.captions import Captioner

    items = [VideoItem(str(videos / "videos" / f"v{i}.mp4")) for i in range(3)]
    captioner = Captioner.load(
        str(tiny_blip_dir),
        Decoding(frames=2, max_new_tokens=4),
        cache_dir=videos / "race-cache",
        device="cpu",
        progress=False,
        dist=Dist(rank=0, world=2),
    )
    rank1 = captions_module.video_id(items[1], 2)
    captioner.cache.add({rank1: "stored by rank 1"})
    monkeypatch.setattr(
        captions_module,
        "all_gather",
        lambda obj, dist: [obj, ({1: "stored by rank 1"}, {}, [])],  # (captions, features, skips)
    )
    monkeypatch.setattr(captions_module, "all_reduce_sum", lambda values, dist: [values[0] + 1])
    got = captioner(items, SkipReport())
    assert sorted(got) == [0, 1, 2] and got[1] == "stored by rank 1"
    assert captioner.generated == 3  # two here, one by rank 1


def test_two_processes_fine_tune_and_evaluate_few_shot_like_one(
    tiny_blip_dir, tiny_clip_dir, tmp_path
):
    """`torchrun genact fewshot`: DDP fine-tuning, then the test videos shared out."""
    write_ucf101(tmp_path, ["Surfing", "Rowing", "Diving"], videos=4, train=2)
    results = {}
    for procs in (1, 2):
        out = genact(
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
            2,
            "--quiet",
            "--out",
            tmp_path / f"fs{procs}",
            "data.frames=2",
            "data.num_workers=0",
            "optim.epochs=30",
            "optim.batch_size=3",
            "optim.global_batch=6",
            "optim.lr=1e-2",
            "model.use_adapters=false",
            procs=procs,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.count("split1") == 1  # the table, printed once
        results[procs] = RunDir(tmp_path / f"fs{procs}" / "2shot-split1").read_results()
    one, two = (results[p]["splits"]["split1"] for p in (1, 2))
    assert one["num_videos"] == two["num_videos"] == 6
    assert [v["caption"] for v in two["videos"]] == [v["caption"] for v in one["videos"]]
    assert two["top1"] == one["top1"] > 100 / 3
