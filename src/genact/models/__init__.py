"""Models: the video captioner (VideoBlip), frozen CLIP, and loading by hub id or directory."""

from genact.models.adapter import TemporalAdapter
from genact.models.clip import FrozenClip, class_embeddings
from genact.models.hub import ModelNotFoundError, resolve_model_dir
from genact.models.video_blip import CaptionLMOutput, VideoBlip, VideoBlipConfig

__all__ = [
    "CaptionLMOutput",
    "FrozenClip",
    "ModelNotFoundError",
    "TemporalAdapter",
    "VideoBlip",
    "VideoBlipConfig",
    "class_embeddings",
    "resolve_model_dir",
]
