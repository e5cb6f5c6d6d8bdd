"""REST end to end on tiny random models and generated videos: where the bank's
captions come from, that training lowers the loss, exact resume (after a clean stop
and after a kill while a checkpoint was being written), torchrun with 2 processes,
and a corrupt video in the training set."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genact.config import ConfigError, RestConfig, load_config
from genact.data import read_folder, read_video, write_video
from genact.inference.processing import blip_transform
from genact.io import read_json_lines
from genact.models import FrozenClip, VideoBlip
from genact.rest.run import run_rest
from genact.store import EmbeddingCache
from genact.testing import coloured_frames
from genact.training.bank import CaptionBank
from genact.training.checkpoints import Checkpoints
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir
from helpers import free_port

pytestmark = pytest.mark.slow  # end to end: `make test-fast` leaves these out

K, H = 3, 3


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_blip_dir, tiny_clip_dir):
    """8 small coloured videos and one corrupt file, plus the run settings."""
    root = tmp_path_factory.mktemp("rest")
    rng = np.random.default_rng(0)
    for i in range(8):
        write_video(
            root / "videos" / f"v{i}.mp4",
            coloured_frames(rng, (12, 32, 40), i % 3, 150 + 10 * (i // 3), noise=70),
        )
    (root / "videos" / "broken.mp4").write_bytes(b"this is not a video")
    settings = [
        f"data.root={root / 'videos'}",
        f"model.blip={tiny_blip_dir}",
        f"model.clip={tiny_clip_dir}",
        "data.frames=2",
        "data.num_workers=0",
        "optim.epochs=4",
        "optim.global_batch=4",
        "optim.batch_size=2",
        "optim.lr=1e-2",
        "rest.epochs_per_round=2",
        f"rest.neighbours={H}",
        f"rest.keep={K}",
        "rest.max_new_tokens=6",
        "rest.chunk=3",
        "run.progress=false",
        "run.log_every=1",
        "run.checkpoint_every=1000",
    ]
    return root, settings


def rest(world, name, *extra):
    root, settings = world
    return run_rest(load_config(RestConfig, None, [*settings, f"run.dir={root / name}", *extra]))


@pytest.fixture(scope="module")
def full(world):
    """An uninterrupted 2-round run."""
    final = rest(world, "full")
    return world[0] / "full", final


def shard_records(run_dir, name):
    """{position: captions} of a caption stage: positions in the folder for `init`,
    in round 0's bank for the refreshes (the records are keyed by video)."""
    rows = RunDir(run_dir).caption_records(name).read_all()
    by_video = {r["video"]: r["captions"] for r in rows if "captions" in r}
    videos = (
        [it.path for it in read_folder(run_dir.parent / "videos").items]
        if name == "init"
        else RunDir(run_dir).bank(0).keys
    )
    return {i: by_video[v] for i, v in enumerate(videos) if v in by_video}


def bank_rows(path):
    """(video, [(text, source, round)]) per line, and the scores."""
    bank = CaptionBank.load(path)
    rows = [
        (k, [(bank.texts[c.text_id], c.source, c.round) for c in e])
        for k, e in zip(bank.keys, bank.entries)
    ]
    return rows, [c.score for e in bank.entries for c in e]


def brute_force_top_k(own, neighbour_lists, video_feat, text_feat_of):
    """Eqs. 5-6 written out: candidates = own + neighbours' captions, once each, top K."""
    cands = list(dict.fromkeys(own + [t for lst in neighbour_lists for t in lst]))
    return sorted(cands, key=lambda t: -float(video_feat @ text_feat_of[t]))[:K]


def test_full_run_bank_sources_follow_algorithm_1(full, tiny_clip_dir):
    run_dir, final = full
    assert final == RunDir(run_dir).final and (final / "model.safetensors").exists()
    paths = [it.path for it in read_folder(run_dir.parent / "videos").items]
    init = shard_records(run_dir, "init")
    gen = shard_records(run_dir, "round-002")
    bank0 = RunDir(run_dir).bank(0)
    bank1 = RunDir(run_dir).bank(1)
    # no refresh after the last round
    assert not RunDir(run_dir).bank_path(2).exists() and gen == {}
    gen = shard_records(run_dir, "round-001")
    # the corrupt video is left out; everyone else has T x prompts frame captions at most
    assert bank0.keys == [p for p in paths if not p.endswith("broken.mp4")]
    own_init = {paths[i]: caps for i, caps in init.items()}
    assert set(own_init) == set(bank0.keys) and sorted(gen) == list(range(8))

    video_feats = RunDir(run_dir).load_train_features().float()
    # Eq. 6 by hand
    nb = (video_feats @ video_feats.T).argsort(dim=1, descending=True, stable=True)[:, :H].numpy()
    saved = np.load(RunDir(run_dir).neighbours)
    assert (
        saved.shape == (8, H)
        and saved.dtype == np.int32
        and (saved == nb).all()
        and (nb[:, 0] == np.arange(8)).all()
    )
    clip = FrozenClip.from_pretrained(tiny_clip_dir)
    texts = sorted(
        set(bank1.texts)
        | {t for caps in init.values() for t in caps}
        | {g[0] for g in gen.values()}
    )
    feat = dict(zip(texts, clip.text_features(texts)))

    for i, key in enumerate(bank0.keys):  # round 0: init captions, retrieval from neighbours
        expected = brute_force_top_k(
            own_init[key], [own_init[bank0.keys[j]] for j in nb[i]], video_feats[i], feat
        )
        got = [(bank0.texts[c.text_id], c.source, c.round) for c in bank0.entries[i]]
        assert [t for t, _, _ in got] == expected
        for text, source, rnd in got:
            assert rnd == 0 and source == ("init" if text in own_init[key] else "retrieved")

    w0 = [bank0.captions(i) for i in range(8)]
    w0_plus = [list(dict.fromkeys(w0[i] + gen[i])) for i in range(8)]
    prov0 = {
        (i, bank0.texts[c.text_id]): (c.source, c.round)
        for i, e in enumerate(bank0.entries)
        for c in e
    }
    for i in range(8):  # round 1: each video's list plus its new caption, retrieval again
        expected = brute_force_top_k(w0_plus[i], [w0_plus[j] for j in nb[i]], video_feats[i], feat)
        got = [(bank1.texts[c.text_id], c.source, c.round) for c in bank1.entries[i]]
        assert [t for t, _, _ in got] == expected
        for text, source, rnd in got:
            if (i, text) in prov0:
                assert (source, rnd) == prov0[(i, text)]
            else:
                assert (source, rnd) == (("generated", 1) if text in gen[i] else ("retrieved", 1))
        scores = [c.score for c in bank1.entries[i]]
        assert scores == sorted(scores, reverse=True)


@pytest.fixture(scope="module")
def three_rounds(world):
    """3 rounds (R = 2, 6 epochs) with N_I = 2 and with N_I = 1, larger K so that the
    model's new captions can enter the lists."""
    runs = {}
    for n_i in (1, 2):
        name = f"three-ni{n_i}"
        rest(world, name, "optim.epochs=6", "rest.keep=5", f"rest.retrieval_rounds={n_i}")
        runs[n_i] = world[0] / name
    return runs


def check_round_by_brute_force(run_dir, r, h, clip):
    """Round r's bank = for each video, the best K (K = 5) of its round r - 1 list plus
    its round-r caption, and of the same lists of its h nearest videos, with the
    neighbours recomputed from the stored CLIP features (Eq. 6) rather than read back."""
    prev = RunDir(run_dir).bank(r - 1)
    bank = RunDir(run_dir).bank(r)
    gen = shard_records(run_dir, f"round-{r:03d}")
    feats = RunDir(run_dir).load_train_features().float()
    nb = (feats @ feats.T).argsort(dim=1, descending=True, stable=True)[:, :h].tolist()
    lists = [
        list(dict.fromkeys(prev.captions(i) + [" ".join(g.split()) for g in gen.get(i, [])]))
        for i in range(len(prev.keys))
    ]
    texts = sorted({t for lst in lists for t in lst})
    feat = dict(zip(texts, clip.text_features(texts)))
    generated_kept = 0
    for i in range(len(lists)):
        cands = list(dict.fromkeys(lists[i] + [t for j in nb[i] for t in lists[j]]))
        expected = sorted(cands, key=lambda t: -float(feats[i] @ feat[t]))[:5]
        got = bank.entries[i]
        assert [bank.texts[c.text_id] for c in got] == expected, (r, i)
        generated_kept += sum(c.source == "generated" and c.round == r for c in got)
    return generated_kept


def test_three_rounds_follow_algorithm_1_with_n_i_retrieval_rounds(three_rounds, tiny_clip_dir):
    """N_I = 2: round 1 still retrieves from H neighbours, round 2 only re-ranks each
    video's own list; N_I = 1: both later rounds use the video's own list. Each round
    starts from the previous round's bank, and the model's new captions enter it."""
    clip = FrozenClip.from_pretrained(tiny_clip_dir)
    kept = 0
    for n_i, run_dir in three_rounds.items():
        for r in (1, 2):
            kept += check_round_by_brute_force(run_dir, r, H if r < n_i else 1, clip)
        banks = [RunDir(run_dir).bank(r) for r in range(3)]
        assert [b.captions(i) for b in banks[:1] for i in range(8)] != [
            banks[1].captions(i) for i in range(8)
        ]
        if n_i == 2:  # not vacuous: round 1 took captions from neighbours, round 2 took none
            assert any(
                c.source == "retrieved" and c.round == 1 for e in banks[1].entries for c in e
            )
            assert not any(
                c.source == "retrieved" and c.round == 2 for e in banks[2].entries for c in e
            )
        metrics = read_json_lines(RunDir(run_dir).metrics)
        assert [m["neighbours_used"] for m in metrics if m["kind"] == "round"] == [H] + [
            H if r < n_i else 1 for r in (1, 2)
        ]
    assert kept > 0  # some round kept a caption the model generated


def test_full_run_lowers_the_caption_loss_and_writes_its_records(full, tiny_blip_dir):
    run_dir, final = full
    bank = RunDir(run_dir).bank(1)

    def bank_loss(model_dir):
        model = VideoBlip.from_pretrained(model_dir, num_frames=2).eval()
        losses = []
        with torch.no_grad():
            for i, key in enumerate(bank.keys):
                pixels = blip_transform(model)(read_video(key, 2))[None]
                caps = bank.captions(i)
                losses.append(float(model(pixels.expand(len(caps), -1, -1, -1, -1), caps).loss))
        return float(np.mean(losses))

    before, after = bank_loss(tiny_blip_dir), bank_loss(final)
    assert after < before - 1.0, (before, after)

    records = read_json_lines(RunDir(run_dir).metrics)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))  # 2 steps x 4 epochs, logged every step
    assert train[0]["lr"] == pytest.approx(1e-2) and train[-1]["lr"] == pytest.approx(2e-8)
    assert all(r["videos_per_s"] > 0 and np.isfinite(r["loss"]) for r in train)
    rounds = [r for r in records if r["kind"] == "round"]
    assert [r["step"] for r in rounds] == [0, 1]
    assert all(-1 <= r["mean_cosine"] <= 1 and r["videos_changed"] >= 0 for r in rounds)
    for r in (0, 1):  # "new captions" are exactly the bank entries that round produced
        bank_r = RunDir(run_dir).bank(r)
        produced = sum(c.round == r and c.source != "init" for e in bank_r.entries for c in e)
        assert rounds[r]["captions_new"] == produced
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    # the corrupt video is skipped, never fatal, and listed in the run's report and summary
    report = json.loads((RunDir(run_dir).report).read_text())["skipped_videos"]
    assert [r["path"].endswith("broken.mp4") for r in report] == [True]
    assert "not a video" in report[0]["error"] or "cannot open" in report[0]["error"]
    summary = (RunDir(run_dir).summary).read_text()
    assert (
        "trained on: 8; unreadable: 1" in summary and "broken.mp4" in summary and "| 1 |" in summary
    )


def test_generated_captions_join_each_videos_list(world):
    """With the model left as it is (lr ~ 0) and room for every candidate (K large),
    each video's new caption must be in its round-1 list as `generated`."""
    run_dir = world[0] / "frozen"
    rest(
        world,
        "frozen",
        "optim.lr=1e-12",
        "optim.min_lr=0",
        "rest.keep=50",
        "rest.prompts=[someone is]",
    )
    gen = shard_records(run_dir, "round-001")
    bank1 = RunDir(run_dir).bank(1)
    for i in range(8):
        (new,) = gen[i]
        # made under the model's prompt, so new to the video
        assert not new.startswith("someone is")
        entry = [c for c in bank1.entries[i] if bank1.texts[c.text_id] == new]
        assert [(c.source, c.round) for c in entry] == [("generated", 1)]


def same_weights(a, b, atol=0.0):
    for name in ("model.safetensors", "adapters.safetensors"):
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys()
        for k in x:
            assert torch.allclose(x[k], y[k], rtol=0, atol=atol), (name, k)


def test_resume_after_stops_mid_epoch_equals_uninterrupted_run(world, full):
    run_dir = world[0] / "stopped"
    assert rest(world, "stopped", "run.stop_at_step=3") is None  # mid epoch 2 of round 0
    assert (
        Checkpoints(RunDir(run_dir).checkpoints).latest().name == "step-00000003"
        and not RunDir(run_dir).final.exists()
    )
    with pytest.raises(ConfigError, match="--resume"):
        rest(world, "stopped")
    with pytest.raises(ConfigError, match="optim.lr"):
        rest(world, "stopped", "run.resume=auto", "optim.lr=1e-3")
    # mid epoch 4 of round 1
    assert rest(world, "stopped", "run.resume=auto", "run.stop_at_step=7") is None
    final = rest(world, "stopped", "run.resume=auto")
    same_weights(final, RunDir(full[0]).final)
    for r in (0, 1):
        assert RunDir(run_dir).bank_path(r).read_text() == RunDir(full[0]).bank_path(r).read_text()


def test_resume_with_a_smaller_per_pass_batch_equals_uninterrupted_run(world, full):
    """After an out-of-memory crash: the same global batch in smaller micro-batches."""
    assert rest(world, "smaller", "run.stop_at_step=3") is None
    final = rest(world, "smaller", "run.resume=auto", "optim.batch_size=1", "rest.caption_batch=3")
    same_weights(final, RunDir(full[0]).final, atol=1e-5)
    for r in (0, 1):
        assert (
            bank_rows(RunDir(world[0] / "smaller").bank_path(r))[0]
            == bank_rows(RunDir(full[0]).bank_path(r))[0]
        )
    with pytest.raises(ConfigError, match="optim.global_batch"):
        rest(world, "smaller", "run.resume=auto", "optim.global_batch=8")


def test_resume_refuses_when_the_training_videos_changed(world, tmp_path):
    root, settings = world
    videos = tmp_path / "videos"
    shutil.copytree(root / "videos", videos)

    def run(*extra):
        return run_rest(
            load_config(
                RestConfig,
                None,
                [
                    *settings,
                    f"data.root={videos}",
                    f"run.dir={tmp_path / 'run'}",
                    *extra,
                ],
            )
        )

    assert run("run.stop_at_step=1") is None
    shutil.copy(videos / "v3.mp4", videos / "a0.mp4")  # sorts first: positions would shift by one
    with pytest.raises(
        ConfigError,
        match=r"training videos changed since the run started \(1 added \(e.g. .*a0.mp4",
    ):
        run("run.resume=auto")
    (videos / "a0.mp4").unlink()
    (videos / "v5.mp4").unlink()
    with pytest.raises(ConfigError, match=r"1 removed \(e.g. .*v5.mp4"):
        run("run.resume=auto")


KILL_DURING_SECOND_CHECKPOINT = textwrap.dedent("""
    import os, sys, torch
    import genact.training.trainer as training
    from genact.config import RestConfig, load_config
    from genact.rest.run import run_rest

    real_save, calls = torch.save, []
    def dying_save(obj, f, *a, **k):
        calls.extend([f] if "trainer.pt" in str(getattr(f, "name", f)) else [])
        if len(calls) == 2:  # the second checkpoint: its model is written, trainer.pt is not
            f.write(b"half")
            f.flush()
            os._exit(9)
        return real_save(obj, f, *a, **k)
    training.torch.save = dying_save
    run_rest(load_config(RestConfig, None, sys.argv[1:]))
""")


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(world, full, tmp_path):
    root, settings = world
    run_dir = root / "killed"
    script = tmp_path / "kill.py"
    script.write_text(KILL_DURING_SECOND_CHECKPOINT)
    out = subprocess.run(
        [sys.executable, str(script), *settings, f"run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 9, out.stderr[-2000:]
    latest = Checkpoints(RunDir(run_dir).checkpoints).latest()
    assert latest.name == "step-00000002"  # end of epoch 1; the step-4 write died half way
    assert any(p.name.startswith(".step-00000004") for p in (RunDir(run_dir).checkpoints).iterdir())
    VideoBlip.from_pretrained(latest / "model")  # loadable
    assert [r["step"] for r in Metrics(run_dir, enabled=False).read("train")] == [1, 2, 3, 4]
    final = rest(world, "killed", "run.resume=auto")
    same_weights(final, RunDir(full[0]).final)
    # steps 3 and 4 were logged before the kill and trained again: each is in metrics.jsonl once
    assert [r["step"] for r in Metrics(run_dir, enabled=False).read("train")] == list(range(1, 9))
    assert RunDir(run_dir).bank_path(1).read_text() == RunDir(full[0]).bank_path(1).read_text()


def test_torchrun_two_processes_gives_the_same_bank(world, full):
    root, settings = world
    run_dir = root / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "genact",
        "rest",
        *settings,
        f"run.dir={run_dir}",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (
        all(
            RunDir(run_dir).caption_records(stage, rank).file.exists()
            for stage in ("init", "round-001")
            for rank in (0, 1)
        )
        and not RunDir(run_dir).caption_records("init", 2).file.exists()
    )
    # text features and neighbour rows are shared out too, and agree with one process's
    for rank in (0, 1):
        assert len(EmbeddingCache(RunDir(run_dir).text_features / f"rank{rank}", 16, "float16"))
    np.testing.assert_array_equal(
        np.load(RunDir(run_dir).neighbours), np.load(RunDir(full[0]).neighbours)
    )
    for r in (0, 1):
        rows, scores = bank_rows(RunDir(run_dir).bank_path(r))
        ref_rows, ref_scores = bank_rows(RunDir(full[0]).bank_path(r))
        assert rows == ref_rows
        np.testing.assert_allclose(
            np.array(scores, dtype=float), np.array(ref_scores, dtype=float), atol=1e-5
        )
    same_weights(RunDir(run_dir).final, RunDir(full[0]).final, atol=1e-4)
