"""VideoBlip: BLIP's image captioner turned into a video captioner (REST §3.2).

Each of T frames goes through BLIP's ViT; after chosen layers a temporal adapter
(depth-wise 3x3x3 Conv3d over the patch-token grid, residual, zero-initialised, CLS
token untouched) mixes information across frames. The final tokens are averaged
over T and BLIP's text decoder cross-attends to them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from transformers import (
    AutoTokenizer,
    BlipForConditionalGeneration,
    PreTrainedTokenizerBase,
)

from genact.errors import ConfigError
from genact.models.adapter import TemporalAdapter
from genact.models.attention import use_sdpa
from genact.models.caption_text import MAX_CAPTION_TOKENS, CaptionTokenizer, token_losses
from genact.models.decoder import CaptionDecoder
from genact.models.generation import Decoder, fast_decoder, reference_generate
from genact.models.hub import (
    PREPROCESSOR_CONFIG,
    check_finite,
    load_preprocessor_config,
    load_weights,
    resolve_model_dir,
)

VIDEO_CONFIG = "genact_video.json"
ADAPTER_WEIGHTS = "adapters.safetensors"


@dataclass
class VideoBlipConfig:
    """What makes a BLIP a VideoBlip; saved as genact_video.json beside BLIP's files."""

    num_frames: int = 8
    use_adapters: bool = True
    adapter_layers: list[int] | None = None  # ViT layers followed by an adapter; None = all
    prompt: str = "a video of"
    image_size: int | None = (
        None  # input side; None = the BLIP's own (else its position embeddings are interpolated)
    )
    trained_by: str | None = (
        None  # the genact run that made it: rest, regen or supervised (few-shot too)
    )


@dataclass
class CaptionLMOutput:
    loss: torch.Tensor  # () label-smoothed cross-entropy, mean over caption tokens
    # () the same, summed over caption tokens (loss = loss_sum / num_tokens.sum())
    loss_sum: torch.Tensor
    logprob: torch.Tensor  # (B,) summed log-likelihood of each caption's tokens
    num_tokens: torch.Tensor  # (B,) caption tokens per sample (EOS included)


class VideoBlip(nn.Module):
    """BLIP captioner over (B, T, 3, H, W) clips; see the module docstring."""

    def __init__(
        self,
        blip: BlipForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        config: VideoBlipConfig,
        preprocessor: dict | None = None,
    ):
        super().__init__()
        self.blip = blip
        self.tokenizer = tokenizer
        self.config = config
        self.preprocessor = preprocessor or {}
        use_sdpa(blip)  # fused attention: the ViT over B*T frames, the text decoder in training
        num_layers = blip.config.vision_config.num_hidden_layers
        layers = (
            list(range(num_layers))
            if config.adapter_layers is None
            else list(config.adapter_layers)
        )
        if any(not 0 <= i < num_layers for i in layers):
            raise ConfigError(f"adapter_layers {layers} outside the ViT's {num_layers} layers")
        self.adapter_layers = layers if config.use_adapters else []
        dim = blip.config.vision_config.hidden_size
        self.adapters = nn.ModuleDict({str(i): TemporalAdapter(dim) for i in self.adapter_layers})
        patch = blip.config.vision_config.patch_size
        if config.image_size is not None and (
            config.image_size < patch or config.image_size % patch
        ):
            raise ConfigError(
                f"image size {config.image_size}: must be a multiple of the ViT's patch size "
                f"{patch}"
            )
        self._decoder: CaptionDecoder | bool | None = None  # built on first use
        text = blip.config.text_config
        self.bos_id, self.eos_id, self.pad_id = (
            text.bos_token_id,
            text.sep_token_id,
            text.pad_token_id,
        )

    # ---- loading and saving -------------------------------------------------
    @classmethod
    def from_pretrained(cls, id_or_dir: str | os.PathLike, **overrides) -> "VideoBlip":
        """Load an image BLIP (hub id or dir; adapters start at zero) or a saved VideoBlip.

        `overrides` set VideoBlipConfig fields; the layout of trained adapters is kept
        (a saved model without adapters may get new, zero-initialised ones).
        """
        path = resolve_model_dir(id_or_dir)
        blip = load_weights(BlipForConditionalGeneration, path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        fields = cls.saved_settings(path)
        if (path / ADAPTER_WEIGHTS).exists():
            for key in ("use_adapters", "adapter_layers"):
                if key in overrides and overrides[key] != fields.get(key):
                    raise ConfigError(
                        f"{path}: {key} is fixed by the saved model ({fields.get(key)})"
                    )
        model = cls(
            blip,
            tokenizer,
            VideoBlipConfig(**{**fields, **overrides}),
            load_preprocessor_config(path),
        )
        if (path / ADAPTER_WEIGHTS).exists():
            adapters = load_file(path / ADAPTER_WEIGHTS)
            check_finite(adapters.items(), str(path / ADAPTER_WEIGHTS))
            model.adapters.load_state_dict(adapters)
        return model

    @staticmethod
    def saved_settings(id_or_dir: str | os.PathLike) -> dict:
        """The VideoBlipConfig fields a saved genact model carries ({} for an image BLIP)."""
        saved = resolve_model_dir(id_or_dir) / VIDEO_CONFIG
        return json.loads(saved.read_text()) if saved.exists() else {}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write BLIP (safetensors + config), tokenizer, preprocessing config, adapters
        and video config: the directory is all `from_pretrained` needs."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.blip.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        if self.preprocessor:
            (directory / PREPROCESSOR_CONFIG).write_text(
                json.dumps(self.preprocessor, indent=2) + "\n"
            )
        if self.adapter_layers:
            state = {
                k: v.detach().contiguous().cpu() for k, v in self.adapters.state_dict().items()
            }
            save_file(state, directory / ADAPTER_WEIGHTS)
        (directory / VIDEO_CONFIG).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @property
    def input_size(self) -> int:
        """The side of the frames the ViT sees (config.image_size, else BLIP's own)."""
        return self.config.image_size or self.blip.config.vision_config.image_size

    def compile_vision(self) -> None:
        """torch.compile the video encoder (ViT + adapters) of this instance; same
        weights and state dict. Worth it on GPU; see docs/performance.md."""
        self.encode_video = torch.compile(self.encode_video)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- video encoder ------------------------------------------------------
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, T, 3, H, W) -> cross-attention memory (B, 1 + H'W', d)."""
        b, t = pixels.shape[:2]
        vision = self.blip.vision_model
        # position embeddings resized to the input's patch grid (unchanged at BLIP's own size)
        hidden = vision.embeddings(pixels.flatten(0, 1), interpolate_pos_encoding=True)
        for i, layer in enumerate(vision.encoder.layers):
            hidden = layer(hidden)
            if str(i) in self.adapters:
                hidden = self.adapters[str(i)](hidden, t)
        hidden = vision.post_layernorm(hidden)
        return hidden.view(b, t, *hidden.shape[1:]).mean(dim=1)

    # ---- text ---------------------------------------------------------------
    def prompt_ids(self, prompt: str | None = None) -> torch.Tensor:
        """[BOS] + prompt tokens, (1, P)."""
        ids = self.tokenizer(prompt if prompt is not None else self.config.prompt).input_ids[
            :-1
        ]  # drop [SEP]
        ids[0] = self.bos_id
        return torch.tensor([ids], device=self.device)

    def tokenize(
        self, captions: list[str], max_length: int = MAX_CAPTION_TOKENS, device=None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Prompt + caption + [SEP] -> (input_ids (B, L), attention_mask (B, L), prompt
        length), padded to a multiple of 8 tokens (a few shapes, for compiled kernels)."""
        ids, mask = CaptionTokenizer(self).encode(captions, max_length)
        device = self.device if device is None else device
        return ids.to(device), mask.to(device), self.prompt_ids().shape[1]

    def forward(
        self,
        pixels: torch.Tensor,
        captions: list[str] | tuple[torch.Tensor, torch.Tensor, int],
        label_smoothing: float = 0.0,
    ) -> CaptionLMOutput:
        """LM loss of `captions` (B strings, or `tokenize`'s output) given clips
        (B, T, 3, H, W); prompt masked."""
        ids, mask, prompt_len = self.tokenize(captions) if isinstance(captions, list) else captions
        memory = self.encode_video(pixels)
        return self.caption_loss(memory, ids, mask, prompt_len, label_smoothing)

    def caption_loss(
        self,
        memory: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        prompt_len: int,
        label_smoothing: float = 0.0,
    ) -> CaptionLMOutput:
        """memory (B, N, d), ids / mask (B, L) -> loss over the tokens after the prompt."""
        if memory.shape[0] != ids.shape[0]:  # several captions per clip
            memory = memory.repeat_interleave(ids.shape[0] // memory.shape[0], dim=0)
        out = self.blip.text_decoder(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=memory,
            return_dict=True,
        )
        keep = mask[:, 1:].bool()
        keep[:, : prompt_len - 1] = False
        nll, smooth = token_losses(out.logits[:, :-1], ids[:, 1:])
        per_token = (1 - label_smoothing) * nll + label_smoothing * smooth
        keepf = keep.float()
        loss_sum = (per_token * keepf).sum()
        return CaptionLMOutput(
            loss=loss_sum / keepf.sum().clamp(min=1),
            loss_sum=loss_sum,
            logprob=-(nll * keepf).sum(1),
            num_tokens=keep.sum(1),
        )

    @torch.no_grad()
    def generate(self, pixels: torch.Tensor, **kwargs) -> list[str]:
        """Captions for clips (B, T, 3, H, W): B * num_return_sequences strings, grouped
        by clip, prompt stripped. Beam search by default, sampling with do_sample=True;
        see `generate_from_memory` for the options."""
        return self.generate_from_memory(self.encode_video(pixels), **kwargs)

    @torch.no_grad()
    def generate_from_memory(
        self,
        memory: torch.Tensor,
        num_beams: int = 3,
        max_new_tokens: int = 30,
        min_new_tokens: int = 1,
        do_sample: bool = False,
        num_return_sequences: int = 1,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        prompt: str | None = None,
        decoder: Decoder = "genact",
    ) -> list[str]:
        """Decode captions from encoded clips, memory (B, N, d) from `encode_video`,
        so one encoding can serve several prompts. Beam and greedy search run on
        genact's decoder (models/decoder.py), sampling and `decoder="transformers"` on
        transformers' generate, which gives the same captions."""
        search = dict(
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            num_return_sequences=num_return_sequences,
        )
        if not do_sample:
            return self.caption_prompts(memory, [prompt], decoder=decoder, **search)[0]
        ids = self.prompt_ids(prompt)
        sampled = reference_generate(
            self.blip.text_decoder,
            ids.expand(memory.shape[0], -1),
            memory,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            **{**search, "num_beams": 1},
            do_sample=True,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
        return self._texts(sampled, ids.shape[1])

    @torch.no_grad()
    def caption_prompts(
        self,
        memory: torch.Tensor,
        prompts: list[str | None],
        *,
        num_beams: int = 3,
        max_new_tokens: int = 30,
        min_new_tokens: int = 1,
        num_return_sequences: int = 1,
        decoder: Decoder = "genact",
    ) -> list[list[str]]:
        """Per prompt (None: the model's), the beam-search (greedy at one beam) captions
        of memory (B, N, d), B * num_return_sequences strings grouped by clip."""
        ids = [self.prompt_ids(p) for p in prompts]
        search = dict(
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            num_return_sequences=num_return_sequences,
        )
        if self._decoder is None:  # built on first use
            self._decoder = (
                fast_decoder(self.blip.text_decoder, eos_id=self.eos_id, pad_id=self.pad_id)
                or False
            )
        if decoder == "genact" and self._decoder:
            outs = self._decoder.decode(memory, [i[0] for i in ids], **search)
        else:
            outs = [
                reference_generate(
                    self.blip.text_decoder,
                    i.expand(memory.shape[0], -1),
                    memory,
                    eos_id=self.eos_id,
                    pad_id=self.pad_id,
                    **search,
                )
                for i in ids
            ]
        return [self._texts(out, i.shape[1]) for out, i in zip(outs, ids)]

    def _texts(self, ids: torch.Tensor, prompt_len: int) -> list[str]:
        texts = self.tokenizer.batch_decode(ids[:, prompt_len:], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def compile_decoder(self) -> None:
        """Capture genact's decoding step with torch.compile(mode="reduce-overhead")
        (CUDA graphs on a GPU; clips padded to power-of-two buckets)."""
        self._decoder = (
            fast_decoder(
                self.blip.text_decoder, eos_id=self.eos_id, pad_id=self.pad_id, compile=True
            )
            or False
        )
