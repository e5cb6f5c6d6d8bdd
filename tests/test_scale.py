"""Scale: the CPU thread default, the REST pipeline benchmark run at a tiny size, and the
sweeps' per-seed summary."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genact.distributed import cpu_threads

pytestmark = pytest.mark.slow  # end to end: `make test-fast` leaves these out

ROOT = Path(__file__).parent.parent


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))  # an 8-core machine
    yield monkeypatch
    torch.set_num_threads(before)


def test_cpu_threads_share_the_cores_among_processes_and_decoding_workers(restore_threads):
    assert cpu_threads(None, workers=0) == 8 and torch.get_num_threads() == 8
    assert cpu_threads(None, workers=3) == 2 and torch.get_num_threads() == 2
    assert cpu_threads(None, workers=20) == 1  # never zero
    restore_threads.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two processes on this node
    assert cpu_threads(None, workers=1) == 2
    # the user's (or torchrun's) setting wins over the rule
    restore_threads.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(None, workers=1) == 3 and torch.get_num_threads() == 3
    # and run.threads / --threads over that
    assert cpu_threads(5, workers=1) == 5 and torch.get_num_threads() == 5


def test_run_threads_reaches_torch_in_a_training_run(tiny_blip_dir, tmp_path, restore_threads):
    import numpy as np

    from genact.config import SupervisedConfig, load_config
    from genact.data import write_video
    from genact.testing import coloured_frames
    from genact.training.run import Run

    write_video(tmp_path / "a.mp4", coloured_frames(np.random.default_rng(0), (4, 16, 16), 0, 180))
    for threads, workers, expected in (("null", 3, 2), ("3", 3, 3)):
        cfg = load_config(
            SupervisedConfig,
            None,
            [
                f"run.dir={tmp_path / 'run'}",
                f"model.blip={tiny_blip_dir}",
                f"run.threads={threads}",
                f"data.num_workers={workers}",
                f"data.root={tmp_path}",
                "data.format=folder",
            ],
        )
        with Run(cfg, logging.getLogger("test")):
            assert torch.get_num_threads() == expected


def test_rest_pipeline_benchmark_projects_a_k400_run(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "rest_pipeline.py"),
            "--videos",
            "2",
            "--size",
            "32",
            "--frames",
            "2",
            "--hidden",
            "64",
            "--layers",
            "1",
            "--caption-batch",
            "2",
            "--train-batch",
            "2",
            "--tokens",
            "3",
            "--neighbour-videos",
            "256",
            "--neighbours",
            "16",
            "--out",
            str(tmp_path / "rest.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads((tmp_path / "rest.json").read_text())
    stages = [
        "initial captions",
        "CLIP video features",
        "CLIP text features",
        "training",
        "caption generation",
    ]
    assert list(got["rates"]) == stages and all(v > 0 for v in got["rates"].values())
    hours = got["projected_hours"]
    assert hours["REST total"] == pytest.approx(
        sum(v for k, v in hours.items() if k != "REST total" and not k.startswith("evaluation"))
    )
    # 60 epochs of 240k videos at the measured training rate, the stage that dominates at every size
    assert hours["training"] == pytest.approx(60 * 240_000 / got["rates"]["training"] / 3600)
    assert "projected for K400 REST" in out.stdout


def test_the_sweeps_summary_gives_each_seeds_difference_its_mean_and_the_seeds_above(monkeypatch):
    """bench_helpers.seed_table, which regen_sweep, fewshot_sweep and adapter_lr print:
    the differences in the seeds' order asked for (not the order the rows came in), their
    mean, and how many are above 0 (a tie is not)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_helpers import seed_table

    rows = {"lr 5e-4, 12 epochs": {3: 2.0, 0: -1.0, 1: 0.0}, "1": {0: 4.0, 1: 5.0, 3: 6.0}}
    head, first, second = seed_table("setting", rows, [0, 1, 3]).splitlines()
    assert head.split() == ["setting", "seed", "0", "seed", "1", "seed", "3", "mean"]
    assert first.split()[4:] == ["-1.0", "+0.0", "+2.0", "+0.3", "above", "on", "1", "of", "3"]
    assert second.split() == ["1", "+4.0", "+5.0", "+6.0", "+5.0", "above", "on", "3", "of", "3"]
    with pytest.raises(KeyError):  # a seed a setting lacks is not left out quietly
        seed_table("setting", {"x": {0: 1.0}}, [0, 1])
