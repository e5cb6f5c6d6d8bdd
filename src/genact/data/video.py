"""Video decoding with PyAV and uniform temporal sampling of T frames (a frame
cache's frames are read back by `genact.data.cached_clip`)."""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from genact.errors import GenactError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
# frames of at most this many pixels are decoded on the calling thread: the codec's own
# threads cost more to start and to flush at each seek than such frames take to decode
# (the frames are the same either way; docs/performance.md, section 1)
THREADED_DECODE_PIXELS = 256 * 256
_local = threading.local()  # one reformatter per thread and process, reused frame to frame
_inherited: list[VideoReformatter] = []  # a forked child's copies of its parent's, never used


def _reformatter() -> VideoReformatter:
    """This thread's reformatter (it keeps its scaler while frame sizes do not change).
    A forked child (DataLoader workers) makes its own: the parent's scaler has threads
    the child lacks, and using or freeing it there hangs."""
    if getattr(_local, "pid", None) != os.getpid():
        if hasattr(_local, "reformatter"):
            _inherited.append(_local.reformatter)
        _local.pid, _local.reformatter = os.getpid(), VideoReformatter()
    return _local.reformatter


class VideoDecodeError(GenactError, RuntimeError):
    """A video could not be read: missing, empty, corrupt or without a video stream.

    The message always starts with the path, so one line tells the user which file
    and what is wrong.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def sample_indices(
    num_frames: int, num_samples: int, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Pick `num_samples` frame indices from a clip of `num_frames` frames.

    The clip is cut into `num_samples` equal segments; eval takes each segment's
    centre, train a uniformly random frame inside each segment (TSN sampling).
    Clips shorter than `num_samples` frames repeat frames. Returns int64 (T,).
    """
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    seg = num_frames / num_samples
    starts = np.arange(num_samples) * seg
    if not train:
        return np.minimum((starts + seg / 2).astype(np.int64), num_frames - 1)
    rng = rng if rng is not None else np.random.default_rng()
    lo = np.floor(starts).astype(np.int64)
    hi = np.maximum(lo + 1, np.floor(starts + seg).astype(np.int64))
    return np.minimum(rng.integers(lo, hi), num_frames - 1)


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or f"{type(e).__name__}: {e}"


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(path, f"cannot open as video ({_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "contains no video stream")
    return container


def _rgb(frame: av.VideoFrame, max_short_side: int | None = None) -> np.ndarray:
    """An upright uint8 RGB frame (H, W, 3): the stream's display rotation (a phone
    video's metadata) applied, and shrunk while still uint8, so that its short side is
    at most `max_short_side` (never enlarged)."""
    short = min(frame.width, frame.height)
    if max_short_side and short > max_short_side:
        scale = max_short_side / short
        size = dict(
            width=max(round(frame.width * scale), 1),
            height=max(round(frame.height * scale), 1),
            interpolation="AREA",
        )
    else:
        size = {}
    img = _reformatter().reformat(frame, format="rgb24", **size).to_ndarray()
    # counter-clockwise, as the display matrix says
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(img, turns)) if turns else img


def _in_window(t: float | None, start: float | None, end: float | None) -> bool:
    if t is None:
        return True
    return (start is None or t >= start) and (end is None or t < end)


def _count_frames(container, stream, start: float | None, end: float | None) -> int:
    """Frames of the stream inside [start, end), counted from packets (no decoding)."""
    if stream.frames > 0 and start is None and end is None:
        return int(stream.frames)
    tb = stream.time_base
    count = 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        t = None if packet.pts is None else float(packet.pts * tb)
        if _in_window(t, start, end):
            count += 1
    return count


def _decode_selected(
    container,
    stream,
    indices: np.ndarray,
    start: float | None,
    end: float | None,
    sides: tuple[int | None, ...] = (None,),
) -> tuple[dict[int, tuple[np.ndarray, ...]], int]:
    """Decode frames in order; keep RGB arrays only at `indices`. Returns (frames, count)."""
    wanted = set(int(i) for i in indices)
    last_wanted = max(wanted)
    kept: dict[int, np.ndarray] = {}
    if start:
        container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
    tb = stream.time_base
    i = 0
    for frame in container.decode(stream):
        t = None if frame.pts is None else float(frame.pts * tb)
        if not _in_window(t, start, end):
            if end is not None and t is not None and t >= end:
                break
            continue
        if i in wanted:
            kept[i] = _rgbs(frame, sides)
        i += 1
        if i > last_wanted:
            break
    return kept, i


def _timestamps(
    container, stream, start: float | None, end: float | None
) -> tuple[list[int], list[int]] | None:
    """Sorted presentation timestamps of the frames inside [start, end) and of the
    keyframes from the one before the window on, read from packets (no decoding);
    None when some packet has no pts. A window is read from the keyframe before it to
    the second keyframe after it (one more than a closed GOP needs, for the leading
    frames of an open one), so a window of a long video costs its own packets, not
    the whole file's."""
    tb = stream.time_base
    if start:
        container.seek(int(start / tb), stream=stream, backward=True, any_frame=False)
    pts: list[int] = []
    keys: list[int] = []
    keys_after = 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if packet.pts is None:
            return None
        t = float(packet.pts * tb)
        if packet.is_keyframe:
            keys.append(packet.pts)
            keys_after += end is not None and t >= end
            if keys_after == 2:
                break
        if _in_window(t, start, end):
            pts.append(packet.pts)
    return sorted(pts), sorted(keys)


def _decode_at(
    container, stream, targets: list[int], keys: list[int], sides: tuple[int | None, ...] = (None,)
) -> dict[int, tuple[np.ndarray, ...]]:
    """RGB frames at the presentation timestamps `targets` (sorted, distinct).

    Decoding seeks to the keyframe before a target whenever that keyframe lies
    beyond the frames decoded so far, so a long video costs about T GOPs of
    decoding rather than all of its frames. A target missing from the stream
    takes the next frame. Returns {target: (H, W, 3) uint8 per side}; a target it
    could not reach is absent.
    """
    kept: dict[int, np.ndarray] = {}
    frames = None
    pos: int | None = None  # pts of the last decoded frame
    last = None
    for target in targets:
        if pos is not None and target <= pos:
            kept[target] = _rgbs(last, sides)
            continue
        i = bisect.bisect_right(keys, target) - 1
        key = keys[i] if i >= 0 else None
        if frames is None or pos is None or (key is not None and key > pos):
            container.seek(
                key if key is not None else target, stream=stream, backward=True, any_frame=False
            )
            frames = container.decode(stream)
        for frame in frames:
            if frame.pts is None:
                return kept
            pos, last = frame.pts, frame
            if frame.pts >= target:
                kept[target] = _rgbs(frame, sides)
                break
    return kept


def _rgbs(frame: av.VideoFrame, sides: tuple[int | None, ...]) -> tuple[np.ndarray, ...]:
    return tuple(_rgb(frame, side) for side in sides)


def read_video(
    path: str | os.PathLike,
    num_frames: int,
    train: bool = False,
    start: float | None = None,
    end: float | None = None,
    rng: np.random.Generator | None = None,
    max_short_side: int | None = None,
) -> np.ndarray:
    """Decode `num_frames` uniformly sampled RGB frames of a video, upright (the
    display rotation applied) and, with `max_short_side`, shrunk while still uint8
    so that their short side is at most that (a 4K clip never becomes a 4K float).

    `start` / `end` (seconds) restrict sampling to a window, as Kinetics clips
    cut from longer videos need. Frames are found by their timestamps and reached
    by seeking to the keyframe before each (see `_decode_at`); a stream without
    timestamps is decoded in order instead. Returns uint8 (T, H, W, 3).
    Raises VideoDecodeError naming the path for any unreadable file.
    """
    return read_video_sides(path, num_frames, (max_short_side,), train, start, end, rng)[0]


def read_video_sides(
    path: str | os.PathLike,
    num_frames: int,
    sides: tuple[int | None, ...],
    train: bool = False,
    start: float | None = None,
    end: float | None = None,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """`read_video` for several `max_short_side`s from one decode: the same frames,
    each shrunk as `read_video` shrinks them, one uint8 (T, H, W, 3) per side."""
    path = str(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.codec_context.width * stream.codec_context.height > THREADED_DECODE_PIXELS:
            stream.thread_type = "AUTO"
        try:
            stamps = _timestamps(container, stream, start, end)
            if stamps is not None and stamps[0]:
                pts, keys = stamps
                indices = sample_indices(len(pts), num_frames, train, rng)
                wanted = sorted(set(pts[int(i)] for i in indices))
                at = _decode_at(container, stream, wanted, keys, sides)
                if len(at) == len(wanted):
                    return _stack([at[pts[int(i)]] for i in indices], len(sides))
            # No timestamps, or seeking fell short: decode in order.
            container.seek(0)
            total = _count_frames(container, stream, start, end)
            if total == 0:
                raise VideoDecodeError(
                    path,
                    "no decodable frames" + (f" in [{start}, {end}) s" if start or end else ""),
                )
            indices = sample_indices(total, num_frames, train, rng)
            container.seek(0)
            kept, decoded = _decode_selected(container, stream, indices, start, end, sides)
            if len(kept) < len(set(indices.tolist())):
                # The header's frame count was wrong: sample again over what really decodes.
                if decoded == 0:
                    raise VideoDecodeError(path, "no decodable frames")
                indices = sample_indices(decoded, num_frames, train, rng)
                container.seek(0)
                kept, _ = _decode_selected(container, stream, indices, start, end, sides)
        except av.FFmpegError as e:
            raise VideoDecodeError(path, f"corrupt video data ({_reason(e)})") from None
    finally:
        container.close()
    if not kept or any(int(i) not in kept for i in indices):
        raise VideoDecodeError(path, "frames missing after decoding (truncated file?)")
    return _stack([kept[int(i)] for i in indices], len(sides))


def _stack(frames: list[tuple[np.ndarray, ...]], sides: int) -> list[np.ndarray]:
    """T frames of `sides` sizes each -> one (T, H, W, 3) array per size."""
    return [np.stack([f[s] for f in frames]) for s in range(sides)]


def video_duration(path: str | os.PathLike) -> float:
    """A video's length in seconds, from its header (or, without one, its last packet's
    timestamp); a VideoDecodeError for a file that is not a video."""
    path = str(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1_000_000
        last = max((p.pts for p in container.demux(stream) if p.pts is not None), default=None)
        if last is None:
            raise VideoDecodeError(path, "no timestamps to tell its length")
        return float(last * stream.time_base)
    finally:
        container.close()


def time_windows(
    duration: float, window: float, stride: float | None = None
) -> list[tuple[float, float]]:
    """[start, end) windows of `window` seconds every `stride` seconds (default: the
    window, so they tile) over a video of `duration` seconds. A tail shorter than a
    quarter window joins the last window; a longer one is a window of its own."""
    stride = stride or window
    out = []
    start = 0.0
    while start + window <= duration + 1e-6:
        out.append((round(start, 6), round(start + window, 6)))
        start += stride
    tail_start = out[-1][1] if out else 0.0
    if duration - tail_start > 1e-6:
        if out and duration - tail_start < window / 4:
            out[-1] = (out[-1][0], round(duration, 6))
        else:
            out.append((round(max(start, 0.0) if out else 0.0, 6), round(duration, 6)))
    return out


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: int = 8,
    codec: str = "libx264",
    gop: int | None = None,
    crf: int = 10,
) -> None:
    """Write uint8 (T, H, W, 3) frames (or an iterable of (H, W, 3) frames, written as
    they come) as a video file (H and W even for H.264). `gop`: frames between
    keyframes (the encoder's default when None); `crf`: H.264 quality (10, the
    default, is near lossless; 23 is x264's own default)."""
    frames = iter(np.asarray(frames, dtype=np.uint8) if isinstance(frames, np.ndarray) else frames)
    first = np.asarray(next(frames), dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.height, stream.width = first.shape[0], first.shape[1]
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for f in itertools.chain([first], frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(f, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
