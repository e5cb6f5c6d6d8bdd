"""REST: pseudo-captions, CLIP retrieval over a caption bank, and self-training."""

from genact.rest.bank import Caption, CaptionBank
from genact.rest.retrieval import pad_ragged, retrieval_update, video_neighbours
from genact.rest.run import run_rest

__all__ = ["Caption", "CaptionBank", "pad_ragged", "retrieval_update",
           "run_rest", "video_neighbours"]
