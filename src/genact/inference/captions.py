"""Captioning loops over videos: batches of eval-sampled clips, video captions,
REST's initial frame captions, and the cached captioner that `genact caption`,
`classify`, `eval`, few-shot and the demo share.

Captions are cached on disk per model, decoding settings and video, so scoring the
same videos with other class names or templates generates nothing, and a killed run
loses at most one chunk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from filelock import FileLock

from genact.config import DEFAULT_PROMPTS, Decoding
from genact.console import progress_bar
from genact.data.datasets import SkipReport, VideoDataset, VideoItem, iterate, make_loader, video_id
from genact.distributed import Dist, all_gather, all_reduce_sum, shard
from genact.inference.processing import blip_transform, clip_transform
from genact.io import ShardLog
from genact.models.clip import FrozenClip
from genact.models.hub import resolve_model_dir
from genact.models.precision import autocast
from genact.models.video_blip import VideoBlip


def eval_batches(
    model: VideoBlip,
    items: list[VideoItem],
    num_frames: int,
    batch_size: int = 8,
    num_workers: int = 0,
    report: SkipReport | None = None,
    progress: bool = True,
    desc: str = "captioning",
    clip: FrozenClip | None = None,
) -> Iterator[dict]:
    """Batches of eval-sampled clips in `model`'s input format (and, with `clip`, in
    CLIP's as `clip_pixels`, from the same decode), with a progress bar; the model is
    in eval mode, no_grad and (on GPU) bf16 autocast while they are consumed.
    Unreadable videos are left out and recorded in `report`."""
    report = report if report is not None else SkipReport()
    also = {"clip_pixels": clip_transform(clip)} if clip is not None else None
    loader = make_loader(
        VideoDataset(items, num_frames, blip_transform(model), also=also), batch_size, num_workers
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(model.device):
            yield from progress_bar(
                iterate(loader, report), total=len(loader), desc=desc, enabled=progress
            )
    finally:
        model.train(was_training)


def caption_videos(
    model: VideoBlip,
    items: list[VideoItem],
    batch_size: int = 8,
    num_workers: int = 0,
    report: SkipReport | None = None,
    progress: bool = True,
    *,
    num_frames: int | None = None,
    **generate_kwargs,
) -> dict[int, list[str]]:
    """Caption every item (eval frame sampling of `num_frames`, default the model's).
    Returns {item index: captions} (num_return_sequences per video); unreadable videos
    are absent and in `report`."""
    return caption_and_encode(
        model,
        items,
        None,
        batch_size,
        num_workers,
        report,
        progress,
        num_frames=num_frames,
        **generate_kwargs,
    )[0]


def caption_and_encode(
    model: VideoBlip,
    items: list[VideoItem],
    clip: FrozenClip | None,
    batch_size: int = 8,
    num_workers: int = 0,
    report: SkipReport | None = None,
    progress: bool = True,
    *,
    num_frames: int | None = None,
    **generate_kwargs,
) -> tuple[dict[int, list[str]], dict[int, torch.Tensor]]:
    """`caption_videos`, and with `clip` each video's CLIP feature (D,) from the same
    decoded frames (what `encode_videos` gives at the same frames): ({index:
    captions}, {index: feature})."""
    n = generate_kwargs.get("num_return_sequences", 1)
    out: dict[int, list[str]] = {}
    feats: dict[int, torch.Tensor] = {}
    frames = num_frames or model.config.num_frames
    batches = eval_batches(
        model, items, frames, batch_size, num_workers, report, progress, clip=clip
    )
    for batch in batches:
        texts = model.generate(batch["pixels"].to(model.device), **generate_kwargs)
        index = batch["index"].tolist()
        for j, idx in enumerate(index):
            out[idx] = texts[j * n : (j + 1) * n]
        if clip is not None:
            feats.update(zip(index, clip.video_features(batch["clip_pixels"]).cpu()))
    return out, feats


def frame_captions(
    model: VideoBlip,
    items: list[VideoItem],
    num_frames: int = 8,
    prompts: tuple[str, ...] | list[str] = DEFAULT_PROMPTS,
    batch_size: int = 8,
    num_workers: int = 0,
    report: SkipReport | None = None,
    progress: bool = True,
    **generate_kwargs,
) -> dict[int, list[str]]:
    """Caption each of the T frames of every video under each prompt with the image
    model (each frame a one-frame clip, so a temporal adapter sees only that frame; an
    image BLIP's adapters start at zero and then change nothing). One ViT pass per
    frame, and one computation of its cross-attention keys and values, serve all
    prompts; decoding is batched over B*T frames per prompt. `generate_kwargs` are
    VideoBlip.caption_prompts' (beam search, no sampling).

    A caption made under the model's own prompt ("a video of") is kept without it,
    since training puts that prompt back; other prompts ("a person is") stay part of
    the caption. Duplicates are merged. Returns {item index: distinct captions};
    unreadable videos are absent and counted in `report`.
    """
    out: dict[int, list[str]] = {}
    batches = eval_batches(
        model, items, num_frames, batch_size, num_workers, report, progress, "initial captions"
    )
    for batch in batches:
        pixels = batch["pixels"].to(model.device)
        b, t = pixels.shape[:2]
        memory = model.encode_video(pixels.flatten(0, 1).unsqueeze(1))  # (B*T, N, d)
        per_video: list[list[str]] = [[] for _ in range(b)]
        captions = model.caption_prompts(memory, list(prompts), **generate_kwargs)
        for prompt, texts in zip(prompts, captions):
            keep_prompt = prompt.strip() != model.config.prompt.strip()
            for j, text in enumerate(texts):
                per_video[j // t].append(f"{prompt} {text}".strip() if keep_prompt else text)
        for idx, caps in zip(batch["index"].tolist(), per_video):
            out[idx] = list(dict.fromkeys(c for c in caps if c))
    return out


def default_cache_dir() -> Path:
    """$GENACT_CACHE (with `~` expanded), else ~/.cache/genact."""
    return Path(os.path.expanduser(os.environ.get("GENACT_CACHE", "~/.cache/genact")))


def model_fingerprint(model_dir: Path, settings: dict) -> str:
    """Short hash of a model directory's weights (names, sizes, first MiB) and the
    decoding settings: the key of its caption cache."""
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for f in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.json")):
        st = f.stat()  # a model retrained in place changes its files' times
        h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


class CaptionCache:
    """Captions of one model + settings, keyed by video (append-only JSON lines).
    Any number of processes may share it: appends take a file lock, and a caption is
    only ever stored under the key of the video it describes."""

    def __init__(self, cache_dir: Path, fingerprint: str):
        self.log = ShardLog(cache_dir / "captions", fingerprint, 0)
        self._lock = FileLock(f"{self.log.file}.lock")
        self.captions: dict[str, str] = {}
        self._offset = 0  # bytes of the file taken in
        self.refresh()

    def refresh(self) -> None:
        """Take in the complete lines added since the last look (by any process); a
        line cut short by a kill is skipped."""
        if not self.log.file.exists():
            return
        with open(self.log.file, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next look
        self._offset += end
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str) and "caption" in row:
                self.captions[row["key"]] = row["caption"]

    def add(self, new: dict[str, str]) -> None:
        with self._lock:
            self.log.append([{"key": k, "caption": c} for k, c in new.items()])
        self.captions.update(new)


@dataclass
class Captioner:
    """A captioning model with its cache; `generated` counts captions made (not cached).
    Captions are saved every `chunk` videos, so a killed run loses at most one chunk.
    Under torchrun (`dist`), process r of W takes videos r, r + W, ... (skipping what
    the cache holds), and every process gets all the captions and skipped videos back."""

    model: VideoBlip
    cache: CaptionCache
    decoding: Decoding = Decoding()
    progress: bool = True
    chunk: int = 64
    dist: Dist = Dist()
    generated: int = 0
    # what the captions depend on besides the videos (see load)
    settings: dict = field(default_factory=dict)
    source: Path | None = None  # the model's directory

    @property
    def frames(self) -> int:
        """Frames sampled per clip: the decoding's, else the model's."""
        return self.decoding.frames or self.model.config.num_frames

    def with_decoding(self, **changes) -> "Captioner":
        """The same model and cache directory with other frames, beams or max new tokens
        (a prompt or frame side needs the model loaded again: Captioner.load)."""
        if set(changes) - {"frames", "beams", "max_new_tokens", "batch_size", "workers"}:
            raise ValueError(
                f"with_decoding changes frames, beams and lengths only, not {sorted(changes)}"
            )
        decoding = dataclasses.replace(self.decoding, **changes)
        settings = {
            **self.settings,
            "frames": decoding.frames or self.model.config.num_frames,
            "num_beams": decoding.beams,
            "max_new_tokens": decoding.max_new_tokens,
        }
        settings.pop("model_fingerprint", None)
        cache = CaptionCache(self.cache.log.dir.parent, model_fingerprint(self.source, settings))
        return Captioner(
            self.model,
            cache,
            decoding,
            self.progress,
            self.chunk,
            self.dist,
            settings={**settings, "model_fingerprint": self.settings.get("model_fingerprint")},
            source=self.source,
        )

    @classmethod
    def load(
        cls,
        model: str,
        decoding: Decoding,
        *,
        cache_dir: Path,
        device: torch.device,
        progress: bool = True,
        dist: Dist = Dist(),
    ) -> "Captioner":
        """`model` (hub id or directory) on `device`, with `decoding`'s frames, frame side
        and prompt where set (else the model's), and its caption cache under `cache_dir`."""
        given = {
            "num_frames": decoding.frames,
            "image_size": decoding.image_size,
            "prompt": decoding.prompt,
        }
        net = VideoBlip.from_pretrained(model, **{k: v for k, v in given.items() if v is not None})
        net = net.to(device).eval()
        settings = {
            "frames": net.config.num_frames,
            "prompt": net.config.prompt,
            "image_size": net.input_size,
            "num_beams": decoding.beams,
            "max_new_tokens": decoding.max_new_tokens,
            "decoder": decoding.decoder,
        }
        source = resolve_model_dir(model)
        cache = CaptionCache(cache_dir, model_fingerprint(source, settings))
        return cls(
            net,
            cache,
            decoding,
            progress,
            dist=dist,
            settings={**settings, "model_fingerprint": model_fingerprint(source, {})},
            source=source,
        )

    def __call__(self, items: list[VideoItem], report: SkipReport) -> dict[int, str]:
        """{item index: caption} for the readable items."""
        return self.caption_and_encode(items, report)[0]

    def caption_and_encode(
        self, items: list[VideoItem], report: SkipReport, clip: FrozenClip | None = None
    ) -> tuple[dict[int, str], dict[int, torch.Tensor]]:
        """({item index: caption}, {item index: CLIP feature (D,)}): with `clip`, the
        videos captioned now (not those the cache held) get their CLIP video feature
        from the same decoded frames, so `encode_videos` need not decode them again."""
        keys = [video_id(it, self.frames) for it in items]
        # fixed shares: the cache may change while ranks look
        mine = shard(list(range(len(items))), self.dist)
        self.cache.refresh()
        own, before = SkipReport(), self.generated
        todo = [i for i in mine if keys[i] not in self.cache.captions]
        feats = self._generate(items, keys, todo, own, clip)
        out = {i: self.cache.captions[k] for i, k in enumerate(keys) if k in self.cache.captions}
        # the others' captions, features and skips, by position: their cache may be on another
        # node
        if self.dist.enabled:
            mine_out = {i: out[i] for i in mine if i in out}
            shares = all_gather((mine_out, feats, own.skipped), self.dist)
            out = {i: c for caps, _, _ in shares for i, c in caps.items()}
            feats = {i: f for _, part, _ in shares for i, f in part.items()}
            own = SkipReport([tuple(s) for _, _, skipped in shares for s in skipped])
            made = self.generated - before
            self.generated += int(all_reduce_sum([float(made)], self.dist)[0]) - made
        report.skipped.extend(own.skipped)
        return out, feats

    def _generate(
        self,
        items: list[VideoItem],
        keys: list[str],
        todo: list[int],
        report: SkipReport,
        clip: FrozenClip | None,
    ) -> dict[int, torch.Tensor]:
        """Caption items[todo] chunk by chunk into the cache; the CLIP features of what it
        captioned, with `clip`."""
        bar = progress_bar(
            total=len(todo),
            desc="captioning",
            enabled=bool(self.progress and todo and self.dist.main),
        )
        feats: dict[int, torch.Tensor] = {}
        for s in range(0, len(todo), self.chunk):
            part = [
                i for i in todo[s : s + self.chunk] if keys[i] not in self.cache.captions
            ]  # others' work
            if part:
                d = self.decoding
                caps, part_feats = caption_and_encode(
                    self.model,
                    [items[i] for i in part],
                    clip,
                    d.batch_size,
                    d.workers,
                    report,
                    False,
                    num_frames=self.frames,
                    num_beams=d.beams,
                    max_new_tokens=d.max_new_tokens,
                    decoder=d.decoder,
                )
                self.cache.add({keys[part[j]]: c[0] for j, c in caps.items()})
                feats.update({part[j]: f for j, f in part_feats.items()})
                self.generated += len(caps)
                self.cache.refresh()
            bar.update(min(self.chunk, len(todo) - s))
        bar.close()
        return feats
