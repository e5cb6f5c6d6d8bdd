"""Base-to-novel generalization on small files in ViFi-CLIP's published format."""

import subprocess
import sys

import numpy as np
import pytest

from genact.data import write_video
from genact.evaluation.base2novel import base2novel_sets, harmonic_mean
from genact.testing import coloured_frames
from genact.training.rundir import RunDir

BASE, NOVEL = ["ApplyEyeMakeup", "BrushHair"], ["CuttingInKitchen", "Diving"]


@pytest.fixture(scope="module")
def vifi(tmp_path_factory):
    """Videos of four classes, three samplings of 2 base shots, base and novel test lists."""
    root = tmp_path_factory.mktemp("b2n")
    rng = np.random.default_rng(0)
    for c, name in enumerate(BASE + NOVEL):
        for g in range(4):
            write_video(
                root / "videos" / name / f"v_{name}_g{g}.mp4",
                coloured_frames(rng, (8, 32, 32), c % 3, 120 + 40 * (c // 3)),
            )
    splits = root / "splits"
    splits.mkdir()
    (splits / "ucf_base_labels.csv").write_text(
        "id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(BASE))
    )
    (splits / "ucf_novel_labels.csv").write_text(
        "id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(NOVEL))
    )
    for s in (1, 2, 3):
        picks = [(s - 1) % 3, s % 3]  # two of the first three videos of each base class
        (splits / f"fs_base_s{s}_train.txt").write_text(
            "".join(f"{n}/v_{n}_g{g}.mp4 {i}\n" for i, n in enumerate(BASE) for g in picks)
        )
    (splits / "base_val.txt").write_text(
        "".join(f"{n}/v_{n}_g3.mp4 {i}\n" for i, n in enumerate(BASE))
    )
    (splits / "novel_val.txt").write_text(
        "".join(f"{n}/v_{n}_g{g}.mp4 {i}\n" for i, n in enumerate(NOVEL) for g in (2, 3))
        + "gone.mp4 0\n"
    )
    return root


def test_vifi_clip_files_are_read_with_readable_names(vifi):
    shots, base, novel = base2novel_sets(vifi / "videos", vifi / "splits", 2)
    assert base.class_names == ["apply eye makeup", "brush hair"]
    assert novel.class_names == ["cutting in kitchen", "diving"] and novel.missing == ["gone.mp4"]
    assert len(shots) == 4 and sorted(it.label for it in shots) == [0, 0, 1, 1]
    assert {it.path.rsplit("_g", 1)[1] for it in shots} == {"1.mp4", "2.mp4"}  # sampling 2's picks
    assert harmonic_mean(80.0, 20.0) == pytest.approx(32.0) and harmonic_mean(0.0, 0.0) == 0.0


@pytest.mark.slow
def test_fewshot_base2novel_reports_base_novel_and_hm_per_sampling(
    vifi, tiny_blip_dir, tiny_clip_dir
):
    common = [
        sys.executable,
        "-m",
        "genact",
        "fewshot",
        "--protocol",
        "base2novel",
        "--data-root",
        str(vifi / "videos"),
        "--splits",
        str(vifi / "splits"),
        "--model",
        str(tiny_blip_dir),
        "--clip",
        str(tiny_clip_dir),
        "--quiet",
        "data.frames=2",
        "data.num_workers=0",
        "optim.epochs=2",
        "optim.batch_size=2",
        "model.use_adapters=false",
    ]
    out = subprocess.run(
        [*common, "--out", str(vifi / "all")], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    res = RunDir(vifi / "all").read_fewshot()
    assert sorted(res["samplings"]) == ["1", "2", "3"] and set(res["zero_shot"]) == {
        "base",
        "novel",
        "hm",
    }
    for row in [res["zero_shot"], *res["samplings"].values()]:
        assert row["hm"] == pytest.approx(harmonic_mean(row["base"], row["novel"]))
    assert res["mean_std"]["hm"][0] == pytest.approx(
        np.mean([r["hm"] for r in res["samplings"].values()])
    )
    assert "zero-shot" in out.stdout and "mean ± std" in out.stdout
    s1 = RunDir(vifi / "all" / "s1").read_results()
    assert len(s1["train_videos"]) == 4 and s1["splits"]["novel"]["class_names"] == [
        "cutting in kitchen",
        "diving",
    ]
    assert (
        s1["splits"]["novel"]["missing"] == ["gone.mp4"] and s1["splits"]["base"]["num_videos"] == 2
    )
    one = subprocess.run(
        [*common, "--shots-split", "2", "--out", str(vifi / "one")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0 and list(RunDir(vifi / "one").read_fewshot()["samplings"]) == ["2"]
