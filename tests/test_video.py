import av
import numpy as np
import pytest
import torch

from genact.data import (
    SkipReport,
    VideoDataset,
    VideoDecodeError,
    VideoItem,
    VideoTransform,
    iterate,
    make_loader,
    read_video,
    sample_indices,
    write_video,
)
from genact.data.video import read_video_sides
from genact.testing import frame_level, numbered_frames


def test_eval_sampling_takes_segment_centres():
    assert sample_indices(80, 8, train=False).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    assert sample_indices(8, 8, train=False).tolist() == list(range(8))


def test_train_sampling_draws_one_frame_inside_each_segment():
    rng = np.random.default_rng(0)
    draws = np.stack([sample_indices(80, 8, True, rng) for _ in range(500)])
    for seg in range(8):
        assert draws[:, seg].min() == seg * 10 and draws[:, seg].max() == seg * 10 + 9
    assert (np.diff(draws, axis=1) > 0).all()


@pytest.mark.parametrize("train", [False, True])
def test_short_clips_repeat_frames(train):
    idx = sample_indices(3, 8, train, np.random.default_rng(1))
    assert len(idx) == 8 and set(idx.tolist()) <= {0, 1, 2} and (np.diff(idx) >= 0).all()
    assert sample_indices(1, 4, train).tolist() == [0, 0, 0, 0]


def test_decode_returns_the_sampled_frames(make_video):
    path = make_video("clip.mp4", numbered_frames(24))  # 3 s at 8 fps
    clip = read_video(path, 8)
    assert clip.shape == (8, 48, 64, 3) and clip.dtype == np.uint8
    assert [frame_level(f) for f in clip] == sample_indices(24, 8, False).tolist()


def test_decode_window_in_seconds(make_video):
    path = make_video("long.mp4", numbered_frames(24))
    clip = read_video(path, 4, start=1.0, end=2.0)  # frames 8..15
    assert [frame_level(f) for f in clip] == [9, 11, 13, 15]


def test_short_video_repeats_frames_when_decoded(make_video):
    clip = read_video(make_video("short.mp4", numbered_frames(3)), 8)
    assert [frame_level(f) for f in clip] == sample_indices(3, 8, False).tolist()


@pytest.mark.parametrize(
    "ext,codec", [(".avi", "mpeg4"), (".mkv", "libx264"), (".webm", "libvpx-vp9")]
)
def test_other_containers(tmp_path, ext, codec):
    path = tmp_path / f"clip{ext}"
    try:
        write_video(path, numbered_frames(16), codec=codec)
    except Exception as e:  # the encoder, not our decoder, is missing from this FFmpeg build
        pytest.skip(f"cannot write {ext} here: {e}")
    assert [frame_level(f) for f in read_video(path, 4)] == [2, 6, 10, 14]


def test_unreadable_files_raise_one_error_naming_the_path(tmp_path, make_video):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"\x00not a video" * 500)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(make_video("whole.mp4").read_bytes()[:700])
    for path, why in [
        (tmp_path / "missing.mp4", "not found"),
        (empty, "empty"),
        (garbage, "cannot open"),
        (truncated, "cannot open"),
    ]:
        with pytest.raises(VideoDecodeError, match=why) as err:
            read_video(path, 8)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_dataset_skips_and_reports_bad_videos(tmp_path, make_video):
    good = make_video("good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    items = [
        VideoItem(str(good), 1),
        VideoItem(str(bad), 0),
        VideoItem(str(tmp_path / "gone.mp4")),
        VideoItem(str(good)),
    ]
    ds = VideoDataset(items, 4, VideoTransform(size=32))
    report = SkipReport()
    batches = list(iterate(make_loader(ds, batch_size=2, num_workers=2), report))
    assert [b["index"].tolist() for b in batches] == [[0], [3]]
    assert batches[0]["pixels"].shape == (1, 4, 3, 32, 32) and batches[1]["label"].tolist() == [-1]
    assert sorted(p for p, _ in report.skipped) == sorted([str(bad), str(tmp_path / "gone.mp4")])
    assert "skipped 2 unreadable" in report.summary()


def test_eval_transform_resizes_crops_and_normalises():
    frames = np.full((2, 40, 60, 3), 255, np.uint8)
    t = VideoTransform(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = t(frames)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, torch.full_like(out, 2.0))


def test_train_augmentation_is_identical_across_frames():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1, 50, 70, 3), dtype=np.uint8)
    clip = np.repeat(image, 4, axis=0)
    t = VideoTransform(size=32, train=True, seed=0)
    outs = [t(clip) for _ in range(20)]
    for out in outs:
        assert out.shape == (4, 3, 32, 32)
        assert torch.allclose(out[0], out[1:], atol=1e-6)  # one draw for the clip
    assert not all(torch.allclose(outs[0], o) for o in outs[1:])  # but draws differ between calls
    gray = [
        o
        for o in outs
        if torch.allclose(
            o[:, 0] * 0.26862954 + 0.48145466, o[:, 1] * 0.26130258 + 0.4578275, atol=1e-5
        )
    ]
    assert 0 < len(gray) < len(outs)


def test_training_samples_are_reproducible_per_epoch_and_index(make_video):
    item = VideoItem(str(make_video("long.mp4", numbered_frames(64))))
    ds = VideoDataset([item, item], 4, VideoTransform(size=32, train=True), train=True, seed=7)
    a0, b0 = ds[0]["pixels"], ds[1]["pixels"]
    assert torch.equal(ds[0]["pixels"], a0)  # same (seed, epoch, index): same clip
    assert not torch.equal(a0, b0)  # other index: other draw
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["pixels"], a0)
    loaded = [b["pixels"][0] for b in iterate(make_loader(ds, 1, num_workers=2), SkipReport())]
    assert torch.equal(loaded[0], ds[0]["pixels"])  # worker processes change nothing


def barcode_frames(n: int, height: int = 32, width: int = 64) -> np.ndarray:
    """Frame i shows i in binary as 8 black / white 8-pixel-wide bars (n <= 256)."""
    bits = (np.arange(n)[:, None] >> np.arange(8)) & 1
    row = np.repeat(bits * 255, 8, axis=1).astype(np.uint8)  # (n, 64)
    return np.broadcast_to(row[:, None, :width, None], (n, height, width, 3)).copy()


def barcode(frame: np.ndarray) -> int:
    return int(sum(1 << b for b in range(8) if frame[:, b * 8 + 2 : b * 8 + 6].mean() > 127))


@pytest.mark.parametrize("gop", [12, 250])
def test_seeking_decoder_finds_the_sampled_frames_of_a_long_video(tmp_path, gop):
    """240 frames with a keyframe every `gop`: the sampled frames, in
    eval, train and windowed sampling, are the ones sequential decoding gives."""
    path = tmp_path / "long.mp4"
    write_video(path, barcode_frames(240), fps=24, gop=gop)
    assert [barcode(f) for f in read_video(path, 8)] == sample_indices(240, 8, False).tolist()
    drawn = sample_indices(240, 8, True, np.random.default_rng(3))
    assert [
        barcode(f) for f in read_video(path, 8, train=True, rng=np.random.default_rng(3))
    ] == drawn.tolist()
    window = read_video(path, 4, start=5.0, end=8.0)  # frames 120..191
    assert [barcode(f) for f in window] == (120 + sample_indices(72, 4, False)).tolist()


@pytest.mark.parametrize("gop", [12, 250])
def test_windows_read_from_the_keyframe_before_them_give_the_frames_of_a_full_scan(tmp_path, gop):
    """Windows anywhere in a 240-frame video (at its start, across a
    keyframe, at its end, past its end) sample the frames sequential decoding gives."""
    path = tmp_path / "long.mp4"
    write_video(path, barcode_frames(240), fps=24, gop=gop)
    for start, end in ((0.0, 1.0), (0.4, 0.6), (4.9, 5.6), (9.0, 10.0), (9.5, 20.0), (0.49, 0.51)):
        inside = [i for i in range(240) if start <= i / 24 < end]  # frame i is shown at i / 24 s
        window = read_video(path, 4, start=start, end=end)
        want = [inside[j] for j in sample_indices(len(inside), 4, False)]
        assert [barcode(f) for f in window] == want, (start, end)


def pyav_frames(path, indices, side=None) -> np.ndarray:
    """The reference: PyAV's own threaded decode of every frame, each converted by
    itself (a new scaler per frame), then the frames at `indices`."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    frames = list(container.decode(stream))
    container.close()
    out = []
    for i in indices:
        f = frames[int(i)]
        short = min(f.width, f.height)
        if side and short > side:
            w, h = round(f.width * side / short), round(f.height * side / short)
            out.append(
                f.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
            )
        else:
            out.append(f.to_ndarray(format="rgb24"))
    return np.stack(out)


def test_decoded_frames_equal_pyavs_own_decode_for_small_and_large_videos(tmp_path):
    """Small videos are decoded without codec threads and every frame's colour
    conversion reuses one scaler; neither may change a pixel, also when videos of
    other sizes come in between (a scaler kept for the wrong size would)."""
    rng = np.random.default_rng(0)
    videos = []
    for i, (h, w) in enumerate([(32, 32), (256, 320), (48, 64), (32, 32)]):
        path = tmp_path / f"v{i}.mp4"
        write_video(path, rng.integers(0, 256, (12, h, w, 3), dtype=np.uint8), crf=23)
        videos.append(path)
    for path in videos * 2:
        for train in (False, True):
            indices = sample_indices(12, 4, train, np.random.default_rng(1))
            got = read_video_sides(path, 4, (None, 24), train, rng=np.random.default_rng(1))
            np.testing.assert_array_equal(got[0], pyav_frames(path, indices))
            np.testing.assert_array_equal(got[1], pyav_frames(path, indices, side=24))


def _decode_in_child(path, queue) -> None:
    queue.put(read_video(path, 4).sum().item())


def test_a_forked_process_decodes_after_its_parent_has(make_video):
    """DataLoader workers are forked from a process that has decoded: they must not
    use its colour-conversion scaler, whose threads they lack (that hung)."""
    import multiprocessing

    path = make_video()
    want = read_video(path, 4).sum().item()  # the parent decodes first
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_decode_in_child, args=(path, queue))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked process hung decoding")
    assert queue.get(timeout=5) == want
