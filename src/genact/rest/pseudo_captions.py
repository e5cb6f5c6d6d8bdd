"""REST step 1: initial pseudo-captions from the image captioner, per frame and prompt."""

from __future__ import annotations

from genact.config import DEFAULT_PROMPTS
from genact.data.datasets import SkipReport, VideoItem
from genact.models.video_blip import VideoBlip, eval_batches


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
    model (each frame is a one-frame clip, so adapters play no part). One ViT pass per
    frame serves all prompts; decoding is batched over B*T frames per prompt.

    A caption made under the model's own prompt ("a video of") is kept without it,
    since training puts that prompt back; other prompts ("a person is") stay part of
    the caption. Duplicates are merged. Returns {item index: distinct captions};
    unreadable videos are absent and counted in `report`.
    """
    out: dict[int, list[str]] = {}
    batches = eval_batches(model, items, num_frames, batch_size, num_workers, report, progress, "initial captions")
    for batch in batches:
        pixels = batch["pixels"].to(model.device)
        b, t = pixels.shape[:2]
        memory = model.encode_video(pixels.flatten(0, 1).unsqueeze(1))  # (B*T, N, d)
        per_video: list[list[str]] = [[] for _ in range(b)]
        for prompt in prompts:
            texts = model.generate_from_memory(memory, prompt=prompt, **generate_kwargs)
            keep_prompt = prompt.strip() != model.config.prompt.strip()
            for j, text in enumerate(texts):
                per_video[j // t].append(f"{prompt} {text}".strip() if keep_prompt else text)
        for idx, caps in zip(batch["index"].tolist(), per_video):
            out[idx] = list(dict.fromkeys(c for c in caps if c))
    return out
