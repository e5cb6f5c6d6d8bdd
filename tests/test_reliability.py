"""Never silently wrong: caches shared by many processes, damaged caches, one writer
per run directory, records keyed by video, work saved as it goes, the saved model's
settings, and weights from safetensors only."""

import json
import logging
import multiprocessing as mp
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from genact.config import ConfigError, Decoding, ModelConfig, RegenConfig, load_config
from genact.data import SkipReport, VideoItem, write_video
from genact.distributed import Dist
from genact.inference.captions import CaptionCache, Captioner
from genact.models import ModelNotFoundError, VideoBlip
from genact.rest.stages import caption_stage
from genact.store import EmbeddingCache
from genact.testing import coloured_frames
from genact.training.run import lock_run_dir, release_run_dir, resolved, starting_model
from genact.training.rundir import RunDir


def value_of(key: str, dim: int = 8) -> np.ndarray:
    """The one vector a key may ever be stored with."""
    return np.random.default_rng(int(key[1:])).normal(size=dim).astype(np.float32)


def worker_keys(worker: int, rounds: int) -> list[list[str]]:
    rng = np.random.default_rng(worker)
    return [[f"k{int(i)}" for i in rng.integers(0, 150, 6)] for _ in range(rounds)]


def _cache_writer(directory: str, worker: int, rounds: int) -> None:
    cache = EmbeddingCache(directory, dim=8, dtype="float32")
    captions = CaptionCache(Path(directory) / "eval", "fp")
    for keys in worker_keys(worker, rounds):
        todo = cache.missing(keys)
        cache.put(
            todo,
            torch.from_numpy(np.stack([value_of(k) for k in todo])) if todo else torch.zeros(0, 8),
        )
        got = cache.get(keys)  # also rows other processes wrote
        assert torch.equal(got, torch.from_numpy(np.stack([value_of(k) for k in keys])))
        captions.add({k: f"caption of {k}" for k in keys[:2]})


def test_four_processes_share_one_cache_and_every_value_stays_under_its_key(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_cache_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = EmbeddingCache(tmp_path, dim=8, dtype="float32")
    keys = (tmp_path / "keys.jsonl").read_text().splitlines()
    assert len(keys) == len(set(keys)) == len(cache)  # no key stored twice
    assert (tmp_path / "vectors.bin").stat().st_size == len(keys) * 8 * 4
    stored = sorted(cache.rows)
    assert torch.equal(cache.get(stored), torch.from_numpy(np.stack([value_of(k) for k in stored])))
    rows = [
        json.loads(ln)
        for ln in (tmp_path / "eval" / "captions" / "fp.rank0.jsonl").read_text().splitlines()
    ]
    assert len(rows) == sum(len(set(keys[:2])) for w in range(4) for keys in worker_keys(w, 40))
    assert all(r["caption"] == f"caption of {r['key']}" for r in rows)
    seen = CaptionCache(tmp_path / "eval", "fp").captions
    assert seen == {r["key"]: f"caption of {r['key']}" for r in rows}


def write_raw_cache(directory, keys, rows):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").write_text(json.dumps({"dim": 4, "dtype": "float32"}))
    (directory / "keys.jsonl").write_text("".join(line + "\n" for line in keys))
    (directory / "vectors.bin").write_bytes(np.asarray(rows, np.float32).tobytes())


def test_a_damaged_cache_opens_drops_the_bad_part_with_one_warning_and_heals(tmp_path, caplog):
    rows = [np.full(4, i, np.float32) for i in range(5)]
    # a duplicate key (older unlocked writers), a line that is no key, a short last row,
    # and one key more than there are rows
    keys = ['"a"', '"b"', '"a"', "not json", '"c"', '"d"']
    write_raw_cache(tmp_path, keys, rows)
    with open(tmp_path / "vectors.bin", "ab") as f:
        f.write(b"\x01" * 6)
    with caplog.at_level(logging.WARNING, logger="genact.store"):
        cache = EmbeddingCache(tmp_path, dim=4, dtype="float32")
        cache.get(["a"])
    warnings = [r for r in caplog.records if "damaged cache" in r.getMessage()]
    assert len(warnings) == 1 and "1 duplicate" in warnings[0].getMessage()
    assert sorted(cache.rows) == ["a", "b", "c"]  # d has no row
    assert torch.equal(cache.get(["a", "b", "c"]), torch.tensor([[0.0] * 4, [1.0] * 4, [4.0] * 4]))
    cache.put(["d", "e"], torch.tensor([[7.0] * 4, [8.0] * 4]))  # a write cuts the tails off first
    again = EmbeddingCache(tmp_path, dim=4, dtype="float32")
    assert torch.equal(again.get(["d", "e", "c"]), torch.tensor([[7.0] * 4, [8.0] * 4, [4.0] * 4]))
    assert (tmp_path / "vectors.bin").stat().st_size == 7 * 16


HOLD_RUN_DIR = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from genact.training.run import lock_run_dir
    from genact.training.rundir import RunDir
    lock_run_dir(RunDir(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(600)
""")


@pytest.mark.slow
def test_a_run_directory_in_use_is_refused_and_a_killed_owner_does_not_block_resume(tmp_path):
    run_dir = tmp_path / "run"
    owner = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_DIR, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline().strip() == "locked"
        with pytest.raises(
            ConfigError, match=f"in use by another genact process \\(pid {owner.pid} on"
        ):
            lock_run_dir(RunDir(run_dir))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "genact",
                "rest",
                "--resume",
                f"run.dir={run_dir}",
                "data.root=nowhere",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith(
            "genact: error: "
        )
        assert "in use by another genact process" in out.stderr
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    lock_run_dir(RunDir(run_dir))  # the kernel dropped the dead process's lock
    release_run_dir(RunDir(run_dir))


def test_caption_records_are_matched_to_videos_not_positions(tmp_path):
    calls = []

    def caption_fn(items, report):
        calls.append([it.path for it in items])
        return {j: [f"about {it.path}"] for j, it in enumerate(items)}

    first = [VideoItem("b.mp4"), VideoItem("c.mp4")]
    assert caption_stage(
        "init", RunDir(tmp_path), first, [0, 1], caption_fn=caption_fn, dist=Dist()
    ) == {0: ["about b.mp4"], 1: ["about c.mp4"]}
    later = [VideoItem("a.mp4"), *first]  # a video that sorts first was added
    got = caption_stage(
        "init", RunDir(tmp_path), later, [0, 1, 2], caption_fn=caption_fn, dist=Dist()
    )
    assert got == {i: [f"about {it.path}"] for i, it in enumerate(later)}
    assert calls == [["b.mp4", "c.mp4"], ["a.mp4"]]
    legacy = RunDir(tmp_path).caption_records("old")  # records of an older version, by list index
    legacy.append([{"index": 0, "captions": ["stale"]}])
    assert caption_stage(
        "old", RunDir(tmp_path), first, [0, 1], caption_fn=caption_fn, dist=Dist()
    ) == {0: ["about b.mp4"], 1: ["about c.mp4"]}  # redone, never matched by position


def test_captions_are_saved_as_they_go_and_a_rerun_reuses_them(fitted, tmp_path, monkeypatch):
    root, videos = fitted
    extra = tmp_path / "v"
    rng = np.random.default_rng(1)
    for i in range(4):
        write_video(extra / f"x{i}.mp4", coloured_frames(rng, (8, 32, 40), i % 3, 150))
    items = [VideoItem(str(p)) for p in [*sorted(extra.iterdir()), *videos]]  # 6 videos
    captioner = Captioner.load(
        str(root / "model"),
        Decoding(max_new_tokens=5),
        cache_dir=tmp_path / "cache",
        device=torch.device("cpu"),
        progress=False,
    )
    captioner.chunk = 2
    import genact.inference.captions as captions

    real, calls = captions.caption_and_encode, []

    def killed_after_two_chunks(model, its, *args, **kwargs):
        calls.append(len(its))
        if len(calls) == 3:
            raise KeyboardInterrupt  # stands for a kill: nothing after the second chunk is saved
        return real(model, its, *args, **kwargs)

    monkeypatch.setattr(captions, "caption_and_encode", killed_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        captioner(items, SkipReport())
    monkeypatch.setattr(captions, "caption_and_encode", real)
    again = Captioner.load(
        str(root / "model"),
        Decoding(max_new_tokens=5),
        cache_dir=tmp_path / "cache",
        device=torch.device("cpu"),
        progress=False,
    )
    caps = again(items, SkipReport())
    # only the unsaved chunk is captioned
    assert again.generated == 2 and sorted(caps) == list(range(6))
    fresh = Captioner.load(
        str(root / "model"),
        Decoding(max_new_tokens=5),
        cache_dir=tmp_path / "fresh",
        device=torch.device("cpu"),
        progress=False,
    )
    assert fresh(items, SkipReport()) == caps


def test_a_saved_models_prompt_and_frames_are_used_unless_the_config_sets_them(fitted, caplog):
    root, _ = fitted
    saved = VideoBlip.from_pretrained(root / "model")
    assert (saved.config.prompt, saved.config.num_frames) == ("a video of", 4)
    custom = root / "custom"
    saved.config.prompt, saved.config.num_frames = "someone is", 3
    saved.save_pretrained(custom)
    cfg = load_config(RegenConfig, None, [f"model.blip={custom}"])
    with caplog.at_level(logging.INFO, logger="genact.training.run"):
        model = starting_model(cfg.model, None, cfg.data.frames)
    cfg = resolved(cfg, model)
    assert (model.config.prompt, model.config.num_frames) == ("someone is", 3)
    assert (cfg.model.prompt, cfg.data.frames) == ("someone is", 3)
    assert any(
        "model.prompt = 'someone is' (the saved model's" in r.getMessage() for r in caplog.records
    )
    cfg = load_config(
        RegenConfig, None, [f"model.blip={custom}", "model.prompt=a clip of", "data.frames=2"]
    )
    model = starting_model(cfg.model, None, cfg.data.frames)
    assert (model.config.prompt, model.config.num_frames) == ("a clip of", 2)
    # genact's defaults otherwise
    image = starting_model(ModelConfig(blip=str(custom.parent / "model")), None, None)
    assert image.config.prompt == "a video of"


class Trap:
    """Unpickling this creates a file: proof that a pickle was read."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.slow
def test_weights_are_read_from_safetensors_only(tiny_blip_dir, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in tiny_blip_dir.iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    trap = tmp_path / "unpickled"
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps(Trap(str(trap))))
    with pytest.raises(
        ModelNotFoundError, match="pickle format .*pytorch_model.bin.*save_pretrained"
    ):
        VideoBlip.from_pretrained(pickled)
    # a video to caption: the model is refused before it is read
    (tmp_path / "clip.mp4").write_bytes(b"")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "genact",
            "caption",
            str(tmp_path / "clip.mp4"),
            "--model",
            str(pickled),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        out.returncode == 2
        and len(out.stderr.strip().splitlines()) == 1
        and "safetensors only" in out.stderr
    )
    assert not trap.exists()

    cut = tmp_path / "cut"
    cut.mkdir()
    for f in tiny_blip_dir.iterdir():
        data = f.read_bytes()
        (cut / f.name).write_bytes(data[: len(data) // 2] if f.suffix == ".safetensors" else data)
    with pytest.raises(
        ModelNotFoundError, match=f"{cut / 'model.safetensors'}: not a complete safetensors file"
    ):
        VideoBlip.from_pretrained(cut)
