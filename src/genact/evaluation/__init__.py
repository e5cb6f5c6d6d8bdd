"""Evaluation: CLIP-TAM classification of captions and accuracy metrics."""

from genact.evaluation.clip_tam import (
    ClipTam,
    caption_scores,
    mean_std,
    per_class_accuracy,
    topk_accuracy,
)

__all__ = ["ClipTam", "caption_scores", "mean_std", "per_class_accuracy", "topk_accuracy"]
