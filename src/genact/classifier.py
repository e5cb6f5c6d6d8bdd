"""The classifier a user calls from Python: videos in, a caption and its classes out,
for any list of class names (the way transformers' zero-shot pipelines feel).

    from genact import VideoClassifier
    clf = VideoClassifier.from_pretrained("runs/rest_k400/final",
                                          clip="openai/clip-vit-base-patch16")
    labels = ["playing guitar", "riding a bike"]
    clf("clip.mp4", candidate_labels=labels, template="a video of a person {}.")
    # {"video": "clip.mp4", "caption": "...", "labels": [...best first], "scores": [...]}
    clf(["a.mp4", "b.mp4"], candidate_labels=labels)   # a list in, a list out, batched

A long or untrimmed video is captioned in windows: `window=10, stride=5` gives
{"video", "segments": [{"start", "end", "caption", "labels", "scores"}, ...]}; the
windows are decoded one at a time, so memory does not grow with the video's length.

`genact classify` and `genact caption` are this class; captions are cached like
theirs (a rerun with other labels or templates generates nothing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from genact.config import Decoding, check_template
from genact.data import VideoDecodeError, time_windows, video_duration
from genact.data.datasets import SkipReport, VideoItem
from genact.distributed import Dist, pick_device
from genact.errors import ConfigError, DataError
from genact.evaluation.clip_tam import caption_scores
from genact.inference.captions import Captioner, default_cache_dir
from genact.models.clip import FrozenClip, class_embeddings


class VideoClassifier:
    """A captioner (VideoBlip) and a frozen CLIP: `caption` describes videos,
    calling the classifier also ranks `candidate_labels` by CLIP-TAM cosine."""

    def __init__(self, captioner: Captioner, clip: FrozenClip | None):
        self.captioner, self.clip = captioner, clip
        self._labels: dict[
            tuple, tuple[list[str], torch.Tensor]
        ] = {}  # class embeddings per label list

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        clip: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        frames: int | None = None,
        beams: int = 3,
        max_new_tokens: int = 30,
        prompt: str | None = None,
        image_size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        decoder: str = "genact",
        cache_dir: str | os.PathLike | None = None,
        progress: bool = False,
        dist: Dist = Dist(),
    ) -> "VideoClassifier":
        """The captioner `model` and CLIP `clip` (hub ids or directories; without `clip`
        the object only captions). Settings as `genact classify`'s options; frames,
        prompt and image size default to the model's own."""
        decoding = Decoding(
            frames=frames,
            image_size=image_size,
            prompt=prompt,
            beams=beams,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            workers=num_workers,
            decoder=decoder,
        )
        dev = dist.device if dist.enabled else pick_device(device)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        captioner = Captioner.load(
            str(model), decoding, cache_dir=cache, device=dev, progress=progress, dist=dist
        )
        return cls(
            captioner, FrozenClip.from_pretrained(clip).to(dev) if clip is not None else None
        )

    def with_decoding(self, **changes) -> "VideoClassifier":
        """The same models with other frames, beams or max new tokens (their own captions
        in the cache); see Captioner.with_decoding."""
        other = VideoClassifier(self.captioner.with_decoding(**changes), self.clip)
        other._labels = self._labels  # class embeddings do not depend on decoding
        return other

    def caption(
        self,
        videos: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        window: float | None = None,
        stride: float | None = None,
    ) -> dict | list[dict]:
        """{"video", "caption"} per video ({"video", "error"} for one that cannot be read);
        with `window` (seconds), {"video", "segments": [{"start", "end", "caption"}]}
        instead, windows every `stride` seconds (default: the window). A single path
        gives a single dict."""
        paths, single = _paths(videos)
        report = SkipReport()
        spans, errors = _windows(paths, window, stride)
        items = [
            VideoItem(p, start=s, end=e) for p, spans_p in zip(paths, spans) for s, e in spans_p
        ]
        captions = self.captioner(items, report)
        errors.update(dict(report.skipped))
        rows, k = [], 0
        for p, spans_p in zip(paths, spans):
            caps = [captions.get(k + j) for j in range(len(spans_p))]
            k += len(spans_p)
            if window is None:
                rows.append(
                    {"video": p, "caption": caps[0]}
                    if spans_p and caps[0] is not None
                    else {"video": p, "error": errors.get(p, f"{p}: could not be captioned")}
                )
            elif p in errors and not any(c is not None for c in caps):
                rows.append({"video": p, "error": errors[p]})
            else:
                rows.append(
                    {
                        "video": p,
                        "segments": [
                            {"start": s, "end": e, "caption": c}
                            for (s, e), c in zip(spans_p, caps)
                            if c is not None
                        ],
                    }
                )
        return rows[0] if single else rows

    def __call__(
        self,
        videos: str | os.PathLike | Sequence[str | os.PathLike],
        candidate_labels: Sequence[str],
        template: str | Sequence[str] = "{}",
        top_k: int | None = None,
        *,
        window: float | None = None,
        stride: float | None = None,
    ) -> dict | list[dict]:
        """Caption `videos` and rank `candidate_labels` for each: {"video", "caption",
        "labels" (best first), "scores" (CLIP-TAM cosines)}, the first `top_k` labels
        (all by default); an unreadable video gets {"video", "error"}. Templates put
        each label in a sentence ("a video of a person {}."); several are averaged.
        With `window`, each of the video's segments gets its labels (see `caption`)."""
        if self.clip is None:
            raise DataError("this VideoClassifier has no CLIP: load it with clip=... to classify")
        names, class_emb = self._class_embeddings(candidate_labels, template)
        rows = self.caption(videos, window=window, stride=stride)
        many = isinstance(rows, list)
        rows = rows if many else [rows]
        done = [r for row in rows for r in (row.get("segments") or [row]) if "caption" in r]
        if done:
            scores = caption_scores(self.clip.encode_texts([r["caption"] for r in done]), class_emb)
            k = min(top_k or len(names), len(names))
            values, order = scores.topk(k, dim=1)
            for r, v, o in zip(done, values.tolist(), order.tolist()):
                r["labels"], r["scores"] = [names[j] for j in o], v
        return rows if many else rows[0]

    def _class_embeddings(
        self, labels: Sequence[str], template: str | Sequence[str]
    ) -> tuple[list[str], torch.Tensor]:
        """(labels, (C, D) class text features), computed once per label list and templates."""
        templates = [template] if isinstance(template, str) else list(template)
        key = (tuple(labels), tuple(templates))
        if key not in self._labels:
            names = list(labels)
            if not names or len(set(names)) != len(names):
                raise DataError("candidate_labels: give at least one label, each once")
            for t in templates:
                check_template(t)
            self._labels[key] = (names, class_embeddings(self.clip, names, templates))
        return self._labels[key]


def _windows(
    paths: list[str], window: float | None, stride: float | None
) -> tuple[list[list[tuple[float | None, float | None]]], dict[str, str]]:
    """Per video, its [start, end) windows (the whole video when `window` is None), and
    the errors of videos whose length cannot be read."""
    if window is None:
        return [[(None, None)] for _ in paths], {}
    if window <= 0 or (stride is not None and stride <= 0):
        raise ConfigError(f"window {window} s, stride {stride} s: both must be positive")
    spans, errors = [], {}
    for p in paths:
        try:
            spans.append(time_windows(video_duration(p), window, stride))
        except VideoDecodeError as e:
            spans.append([])
            errors[p] = str(e)
    return spans, errors


def _paths(videos) -> tuple[list[str], bool]:
    """The video paths as strings, and whether a single one was given."""
    if isinstance(videos, (str, os.PathLike)):
        return [os.fspath(videos)], True
    return [os.fspath(v) for v in videos], False
