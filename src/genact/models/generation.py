"""The reference caption search: transformers' generate on BLIP's text decoder (also
used for sampling), with a cache that leaves the cross-attention keys / values in
place; and the choice between it and genact's decoder (models/decoder.py)."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from genact.models.decoder import CaptionDecoder, unsupported

Decoder = Literal["genact", "transformers"]  # caption search: genact's, or the reference


class BeamCache(EncoderDecoderCache):
    """The decoder's key / value cache for beam search over encoded clips. The beams
    of one clip attend to the same memory, so their cross-attention keys and values
    are identical and reordering beams needs to permute only the self-attention
    cache; transformers copies both at every step, which was half of BLIP-base's
    beam-search time on CPU (benchmarks/captioning.py)."""

    @classmethod
    def new(cls, text_config) -> "BeamCache":
        return cls(DynamicCache(config=text_config), DynamicCache(config=text_config))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)


def reference_generate(
    text_decoder: torch.nn.Module,
    prompt_ids: torch.Tensor,
    memory: torch.Tensor,
    *,
    eos_id: int,
    pad_id: int,
    **kwargs,
) -> torch.Tensor:
    """transformers' generate over memory (B, N, d) from prompt_ids (B, P) -> token ids
    (B', P + L). Beam search (num_beams > 1, no sampling) keeps a BeamCache."""
    if kwargs.get("num_beams", 1) > 1 and not kwargs.get("do_sample"):
        kwargs["past_key_values"] = BeamCache.new(text_decoder.config)
    # the name is `cache` from transformers 5.2x on, `past_key_values` before
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`past_key_values` is deprecated", category=FutureWarning
        )
        return text_decoder.generate(
            input_ids=prompt_ids,
            encoder_hidden_states=memory,
            encoder_attention_mask=torch.ones(
                memory.shape[:2], dtype=torch.long, device=memory.device
            ),
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            **kwargs,
        )


def fast_decoder(
    text_decoder: torch.nn.Module, *, eos_id: int, pad_id: int, compile: bool = False
) -> CaptionDecoder | None:
    """genact's decoder over `text_decoder`; None, with a warning, when its generation
    config asks for something only transformers implements."""
    missing = unsupported(text_decoder.generation_config)
    if missing:
        warnings.warn(
            f"the model's generation config sets {missing}: captioning with transformers' generate"
        )
        return None
    return CaptionDecoder(text_decoder, eos_id=eos_id, pad_id=pad_id, compile=compile)
