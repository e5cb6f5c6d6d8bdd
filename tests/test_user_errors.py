"""Every user mistake caught before the work starts, in one line: configs and command
lines, videos, folders and lists, class files, evaluation output, the one error
type at the CLI's edge, and what a person reads."""

import errno
import json
import os
import struct

import numpy as np
import pytest
import torch

import genact.cli as cli
import genact.evaluation.cli as evaluation_cli
from genact.config import RegenConfig, RestConfig, load_config
from genact.data import (
    Split,
    VideoDataset,
    VideoItem,
    VideoTransform,
    read_class_file,
    read_folder,
    read_list,
    read_video,
    write_video,
)
from genact.errors import ConfigError, DataError
from genact.evaluation.evaluate import evaluate
from genact.io import DiskFullError, atomic_dir, atomic_write_text
from genact.models import FrozenClip
from genact.regen.rewards import GrammarScorer
from genact.rest.run import run_rest
from genact.testing import coloured_frames
from genact.training.rundir import RunDir
from helpers import genact, one_error_line


def small_videos(root, n=4):
    rng = np.random.default_rng(0)
    for i in range(n):
        write_video(root / f"v{i}.mp4", coloured_frames(rng, (8, 32, 40), i % 3, 150))
    return root


# ---- configs and command lines ----------------------------------------------------
@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.batch_size=-2", "optim.batch_size=-2: must be >= 1"),
        ("optim.batch_size=0", "must be >= 1"),
        ("optim.epochs=0", "optim.epochs=0"),
        ("data.frames=0", "data.frames=0"),
        ("rest.num_beams=0", "num_beams"),
        ("rest.retrieval_rounds=-1", "must be >= 0"),
        ("optim.label_smoothing=1.5", "< 1"),
        ("optim.precision=fp16", "not one of auto, bf16, fp32"),
        ("data.format=lst", "not one of folder"),
        ("rest.neighbour_index=ivf", "not one of exact, faiss-ivf"),
        ("run.resume=yes", "not one of no, auto"),
    ],
)
def test_counts_and_choices_are_checked_when_the_config_loads(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(RestConfig, None, [override])
    # YAML's `no` is False
    assert load_config(RestConfig, None, ["run.resume=no"]).run.resume == "no"


def test_regen_choices_and_cross_field_rules():
    for override, message in [
        ("regen.samples=0", ">= 1"),
        ("regen.grammar=gpt", "not one of mlm, causal"),
        ("regen.cls_form=dot", "not one of ce"),
        ("regen.samples=1", "needs regen.samples >= 2"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(RegenConfig, None, [override])


@pytest.mark.slow
def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  dir: runs/x\noptim:\n  lr: [1e-5\n  epochs: 3\n")
    line = one_error_line(genact("rest", bad))
    assert f"{bad}:5:" in line and "YAML syntax error" in line
    assert "must be >= 1" in one_error_line(genact("rest", "optim.batch_size=-2", "data.root=x"))


@pytest.mark.slow
def test_options_go_anywhere_and_errors_show_the_sub_command_usage():
    args = cli.parse_args(["rest", "run.dir=x", "--resume", "optim.lr=1e-3", "--quiet"])
    assert args.resume and args.quiet and args.settings == ["run.dir=x", "optim.lr=1e-3"]
    out = genact("rest", "run.dir=x", "--bogus")
    assert (
        out.returncode == 2
        and out.stderr.startswith("usage: genact rest")
        and "--bogus" in out.stderr
    )


@pytest.mark.slow
def test_what_can_be_known_is_checked_before_the_work(
    tmp_path, tiny_blip_dir, tiny_clip_dir, monkeypatch
):
    videos = small_videos(tmp_path / "videos")
    base = [
        f"data.root={videos}",
        f"model.blip={tiny_blip_dir}",
        f"model.clip={tiny_clip_dir}",
        "data.frames=2",
        "data.num_workers=0",
        "run.progress=false",
        f"run.dir={tmp_path / 'run'}",
    ]
    with pytest.raises(ConfigError, match="4 training videos, fewer than optim.global_batch=64"):
        run_rest(load_config(RestConfig, None, base))
    with pytest.raises(Exception, match="no-such-clip"):
        run_rest(
            load_config(
                RestConfig,
                None,
                [
                    *base,
                    "optim.global_batch=4",
                    "optim.batch_size=4",
                    f"model.clip={tmp_path}/no-such-clip",
                ],
            )
        )
    assert (
        not RunDir(tmp_path / "run").caption_records("init").file.exists()
        and not RunDir(tmp_path / "run").is_run()
    )

    from transformers import BertConfig, BertForMaskedLM

    mlm = tmp_path / "mlm"
    BertForMaskedLM(
        BertConfig(
            vocab_size=50,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            intermediate_size=8,
        )
    ).save_pretrained(mlm)
    with pytest.raises(
        ConfigError, match="BertForMaskedLM, not a causal LM as regen.grammar=causal needs"
    ):
        GrammarScorer.check(mlm, "causal")
    assert GrammarScorer.check(mlm, "mlm") == mlm
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_error_line(
        genact(
            "regen",
            f"data.root={videos}",
            "regen.grammar_model=nobody/not-cached",
            f"run.dir={tmp_path / 'regen'}",
        )
    )
    assert "nobody/not-cached" in line and not RunDir(tmp_path / "regen").is_run()


def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_command(
    tmp_path, tiny_blip_dir, tiny_clip_dir
):
    videos = small_videos(tmp_path / "videos")
    settings = [
        f"model.blip={tiny_blip_dir}",
        f"model.clip={tiny_clip_dir}",
        "data.frames=2",
        "data.num_workers=0",
        "optim.global_batch=2",
        "optim.batch_size=2",
        "rest.neighbours=2",
        "rest.max_new_tokens=4",
        "run.progress=false",
        "run.stop_at_step=1",
        f"run.dir={tmp_path / 'run'}",
    ]
    with pytest.raises(DataError, match="no video files"):
        run_rest(load_config(RestConfig, None, [*settings, f"data.root={tmp_path / 'vidoes'}"]))
    # no --resume needed
    assert run_rest(load_config(RestConfig, None, [*settings, f"data.root={videos}"])) is None
    assert RunDir(tmp_path / "run").is_run()


# ---- videos, folders, lists -------------------------------------------------------
def test_a_symlink_loop_does_not_hang_a_scan_and_each_file_name_counts(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a" / "x.mp4", tmp_path / "alias.mp4")
    found = read_folder(tmp_path).items  # each real folder once (the loop ends), every name in it
    assert sorted(os.path.relpath(it.path, tmp_path) for it in found) == ["a/x.mp4", "alias.mp4"]


def test_the_same_file_name_in_two_folders_is_kept_and_a_lookup_by_name_says_it_is_ambiguous(
    tmp_path,
):
    for d in ("one", "two", "three"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "clip.mp4").write_bytes(b"")
    assert len(read_folder(tmp_path).items) == 3
    listing = tmp_path / "list.txt"
    listing.write_text("clip.mp4 0\n")
    with pytest.raises(DataError, match="clip.mp4: 3 videos below .* have this name"):
        read_list(listing, tmp_path, class_names=["a"])
    listing.write_text("two/clip.mp4 0\n")
    assert read_list(listing, tmp_path, class_names=["a"]).items[0].path == str(
        tmp_path / "two" / "clip.mp4"
    )


def test_a_list_of_bare_names_finds_videos_in_class_folders(tmp_path):
    for rel in ("brush_hair/April_brush_hair_0.avi", "cartwheel/Bob_cartwheel_1.avi"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    listing = tmp_path / "vifi.txt"
    listing.write_text("April_brush_hair_0.avi 0\nBob_cartwheel_1.avi 1\ngone.avi 1\n")
    split = read_list(listing, tmp_path, class_names=["brush hair", "cartwheel"])
    assert [(os.path.relpath(i.path, tmp_path), i.label) for i in split.items] == [
        ("brush_hair/April_brush_hair_0.avi", 0),
        ("cartwheel/Bob_cartwheel_1.avi", 1),
    ]
    assert split.missing == ["gone.avi"]


@pytest.mark.slow
def test_a_folder_named_like_a_video_is_skipped_and_counted(fitted, tmp_path):
    root, videos = fitted
    (tmp_path / "folder.mp4").mkdir()
    out = genact(
        "caption",
        tmp_path / "folder.mp4",
        videos[0],
        "--model",
        root / "model",
        "--cache-dir",
        tmp_path / "c",
    )
    assert out.returncode == 1, out.stderr[-2000:]  # 1: some videos were unreadable
    assert out.stdout.count("\n") == 1 and str(videos[0]) in out.stdout
    assert "skipped 1 unreadable video(s)" in out.stderr and "folder.mp4" in out.stderr


def rotated_copy(src, dst):
    """`src` with its track's display matrix set to a 90-degree turn, as a phone writes."""
    data = bytearray(src.read_bytes())
    matrix = data.find(b"tkhd") - 4 + 48
    struct.pack_into(">9i", data, matrix, 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))


def test_a_phone_videos_rotation_is_honoured(tmp_path):
    frames = np.zeros((8, 32, 48, 3), np.uint8)
    frames[:, :8, :, 0] = 255  # a red band along the top of the stored picture
    write_video(tmp_path / "stored.mp4", frames)
    rotated_copy(tmp_path / "stored.mp4", tmp_path / "phone.mp4")
    upright = read_video(tmp_path / "phone.mp4", 4)
    # shown turned a quarter clockwise: the band is on the right
    assert upright.shape == (4, 48, 32, 3)
    assert upright[:, :, -6:, 0].mean() > 200 and upright[:, :, :20, 0].mean() < 30
    assert read_video(tmp_path / "stored.mp4", 4).shape == (4, 32, 48, 3)


def test_a_large_frame_is_shrunk_while_still_uint8(tmp_path, monkeypatch):
    write_video(tmp_path / "big.mp4", np.full((4, 240, 320, 3), 90, np.uint8))
    small = read_video(tmp_path / "big.mp4", 2, max_short_side=40)
    assert small.shape == (2, 40, 53, 3) and small.dtype == np.uint8
    import genact.data.datasets as datasets

    seen, real = [], datasets.read_video_sides
    monkeypatch.setattr(
        datasets,
        "read_video_sides",
        lambda *a, **k: seen.append([f.shape for f in real(*a, **k)]) or real(*a, **k),
    )
    sample = VideoDataset([VideoItem(str(tmp_path / "big.mp4"))], 2, VideoTransform(size=16))[0]
    assert seen == [[(2, 32, 43, 3)]] and sample["pixels"].shape == (2, 3, 16, 16)


def test_one_decode_gives_each_model_the_frames_its_own_decode_gives(tmp_path):
    """Evaluation decodes a video once for the captioner and CLIP (`also`): each input
    equals what a dataset with that transform alone gives (shrunk to its own side)."""
    rng = np.random.default_rng(0)
    write_video(tmp_path / "v.mp4", rng.integers(0, 255, (12, 240, 320, 3), dtype=np.uint8))
    items = [VideoItem(str(tmp_path / "v.mp4"))]
    blip, clip = VideoTransform(size=24), VideoTransform(size=16)
    both = VideoDataset(items, 4, blip, also={"clip_pixels": clip})[0]
    assert torch.equal(both["pixels"], VideoDataset(items, 4, blip)[0]["pixels"])
    assert torch.equal(both["clip_pixels"], VideoDataset(items, 4, clip)[0]["pixels"])
    assert both["pixels"].shape[-1] == 24 and both["clip_pixels"].shape[-1] == 16
    with pytest.raises(ValueError):
        VideoDataset(items, 4, blip, train=True, also={"clip_pixels": clip})


# ---- class files ------------------------------------------------------------------
def test_class_files_bom_duplicates_headers_and_encodings(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_bytes("\ufeffriding bike\nswimming\n".encode("utf-8"))
    assert read_class_file(f) == ["riding bike", "swimming"]
    f.write_text("id,name\n0,abseiling\n1,air drumming\n")
    assert read_class_file(f) == ["abseiling", "air drumming"]
    f.write_text("0,abseiling\n1,air drumming\n")
    assert read_class_file(f) == ["abseiling", "air drumming"]
    # a first class without its id is not a header
    f.write_text("abseiling\n1,air drumming\n2,archery\n")
    with pytest.raises(DataError, match="line 1 'abseiling' has no class id"):
        read_class_file(f)
    f.write_text("swimming\nriding bike\nSwimming\n")
    with pytest.raises(DataError, match="more than once: swimming"):
        read_class_file(f)
    f.write_text("\n  \n")
    with pytest.raises(DataError, match="no class names"):
        read_class_file(f)
    f.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=f"{f}: not UTF-8"):
        read_class_file(f)


@pytest.mark.slow
def test_an_empty_class_file_stops_classify_before_any_video_is_decoded(
    fitted, tiny_clip_dir, tmp_path
):
    root, videos = fitted
    (tmp_path / "empty.txt").write_text("")
    line = one_error_line(
        genact(
            "classify",
            videos[0],
            "--model",
            root / "model",
            "--clip",
            tiny_clip_dir,
            "--classes",
            tmp_path / "empty.txt",
            "--cache-dir",
            tmp_path / "c",
        )
    )
    assert "empty.txt: no class names" in line and not (tmp_path / "c").exists()


# ---- evaluation output ------------------------------------------------------------
@pytest.mark.slow
def test_eval_with_a_wrong_data_root_is_an_error_and_results_are_strict_json(
    fitted, tiny_clip_dir, tmp_path
):
    root, videos = fitted
    data = tmp_path / "data"
    data.mkdir()
    for v in videos:
        (data / v.name).write_bytes(v.read_bytes())
    (data / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "classes.txt").write_text("blue\nred\ngreen\n")
    listing = tmp_path / "test.txt"
    listing.write_text(f"{videos[0].name} 0\n{videos[1].name} 1\ngone.mp4 1\nbroken.mp4 0\n")
    common = [
        "eval",
        "--protocol",
        "list",
        "--splits",
        listing,
        "--classes",
        tmp_path / "classes.txt",
        "--model",
        root / "model",
        "--clip",
        tiny_clip_dir,
        "--cache-dir",
        tmp_path / "c",
        "--quiet",
    ]
    line = one_error_line(
        genact(*common, "--data-root", tmp_path / "nowhere", "--out", tmp_path / "r0")
    )
    assert "none of the 4 listed test videos was found" in line and not (tmp_path / "r0").exists()
    out = genact(*common, "--data-root", data, "--out", tmp_path / "r")
    assert out.returncode == 1, out.stderr[
        -2000:
    ]  # 1: a video was unreadable; the others are scored
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("genact: skipped 1 unreadable video(s), e.g. ")
    )
    res = json.loads(
        RunDir(tmp_path / "r").results.read_text(), parse_constant=lambda c: pytest.fail(c)
    )
    split = res["splits"]["test"]
    assert split["missing"] == ["gone.mp4"] and [s[0] for s in split["skipped"]] == [
        str(data / "broken.mp4")
    ]
    assert split["per_class"]["green"] is None  # no test video of that class: null, not NaN
    assert "is a folder, expected a file" in one_error_line(
        genact(*common[:4], tmp_path, *common[5:], "--data-root", data)
    )


def test_a_split_that_decodes_nothing_is_an_error(tiny_clip_dir, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    split = Split([VideoItem(str(tmp_path / "bad.mp4"), 0)], ["a"])
    with pytest.raises(DataError, match="none of the 1 test videos could be read"):
        evaluate(
            {"s": split},
            FrozenClip.from_pretrained(tiny_clip_dir),
            None,
            method="clip",
            templates=["{}"],
            out_dir=tmp_path / "out",
            meta={},
        )


# ---- one error type at the edge ---------------------------------------------------
def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    def user_mistake(args):
        raise DataError("x.txt: no class names")

    def bug(args):
        raise ValueError("a genuine bug")

    for func in (user_mistake, bug):
        monkeypatch.setattr(evaluation_cli, "cmd_report", func)
        if func is bug:
            with pytest.raises(ValueError, match="a genuine bug"):
                cli.main(["report", "r", "--out", "o"])
        else:
            with pytest.raises(SystemExit) as stop:
                cli.main(["report", "r", "--out", "o"])
            assert (
                stop.value.code == 2
                and capsys.readouterr().err == "genact: error: x.txt: no class names\n"
            )


def test_a_full_disk_is_one_line_naming_the_path_and_leaves_nothing_half_written(
    tmp_path, monkeypatch
):
    target = tmp_path / "out.json"
    target.write_text("old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=f"{target}: no space left on the device"):
        atomic_write_text(target, "new")
    with pytest.raises(DiskFullError, match="model: no space"):
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            os.fsync(0)
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["out.json"] and target.read_text() == "old"
    )


# ---- what a person reads ----------------------------------------------------------
@pytest.mark.slow
def test_logs_to_a_file_have_no_progress_bars_and_no_future_warning_and_quiet_is_quiet(
    fitted, tmp_path
):
    root, videos = fitted
    listing = tmp_path / "train.txt"
    listing.write_text(
        "".join(f"{v.name} {name}\n" for v, name in zip(videos * 2, ["swimming", "surfing"] * 2))
    )
    out = genact(
        "supervised",
        f"data.root={root}",
        "data.format=list",
        f"data.list={listing}",
        f"model.blip={root / 'model'}",
        "data.num_workers=0",
        "optim.epochs=2",
        "optim.global_batch=2",
        "optim.batch_size=1",
        f"run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "\r" not in out.stderr and "it/s" not in out.stderr and "FutureWarning" not in out.stderr
    assert out.stderr.count("epoch 1/2 done") == 1 and out.stderr.count("epoch 2/2 done") == 1
    cap = genact("caption", *videos, "--model", root / "model", "--cache-dir", tmp_path / "c")
    assert cap.returncode == 0 and "FutureWarning" not in cap.stderr and "\r" not in cap.stderr
    quiet = genact(
        "caption", *videos, "--model", root / "model", "--cache-dir", tmp_path / "c2", "--quiet"
    )
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout.count("\n") == 2
