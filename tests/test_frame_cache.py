"""`genact cache-frames`: what is cached, that datasets read it instead of the video,
when it is not used (other T / short side, changed file), resume after a kill, and a
REST run on a cache built through the command line."""

import logging
import os

import numpy as np
import pytest
import torch

from genact.cli import main
from genact.data import VideoDataset, VideoTransform, read_folder, read_video, write_video
from genact.data.frame_cache import build_frame_cache, load_entries, use_frame_cache
from genact.data.transforms import resize_short_side, to_float_tchw
from genact.testing import coloured_frames
from genact.training.rundir import RunDir

pytestmark = pytest.mark.slow  # end to end: `make test-fast` leaves these out


@pytest.fixture
def videos(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        write_video(
            tmp_path / "videos" / f"v{i}.mp4", coloured_frames(rng, (12, 48, 64), i % 3, 150)
        )
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"not a video")
    return read_folder(tmp_path / "videos").items


def resized_eval_frames(path, t, side):
    x = resize_short_side(to_float_tchw(read_video(path, t)), side)
    return x.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
def test_cache_holds_the_eval_frames_at_the_short_side(tmp_path, videos, fmt):
    written, report = build_frame_cache(
        videos, tmp_path / "cache", 4, 40, fmt=fmt, shard_videos=2, progress=False
    )
    assert written == 5 and [p.endswith("broken.mp4") for p, _ in report.skipped] == [True]
    assert len(list((tmp_path / "cache").glob("shard-*.json"))) == 3  # 2 + 2 + 1 videos
    items = use_frame_cache(videos, tmp_path / "cache", 4, 40)
    assert [it.cached is None for it in items] == [it.path.endswith("broken.mp4") for it in items]
    ds = VideoDataset(items, 4)
    for i, it in enumerate(items):
        if it.cached is None:
            continue
        cached, want = ds[i]["pixels"].numpy(), resized_eval_frames(it.path, 4, 40)
        assert cached.shape == want.shape == (4, 40, 53, 3)
        diff = np.abs(cached.astype(int) - want).mean()
        # JPEG q90 on these noisy frames: about 4 grey levels
        assert diff == 0 if fmt == "raw" else diff < 6


def test_datasets_read_the_cache_instead_of_the_video(tmp_path, videos):
    build_frame_cache(videos, tmp_path / "cache", 4, 40, progress=False)
    items = [
        it for it in use_frame_cache(videos, tmp_path / "cache", 4, 40) if it.cached is not None
    ]
    os.remove(items[0].path)  # from now on only the cache has its frames
    for train in (False, True):
        ds = VideoDataset(items, 4, VideoTransform(size=32, train=train), train=train)
        assert ds[0]["pixels"].shape == (4, 3, 32, 32)
    # cached for T=4, not 2: decodes, and fails
    other_t = VideoDataset(items, 2, VideoTransform(size=32))
    assert "file not found" in other_t[0]["error"]


def test_cache_is_not_used_for_another_t_or_size_or_a_changed_video(tmp_path, videos, caplog):
    build_frame_cache(videos, tmp_path / "cache", 4, 40, progress=False)
    with caplog.at_level(logging.WARNING):
        for t, side in ((8, 40), (4, 64)):
            assert all(
                it.cached is None for it in use_frame_cache(videos, tmp_path / "cache", t, side)
            )
    assert "was built for T=4, short side 40" in caplog.text
    changed = next(it for it in videos if it.path.endswith("v2.mp4"))
    write_video(changed.path, coloured_frames(np.random.default_rng(9), (16, 48, 64), 1, 100))
    items = use_frame_cache(videos, tmp_path / "cache", 4, 40)
    assert [it.path for it in items if it.cached is None] == sorted(
        [changed.path, str(tmp_path / "videos/broken.mp4")]
    )
    # the next build re-encodes just that video, and rebuilding for another T starts over
    assert build_frame_cache(videos, tmp_path / "cache", 4, 40, progress=False)[0] == 1
    assert build_frame_cache(videos, tmp_path / "cache", 2, 40, progress=False)[0] == 5
    rebuilt = use_frame_cache(videos, tmp_path / "cache", 2, 40)
    assert sorted(it.cached.num_frames for it in rebuilt if it.cached is not None) == [2] * 5


def test_a_killed_build_resumes_without_losing_finished_shards(tmp_path, videos):
    cache = tmp_path / "cache"
    build_frame_cache(videos[:4], cache, 4, 40, shard_videos=2, progress=False)
    (cache / "shard-r000-00001.json").unlink()  # as if killed while writing the second shard
    (cache / "shard-r000-00001.bin").write_bytes(b"half")
    assert len(load_entries(cache)) == 2
    written, _ = build_frame_cache(videos, cache, 4, 40, shard_videos=2, progress=False)
    assert written == 3  # the 2 of the lost shard and the one new video
    assert (
        len(load_entries(cache)) == 5
        and build_frame_cache(videos, cache, 4, 40, progress=False)[0] == 0
    )


def test_rest_trains_from_a_cache_built_by_the_command_line(
    tmp_path, videos, tiny_blip_dir, tiny_clip_dir, caplog
):
    settings = [
        f"data.root={tmp_path / 'videos'}",
        f"data.frame_cache={tmp_path / 'cache'}",
        f"model.blip={tiny_blip_dir}",
        f"model.clip={tiny_clip_dir}",
        "data.frames=2",
        "data.num_workers=0",
        "optim.epochs=2",
        "optim.global_batch=4",
        "optim.batch_size=2",
        "rest.epochs_per_round=1",
        "rest.neighbours=2",
        "rest.max_new_tokens=4",
        "run.progress=false",
        f"run.dir={tmp_path / 'run'}",
    ]
    with pytest.raises(SystemExit) as done:
        main(["cache-frames", "rest", *settings])
    assert done.value.code == 0 and len(load_entries(tmp_path / "cache")) == 5
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as done:
        main(["rest", *settings])
    assert done.value.code == 0 and (RunDir(tmp_path / "run").final / "model.safetensors").exists()
    assert "5 of 6 videos cached" in caplog.text


def test_a_video_re_encoded_by_another_process_uses_its_newest_entry(tmp_path, videos):
    """Shards sort by name per process: the stale entry of a changed video in process
    1's shard must not hide the fresh one that process 0 wrote later."""
    cache = tmp_path / "cache"
    build_frame_cache(videos, cache, 4, 40, progress=False)
    for suffix in (".bin", ".json"):  # as if process 1 of an earlier torchrun had written it
        (cache / f"shard-r000-00000{suffix}").rename(cache / f"shard-r001-00000{suffix}")
    changed = next(it for it in videos if it.path.endswith("v2.mp4"))
    write_video(changed.path, coloured_frames(np.random.default_rng(9), (16, 48, 64), 1, 100))
    assert build_frame_cache(videos, cache, 4, 40, progress=False)[0] == 1  # into shard-r000-00000
    items = use_frame_cache(videos, cache, 4, 40)
    assert next(it for it in items if it.path == changed.path).cached is not None
    assert build_frame_cache(videos, cache, 4, 40, progress=False)[0] == 0
