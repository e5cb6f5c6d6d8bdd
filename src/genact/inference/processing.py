"""The models' image preprocessing, kept apart from the models (as transformers keeps
its processors): clip transforms at a model's input size with its processor's mean
and std, and the short side that training resizes frames to."""

from __future__ import annotations

import os

from transformers import BlipConfig

from genact.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, VideoTransform
from genact.models.clip import FrozenClip
from genact.models.hub import resolve_model_dir
from genact.models.video_blip import VideoBlip


def image_stats(preprocessor: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of a preprocessor config; OpenAI CLIP's (also BLIP's) by default."""
    return tuple(preprocessor.get("image_mean", OPENAI_CLIP_MEAN)), tuple(
        preprocessor.get("image_std", OPENAI_CLIP_STD)
    )


def blip_transform(model: VideoBlip, train: bool = False) -> VideoTransform:
    """`model`'s clip transform: uint8 (T, H, W, 3) -> float (T, 3, S, S) at its input size S."""
    mean, std = image_stats(model.preprocessor)
    return VideoTransform(size=model.input_size, mean=mean, std=std, train=train)


def clip_transform(clip: FrozenClip) -> VideoTransform:
    """CLIP's eval clip transform at its input size."""
    mean, std = image_stats(clip.preprocessor)
    return VideoTransform(size=clip.model.config.vision_config.image_size, mean=mean, std=std)


def training_short_side(model: VideoBlip) -> int:
    """The short side training resizes `model`'s clips to."""
    return blip_transform(model, train=True).resize_side


def saved_training_short_side(id_or_dir: str | os.PathLike, image_size: int | None = None) -> int:
    """The same from a model's configs alone (no weights are loaded): what
    `genact cache-frames` stores."""
    size = image_size or VideoBlip.saved_settings(id_or_dir).get("image_size")
    size = size or BlipConfig.from_pretrained(resolve_model_dir(id_or_dir)).vision_config.image_size
    return VideoTransform(size=size, train=True).resize_side
