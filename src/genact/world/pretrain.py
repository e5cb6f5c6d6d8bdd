"""`genact world pretrain`: the miniature world's "web-pretrained" foundation models.

A tiny BLIP image captioner learns generic, incomplete captions of single frames
and a tiny CLIP learns frames against full descriptions, both on fresh clips of
every composition (never a video of the world's splits). They have the real HF
architectures (`BlipForConditionalGeneration`, `CLIPModel`) and tokenizer classes
(`BertTokenizer`, `CLIPTokenizer`) with the world's small vocabulary, and are saved
with `save_pretrained` like hub checkpoints.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from genact.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, VideoTransform
from genact.errors import ConfigError
from genact.io import atomic_dir
from genact.models.word_tokenizers import blip_tokenizer, clip_tokenizer
from genact.world.render import render_clip
from genact.world.world import WorldConfig, pretraining_corpus

log = logging.getLogger(__name__)
EXTRA_WORDS = "a an the of on in at is something someone person video picture big small".split()
CAPTION_PROMPT = "a picture of"  # the image captioner's own prompt, as BLIP's


def world_words(corpus_texts: list[str]) -> list[str]:
    return sorted({w for t in corpus_texts for w in t.split()} | set(EXTRA_WORDS))


def _frames(cfg: WorldConfig, corpus) -> torch.Tensor:
    """(N, 3, S, S) normalised frames of the corpus."""
    t = VideoTransform(size=cfg.size, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)
    return torch.stack(
        [
            t(render_clip(spec, cfg.frames, cfg.size, cfg.cue_prob, cfg.mislead_prob)[[f]])[0]
            for spec, f, _, _ in corpus
        ]
    )


PREPROCESSOR = {"image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD)}


def pretrain(
    out: str | Path,
    cfg: WorldConfig | None = None,
    clips: int = 8640,
    steps: int = 1500,
    seed: int = 0,
    hidden: int = 64,
    patch: int = 8,
    *,
    init: str | Path | None = None,
    lr_scale: float = 1.0,
) -> tuple[Path, Path]:
    """Train and save out/blip and out/clip; returns their directories. With `init` (a
    folder with blip/ and clip/, e.g. the shipped ones), training continues from those
    weights: words they already know keep their embeddings, new words get fresh ones
    (more pretraining data, as a newer web checkpoint); `lr_scale` scales both rates."""
    cfg, out = cfg or WorldConfig(), Path(out)
    start = None if init is None else check_foundation(Path(init).expanduser())
    torch.manual_seed(seed)
    corpus = pretraining_corpus(cfg, clips, seed)
    captions, texts = [c for _, _, c, _ in corpus], [t for _, _, _, t in corpus]
    words = world_words(captions + texts + [CAPTION_PROMPT])
    frames = _frames(cfg, corpus)
    rng = np.random.default_rng(seed)
    fit = dict(steps=steps, rng=rng, hidden=hidden, patch=patch, lr_scale=lr_scale)

    with atomic_dir(out / "blip") as tmp:
        init_blip = None if start is None else start / "blip"
        _train_captioner(tmp, cfg, words, frames, captions, init=init_blip, **fit)
    with atomic_dir(out / "clip") as tmp:
        init_clip = None if start is None else start / "clip"
        _train_clip(tmp, cfg, words, frames, texts, init=init_clip, **fit)
    return out / "blip", out / "clip"


def check_foundation(root: Path) -> Path:
    """`root`, refused unless it holds the two models (blip/ and clip/, each with its
    config.json)."""
    if not all((root / m / "config.json").is_file() for m in ("blip", "clip")):
        raise ConfigError(f"foundation models: {root} has no blip/ and clip/ to load")
    return root


def pretrain_world(
    out: str | Path,
    *,
    clips: int = 8640,
    steps: int = 1500,
    more_steps: int = 300,
    seed: int = 0,
    first: str | Path | None = None,
) -> tuple[Path, Path]:
    """The shipped models' recipe (world version 3), in two rounds, as a web
    checkpoint trained further on more data: `pretrain` on the world without the
    novel-word classes into out/round-1 (the models world version 2 shipped), then
    `more_steps` from those weights at half the rates on frames of all 48 classes, into
    out/blip and out/clip. `first`: a folder with the first round's models (the
    shipped ones: genact/world/weights/round-1), to run the second round alone. With
    `more_steps` 0, the first round alone, into out."""
    out = Path(out)
    if more_steps == 0:
        return pretrain(out, WorldConfig(novel_words=False), clips=clips, steps=steps, seed=seed)
    if first is None:
        first = out / "round-1"
        pretrain(first, WorldConfig(novel_words=False), clips=clips, steps=steps, seed=seed)
    return pretrain(
        out,
        WorldConfig(novel_words=True),
        clips=clips,
        steps=more_steps,
        seed=seed,
        init=first,
        lr_scale=0.5,
    )


def _load_by_token(model: torch.nn.Module, old: dict, old_vocab: dict, new_vocab: dict) -> None:
    """Copy `old` (a state dict of the same architecture over `old_vocab`) into `model`
    (over `new_vocab`): tensors of equal shape whole; those indexed by the vocabulary
    (rows of embeddings, the LM head and its bias) token by token, new tokens left as
    initialised."""
    pairs = [(new_vocab[t], i) for t, i in old_vocab.items() if t in new_vocab]
    new_ids = torch.tensor([n for n, _ in pairs])
    old_ids = torch.tensor([o for _, o in pairs])
    state = model.state_dict()
    for name, value in old.items():
        target = state[name]
        if target.shape == value.shape:
            target.copy_(value)
        elif value.shape[0] == len(old_vocab) and target.shape[0] == len(new_vocab):
            target[new_ids] = value[old_ids]
        else:
            shapes = f"{tuple(value.shape)} cannot initialise {tuple(target.shape)}"
            raise ValueError(f"{name}: {shapes}")


def _train_captioner(
    tmp: Path,
    cfg: WorldConfig,
    words: list[str],
    frames: torch.Tensor,
    captions: list[str],
    *,
    steps: int,
    rng: np.random.Generator,
    hidden: int,
    patch: int,
    init: Path | None = None,
    lr_scale: float = 1.0,
) -> None:
    """The world's image captioner, trained on (frame, caption) pairs (from `init`'s
    weights when given) and saved to `tmp`: a VideoBlip with T = 1, no adapters and its
    own prompt."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    from genact.models.video_blip import VideoBlip, VideoBlipConfig

    tok = blip_tokenizer(words, tmp)
    blip = BlipForConditionalGeneration(
        BlipConfig(
            text_config=dict(
                vocab_size=len(tok),
                hidden_size=hidden,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=2 * hidden,
                encoder_hidden_size=hidden,
                max_position_embeddings=40,
                bos_token_id=tok.bos_token_id,
                sep_token_id=tok.sep_token_id,
                pad_token_id=tok.pad_token_id,
            ),
            vision_config=dict(
                hidden_size=hidden,
                image_size=cfg.size,
                patch_size=patch,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=2 * hidden,
                initializer_range=0.02,
            ),
        )
    )
    model = VideoBlip(
        blip,
        tok,
        VideoBlipConfig(num_frames=1, use_adapters=False, prompt=CAPTION_PROMPT),
        PREPROCESSOR,
    )
    if init is not None:
        old = VideoBlip.from_pretrained(init)
        _load_by_token(model, old.state_dict(), old.tokenizer.get_vocab(), tok.get_vocab())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3 * lr_scale, weight_decay=0.01)
    for step in range(steps):
        idx = rng.choice(len(captions), 64, replace=False)
        loss = model(frames[idx][:, None], [captions[i] for i in idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            log.info("captioner step %d: loss %.3f", step, loss.item())
    model.save_pretrained(tmp)  # an image captioner: T = 1, no adapters, its own prompt


def _train_clip(
    tmp: Path,
    cfg: WorldConfig,
    words: list[str],
    frames: torch.Tensor,
    texts: list[str],
    *,
    steps: int,
    rng: np.random.Generator,
    hidden: int,
    patch: int,
    init: Path | None = None,
    lr_scale: float = 1.0,
) -> None:
    """The world's CLIP, trained contrastively on (frame, text) pairs (from `init`'s
    weights when given) and saved to `tmp`."""
    from transformers import CLIPConfig, CLIPModel

    ctok = clip_tokenizer(words)
    clip = CLIPModel(
        CLIPConfig(
            # text pooled at EOS
            text_config=dict(
                vocab_size=len(ctok),
                hidden_size=hidden,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=2 * hidden,
                max_position_embeddings=32,
                bos_token_id=ctok.bos_token_id,
                eos_token_id=ctok.eos_token_id,
                pad_token_id=ctok.pad_token_id,
            ),
            vision_config=dict(
                hidden_size=hidden,
                image_size=cfg.size,
                patch_size=patch,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=2 * hidden,
            ),
            projection_dim=32,
        )
    )
    if init is not None:
        from transformers import CLIPTokenizer

        old = CLIPModel.from_pretrained(init)
        old_vocab = CLIPTokenizer.from_pretrained(init).get_vocab()
        _load_by_token(clip, old.state_dict(), old_vocab, ctok.get_vocab())
    opt = torch.optim.AdamW(clip.parameters(), lr=5e-4 * lr_scale, weight_decay=0.01)
    for step in range(steps):
        idx = rng.choice(len(texts), 64, replace=False)
        enc = ctok([texts[i] for i in idx], padding=True, return_tensors="pt")
        loss = clip(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,
            pixel_values=frames[idx],
            return_loss=True,
        ).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            log.info("CLIP step %d: loss %.3f", step, loss.item())
    clip.save_pretrained(tmp)
    ctok.save_pretrained(tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
