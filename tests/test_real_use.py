"""Never silently wrong, in real use: caches keyed by the video file itself, runs that
stop when they diverge, mistakes refused before the work, files written whole and
readable by others, checkpoints verified on resume."""

import dataclasses
import errno
import io
import json
import os
import shutil
import stat
import typing

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import genact.cli as cli
from genact.config import (
    DataConfig,
    RegenConfig,
    RestConfig,
    SupervisedConfig,
    check_template,
    expand_path,
    load_config,
)
from genact.data import VideoItem, read_class_file, read_list, write_video
from genact.data.datasets import video_id
from genact.errors import ConfigError, DataError
from genact.evaluation.clip_tam import ClipTam
from genact.inference.captions import CaptionCache
from genact.io import (
    DiskFullError,
    atomic_dir,
    atomic_file,
    atomic_write_text,
    disk_full_is_an_error,
)
from genact.models import FrozenClip, VideoBlip
from genact.models.hub import ModelNotFoundError, NonFiniteWeightsError
from genact.rest.run import run_rest
from genact.testing import coloured_frames
from genact.training.checkpoints import Checkpoints, TrainState
from genact.training.rundir import RunDir
from genact.training.summary import divergence_note
from genact.training.trainer import TrainingDiverged
from helpers import genact, one_error_line, tiny_rest_settings


# ---- caches keyed by the video file ------------------------------------------------
def test_cache_keys_name_the_file_itself(tmp_path, monkeypatch):
    for d in ("A", "B"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "clip.mp4").write_bytes(d.encode() * 10)
    monkeypatch.chdir(tmp_path / "A")
    in_a = video_id(VideoItem("clip.mp4"), 4)
    # relative = absolute, same file
    assert in_a == video_id(VideoItem(str(tmp_path / "A" / "clip.mp4")), 4)
    # versioned: keys of the old format (the path as typed) never match
    assert in_a.startswith("v2|")
    monkeypatch.chdir(tmp_path / "B")
    assert video_id(VideoItem("clip.mp4"), 4) != in_a  # the same name in another folder
    os.symlink(tmp_path / "A" / "clip.mp4", tmp_path / "link.mp4")
    assert video_id(VideoItem(str(tmp_path / "link.mp4")), 4) == in_a  # a link is its target
    (tmp_path / "A" / "clip.mp4").write_bytes(b"replaced in place")
    assert video_id(VideoItem(str(tmp_path / "A" / "clip.mp4")), 4) != in_a
    # T is part of the key
    assert video_id(VideoItem("clip.mp4"), 4) != video_id(VideoItem("clip.mp4"), 8)
    # a run's record of the video: its path as listed
    assert video_id(VideoItem("clip.mp4")) == "clip.mp4"


@pytest.mark.slow
def test_the_same_name_in_two_folders_and_a_replaced_video_get_their_own_captions(fitted, tmp_path):
    root, (blue, red) = fitted
    for d, video in (("A", blue), ("B", red)):
        (tmp_path / d).mkdir()
        shutil.copy(video, tmp_path / d / "clip.mp4")
    cache = tmp_path / "cache"

    def caption(d):
        return genact(
            "caption",
            "clip.mp4",
            "--model",
            root / "model",
            "--cache-dir",
            cache,
            "--quiet",
            cwd=tmp_path / d,
        )

    assert caption("A").stdout.split("\t")[1].strip() == "swimming"
    assert caption("B").stdout.split("\t")[1].strip() == "playing guitar"  # not A's cached caption
    shutil.copy(red, tmp_path / "A" / "clip.mp4")  # replaced in place
    st = os.stat(tmp_path / "A" / "clip.mp4")
    os.utime(tmp_path / "A" / "clip.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert caption("A").stdout.split("\t")[1].strip() == "playing guitar"


def test_a_caption_line_still_being_written_is_taken_in_once_it_is_complete(tmp_path):
    reader = CaptionCache(tmp_path, "fp")
    reader.log.file.parent.mkdir(parents=True)
    line = json.dumps({"key": "v2|/x|1|2|None|None|T=4", "caption": "a dog runs"}) + "\n"
    with open(reader.log.file, "ab") as f:  # another process, half way through its line
        f.write(line[:10].encode())
    reader.refresh()
    assert reader.captions == {}
    with open(reader.log.file, "ab") as f:
        f.write(line[10:].encode())
    reader.refresh()
    assert reader.captions == {"v2|/x|1|2|None|None|T=4": "a dog runs"}


# ---- templates, class files, paths, links ------------------------------------------
@pytest.mark.parametrize("bad", ["a video of", "{} and {}", "a {name}", "a video of {}}", ""])
def test_a_template_needs_exactly_one_place_for_the_class_name(bad, tiny_clip_dir):
    with pytest.raises(ConfigError, match="exactly one {}"):
        check_template(bad)
    with pytest.raises(ConfigError, match="exactly one {}"):
        ClipTam(FrozenClip.from_pretrained(tiny_clip_dir), ["a", "b"], [bad])
    with pytest.raises(ConfigError, match=r"regen.templates\[1\]"):
        load_config(RegenConfig, None, [f"regen.templates=['{{}}', '{bad}']"])
    assert check_template("a video of a person {}.") == "a video of a person {}."


@pytest.mark.slow
def test_classify_refuses_a_template_without_braces_before_any_work(fitted, tmp_path):
    root, videos = fitted
    (tmp_path / "classes.txt").write_text("swimming\nplaying guitar\n")
    out = genact(
        "classify",
        videos[0],
        "--model",
        tmp_path / "no-model",
        "--clip",
        tmp_path / "no-clip",
        "--classes",
        tmp_path / "classes.txt",
        "--template",
        "a video of",
    )
    assert "--template 'a video of': needs exactly one {}" in one_error_line(out)


def test_a_class_csv_is_read_as_csv(tmp_path):
    (tmp_path / "c.csv").write_text('id,name\n0,"ball, bouncing"\n1,"box ""big"""\n2, ring\n')
    assert read_class_file(tmp_path / "c.csv") == ["ball, bouncing", 'box "big"', "ring"]


def test_home_and_variables_are_expanded_in_path_settings_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    cfg = load_config(
        RestConfig, None, ["run.dir=~/runs/x", "data.root=$RUNS/videos", "model.clip=${RUNS}/clip"]
    )
    assert cfg.run.dir == str(tmp_path / "home" / "runs" / "x")
    assert (cfg.data.root, cfg.model.clip) == (
        str(tmp_path / "runs" / "videos"),
        str(tmp_path / "runs" / "clip"),
    )
    with pytest.raises(ConfigError, match="environment variable NOT_SET_ANYWHERE is not set"):
        load_config(RestConfig, None, ["run.dir=$NOT_SET_ANYWHERE/x"])
    args = cli.parse_args(
        [
            "eval",
            "--protocol",
            "list",
            "--data-root",
            "~/data",
            "--splits",
            "$RUNS/s.txt",
            "--clip",
            "c",
            "--out=~/results",
        ]
    )
    assert (args.data_root, args.splits, args.out) == (
        str(tmp_path / "home" / "data"),
        str(tmp_path / "runs" / "s.txt"),
        str(tmp_path / "home" / "results"),
    )
    assert expand_path("plain/path") == "plain/path"


def test_listed_videos_behind_hard_and_symbolic_links_are_all_found(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "blob.mp4").write_bytes(b"x")
    (tmp_path / "videos").mkdir()
    os.link(tmp_path / "store" / "blob.mp4", tmp_path / "videos" / "a.mp4")
    os.link(tmp_path / "store" / "blob.mp4", tmp_path / "videos" / "b.mp4")
    os.symlink(tmp_path / "store" / "blob.mp4", tmp_path / "videos" / "c.mp4")
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 0\nc.mp4 1\n")
    split = read_list(tmp_path / "list.txt", tmp_path / "videos", class_names=["x", "y"])
    assert [os.path.basename(it.path) for it in split.items] == [
        "a.mp4",
        "b.mp4",
        "c.mp4",
    ] and not split.missing
    # looked up by name below the root
    (tmp_path / "list.txt").write_text("videos/sub/a.mp4 0\nb 1\n")
    (tmp_path / "videos" / "sub").mkdir()
    os.link(tmp_path / "store" / "blob.mp4", tmp_path / "videos" / "sub" / "a.mp4")
    split = read_list(tmp_path / "list.txt", tmp_path, class_names=["x", "y"])
    assert len(split.items) == 2 and not split.missing


# ---- refused before any work -------------------------------------------------------
def leaf_fields(cls, prefix=""):
    """(dotted name, field, type) of every leaf setting of config class `cls`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, tp


def wrong_type(tp):
    """A value no field of type `tp` accepts."""
    args = set(typing.get_args(tp)) - {type(None)}
    if tp is bool or bool in args:
        return "'maybe'"
    if tp is str or str in args:
        return "{a: 1}"
    return (
        "'abc'"
        if typing.get_origin(tp) is not list and list not in {typing.get_origin(a) for a in args}
        else "7"
    )


@pytest.mark.parametrize("cls", [RestConfig, SupervisedConfig, RegenConfig])
def test_every_setting_refuses_a_wrong_type_and_a_value_out_of_range(cls):
    checked = 0
    for name, f, tp in leaf_fields(cls):
        with pytest.raises(ConfigError, match=name.split(".")[-1]):
            load_config(cls, None, [f"{name}={wrong_type(tp)}"])
        low, high, open_low, open_high = f.metadata.get("bounds", (None, None, False, False))
        for edge, inclusive_bad in ((low, open_low), (high, open_high)):
            if edge is None:
                continue
            kind = (
                float
                if float in (typing.get_args(tp) or (tp,)) or typing.get_args(tp) == (float,)
                else int
            )
            step = (1e-9 if kind is float else 1) * (-1 if edge is low else 1)
            bad = edge if inclusive_bad else edge + step
            value = f"[{bad}, {bad}]" if typing.get_origin(tp) is list else bad
            with pytest.raises(ConfigError, match=name.split(".")[-1]):
                load_config(cls, None, [f"{name}={value}"])
            checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.betas=[0.9]", "must hold 2 values"),
        ("optim.betas=[2,3]", "must be >= 0 and < 1"),
        ("run.seed=-5", "run.seed=-5: must be >= 0"),
        ("optim.lr=.nan", "not a finite number"),
        ("optim.lr=.inf", "not a finite number"),
        ("optim.lr=inf", "not a finite number"),
        ("regen.temperature=nan", "not a finite number"),
        ("data.frames=100000", "<= 256"),
        ("rest.max_new_tokens=100000", "<= 512"),
    ],
)
def test_the_settings_that_failed_after_round_0_are_refused_at_load(override, message):
    cls = RegenConfig if override.startswith("regen") else RestConfig
    with pytest.raises(ConfigError, match=message):
        load_config(cls, None, [override])


@pytest.mark.parametrize(
    "option",
    [
        ["--beams", "0"],
        ["--max-new-tokens", "0"],
        ["--threads", "0"],
        ["--frames", "-3"],
        ["--topk", "-2"],
        ["--frames", "0"],
        ["--image-size", "0"],
        ["--topk", "0"],
        ["--frames", "100000"],
        ["--batch-size", "0"],
        ["--num-workers", "-1"],
        ["--beams", "x"],
    ],
)
def test_command_line_numbers_have_the_configs_bounds(option, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse_args(
            ["classify", "v.mp4", "--model", "m", "--clip", "c", "--classes", "c.txt", *option]
        )
    assert stop.value.code == 2 and f"argument {option[0]}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_missing_video_is_one_line_before_any_model_loads(tmp_path):
    out = genact("caption", tmp_path / "nope.mp4", "--model", tmp_path / "no-model")
    assert f"{tmp_path / 'nope.mp4'}: no such video file or folder" in one_error_line(out)


# ---- diverged runs -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_blip_dir, tiny_clip_dir):
    root = tmp_path_factory.mktemp("diverge")
    settings = [
        *tiny_rest_settings(root, tiny_blip_dir, tiny_clip_dir),
        "rest.epochs_per_round=2",
        "run.log_every=1",
    ]
    return root, settings


@pytest.mark.slow
def test_a_diverging_run_stops_saves_nothing_and_is_restarted_with_a_corrected_lr(
    tiny_run, monkeypatch
):
    root, settings = tiny_run

    def run(*extra):
        return run_rest(
            load_config(RestConfig, None, [*settings, f"run.dir={root / 'run'}", *extra])
        )

    with pytest.raises(
        TrainingDiverged, match=r"diverged at optimizer step \d \(epoch 1\).*no checkpoint"
    ):
        run("optim.lr=1e30")
    run_dir = RunDir(root / "run")
    assert not run_dir.final.exists() and not Checkpoints(run_dir.checkpoints).latest()
    with pytest.raises(ConfigError, match="pass --resume"):
        run("optim.lr=1e-3")
    import genact.rest.run as rest_run

    def no_captioning(*a, **k):
        raise AssertionError("round 0's captions were made again")

    monkeypatch.setattr(rest_run, "frame_captions", no_captioning)  # finished stages are reused
    final = run("optim.lr=1e-3", "run.resume=auto")
    assert final.is_dir() and load_config(RestConfig, run_dir.config).optim.lr == 1e-3
    VideoBlip.from_pretrained(final)
    # trained: no longer correctable
    with pytest.raises(ConfigError, match="different config .*optim.lr"):
        run("optim.lr=2e-3", "run.resume=auto")


@pytest.mark.slow
def test_results_and_models_of_a_run_are_readable_by_others(tiny_run):
    run_dir = RunDir(tiny_run[0] / "run")
    old = os.umask(0o022)
    try:
        for p in [
            run_dir.final,
            run_dir.final / "model.safetensors",
            run_dir.summary,
            run_dir.config,
            *run_dir.checkpoints.glob("step-*/model/*.safetensors"),
        ]:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode == (0o755 if p.is_dir() else 0o644), (p, oct(mode))
        atomic_write_text(run_dir.path / "x.txt", "x")
        os.umask(0o077)
        atomic_write_text(run_dir.path / "y.txt", "y")
        x, y = run_dir.path / "x.txt", run_dir.path / "y.txt"
        assert (stat.S_IMODE(x.stat().st_mode), stat.S_IMODE(y.stat().st_mode)) == (0o644, 0o600)
    finally:
        os.umask(old)


@pytest.mark.slow
def test_non_finite_weights_are_neither_saved_nor_loaded(tiny_blip_dir, tmp_path):
    model = VideoBlip.from_pretrained(tiny_blip_dir)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(NonFiniteWeightsError, match="at step 3: 1 weight tensor"):
        Checkpoints(tmp_path / "ckpt").save(model, opt, TrainState(global_step=3))
    assert not (tmp_path / "ckpt").exists() or not any((tmp_path / "ckpt").iterdir())
    bad = tmp_path / "bad"
    shutil.copytree(tiny_blip_dir, bad)
    weights = load_file(bad / "model.safetensors")
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], float("inf"))
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NonFiniteWeightsError, match="diverged"):
        VideoBlip.from_pretrained(bad)
    write_video(tmp_path / "v.mp4", coloured_frames(np.random.default_rng(0), (8, 32, 32), 0, 150))
    assert "hold NaN or infinity" in one_error_line(
        genact("caption", tmp_path / "v.mp4", "--model", bad)
    )


def test_a_loss_that_climbs_is_flagged():
    rising = [{"loss": v} for v in (3.1, 2.9, 40.0, 2700.0)]
    assert "rose from 3.1000 to 2700.0000" in divergence_note(rising)
    assert divergence_note([{"loss": v} for v in (3.1, 2.0, 1.2)]) is None


# ---- files written whole -----------------------------------------------------------
def test_torch_saves_and_numpy_archives_on_a_full_disk_are_one_line_and_keep_the_old_file(
    tmp_path, monkeypatch
):
    class FullDisk(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match="trainer.pt: no space left"):
        with disk_full_is_an_error(tmp_path / "trainer.pt"):
            # torch wraps the OSError in a RuntimeError
            torch.save({"x": torch.zeros(1000)}, FullDisk())
    target = tmp_path / "emb.npz"
    np.savez_compressed(target, a=np.zeros(3))
    before = target.read_bytes()
    monkeypatch.setattr(
        os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space"))
    )
    from genact.evaluation.evaluate import save_embeddings

    with pytest.raises(DiskFullError, match="emb.npz"):
        save_embeddings(target, {"split1": torch.ones(2, 4)})
    from genact.config import save_config

    with pytest.raises(DiskFullError, match="run.yaml"):
        save_config(RestConfig(), tmp_path / "run.yaml")
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "emb.npz"
    ]


def checkpoints_at(tmp_path, tiny_blip_dir, steps):
    model = VideoBlip.from_pretrained(tiny_blip_dir)
    opt = torch.optim.AdamW(model.parameters())
    ckpts = Checkpoints(tmp_path, keep=3)
    return [ckpts.save(model, opt, TrainState(global_step=s)) for s in steps], ckpts


def test_resume_passes_over_a_damaged_checkpoint_for_the_newest_intact_one(
    tmp_path, tiny_blip_dir, caplog
):
    (one, two, three), ckpts = checkpoints_at(tmp_path, tiny_blip_dir, [1, 2, 3])
    assert (
        ckpts.latest() == three
        and json.loads((three / "manifest.json").read_text())["trainer.pt"]["size"] > 0
    )
    data = (three / "trainer.pt").read_bytes()
    (three / "trainer.pt").write_bytes(data[: len(data) // 2])  # cut short
    weights = bytearray((two / "model" / "model.safetensors").read_bytes())
    for i in range(len(weights) - 765, len(weights)):  # bytes flipped inside the weights
        weights[i] ^= 0xFF
    (two / "model" / "model.safetensors").write_bytes(bytes(weights))
    assert ckpts.latest() == one
    assert (
        "step-00000003 is damaged (trainer.pt differs" in caplog.text
        and "step-00000002 is damaged" in caplog.text
    )
    (one / "manifest.json").unlink()
    with pytest.raises(DataError, match="no intact checkpoint"):
        ckpts.latest()


def test_a_bank_deleted_under_a_run_is_one_line(tmp_path):
    with pytest.raises(
        DataError, match=f"{RunDir(tmp_path).bank_path(3)}: the caption bank is gone"
    ):
        RunDir(tmp_path).bank(3)


# ---- tests that were missing -------------------------------------------------------
@pytest.mark.slow
def test_a_resume_over_the_same_videos_in_another_order_is_refused(tiny_run, tmp_path):
    root, settings = tiny_run
    listing = tmp_path / "train.txt"
    names = [f"v{i}.mp4" for i in range(4)]
    listing.write_text("".join(f"{n} dancing\n" for n in names))

    def run():
        return run_rest(
            load_config(
                RestConfig,
                None,
                [
                    *settings,
                    "data.format=list",
                    f"data.list={listing}",
                    "data.classes=null",
                    f"run.dir={tmp_path / 'run'}",
                    "run.stop_at_step=1",
                    "run.resume=auto",
                ],
            )
        )

    assert run() is None
    listing.write_text("".join(f"{n} dancing\n" for n in reversed(names)))
    with pytest.raises(ConfigError, match="same videos, another order"):
        run()


def test_frozen_clip_refuses_a_clip_whose_only_weights_are_a_pickle(tiny_clip_dir, tmp_path):
    pickled = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(
        ModelNotFoundError, match="weights only in pickle format .*pytorch_model.bin"
    ):
        FrozenClip.from_pretrained(pickled)


def test_atomic_dirs_and_files_replace_whole(tmp_path):
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "model" / "a") as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert (tmp_path / "model" / "a").read_text() == "1" and os.listdir(tmp_path / "model") == ["a"]
    assert DataConfig().frames is None


@pytest.mark.slow
def test_results_record_every_setting_that_changes_a_number(fitted, tiny_clip_dir, tmp_path):
    from genact import __version__

    root, videos = fitted
    (tmp_path / "classes.txt").write_text("swimming\nplaying guitar\n")
    (tmp_path / "test.txt").write_text(f"{videos[0]} 0\n{videos[1]} 1\n")
    settings = {}
    for name, extra in (
        ("a", ["--frames", "4", "--beams", "2"]),
        ("b", ["--frames", "2", "--max-new-tokens", "5"]),
        ("clip", ["--method", "clip", "--frames", "2"]),
    ):
        out = genact(
            "eval",
            "--protocol",
            "list",
            "--data-root",
            "/",
            "--splits",
            tmp_path / "test.txt",
            "--classes",
            tmp_path / "classes.txt",
            "--model",
            root / "model",
            "--clip",
            tiny_clip_dir,
            "--cache-dir",
            tmp_path / "cache",
            "--out",
            tmp_path / name,
            "--quiet",
            *extra,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        settings[name] = RunDir(tmp_path / name).read_results()["settings"]
    a, b = settings["a"], settings["b"]
    assert a["genact"] == __version__ and a["clip_fingerprint"]
    assert (
        a["captioner"]["frames"],
        a["captioner"]["num_beams"],
        a["captioner"]["max_new_tokens"],
    ) == (4, 2, 30)
    assert (
        b["captioner"]["frames"],
        b["captioner"]["num_beams"],
        b["captioner"]["max_new_tokens"],
    ) == (2, 3, 5)
    assert a["captioner"]["prompt"] == VideoBlip.saved_settings(root / "model")["prompt"]
    assert a["captioner"]["image_size"] == 32 and a["captioner"]["model_fingerprint"]
    assert settings["clip"]["clip_frames"] == 2 and "captioner" not in settings["clip"]


@pytest.mark.slow
def test_an_unreadable_video_is_named_once_and_json_keeps_non_ascii_text(fitted, tmp_path):
    root, videos = fitted
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    shutil.copy(videos[0], tmp_path / "café.mp4")
    out = genact(
        "caption",
        tmp_path / "café.mp4",
        tmp_path / "broken.mp4",
        "--model",
        root / "model",
        "--json",
        "--cache-dir",
        tmp_path / "c",
    )
    assert out.returncode == 1 and out.stderr.count("broken.mp4") == 1, out.stderr
    assert "café.mp4" in out.stdout and json.loads(out.stdout)[0]["video"].endswith("café.mp4")
