"""Inference: captioning and CLIP feature loops over videos (models run, nothing trained)."""

from genact.inference.captions import Captioner, caption_videos, eval_batches, frame_captions
from genact.inference.features import encode_videos, video_feature_stage

__all__ = [
    "Captioner",
    "caption_videos",
    "encode_videos",
    "eval_batches",
    "frame_captions",
    "video_feature_stage",
]
