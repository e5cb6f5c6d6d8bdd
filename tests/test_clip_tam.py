import math

import numpy as np
import pytest
import torch

from genact.data import VideoItem
from genact.evaluation.clip_tam import (
    ClipTam,
    caption_scores,
    mean_std,
    per_class_accuracy,
    topk_accuracy,
)
from genact.inference import encode_videos
from genact.models import FrozenClip, class_embeddings
from genact.store import EmbeddingCache


def test_accuracies_on_hand_made_embeddings():
    classes = torch.eye(4)  # class c points along axis c
    captions = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0],  # -> 0 (true 0): top-1 hit
            [0.1, 0.2, 0.9, 0.0],  # -> 2, 1, 0 (true 1): top-2 hit
            [0.0, 0.0, 0.2, 0.8],  # -> 3, 2 (true 3): top-1 hit
            [0.5, 0.0, 0.0, 0.4],  # -> 0, 3, ... (true 2): tied last among zeros
        ]
    )
    labels = torch.tensor([0, 1, 3, 2])
    scores = caption_scores(captions, classes)
    assert scores.shape == (4, 4)
    assert topk_accuracy(scores, labels, 1) == pytest.approx(50.0)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(75.0)
    assert topk_accuracy(scores, labels, 5) == pytest.approx(100.0)  # k beyond C means all classes
    assert per_class_accuracy(scores, labels, 5) == [100.0, 0.0, 0.0, 100.0, None]
    m, s = mean_std([49.0, 50.0, 51.5])
    assert m == pytest.approx(50.1666667) and s == pytest.approx(np.std([49.0, 50.0, 51.5]))
    assert math.isnan(topk_accuracy(scores[:0], labels[:0]))


@pytest.fixture(scope="module")
def clip(tiny_clip_dir):
    return FrozenClip.from_pretrained(tiny_clip_dir)


def test_clip_features_are_normalised_and_video_is_mean_of_frames(clip):
    frames = torch.randn(2, 3, 3, 32, 32)
    v = clip.video_features(frames)
    assert v.shape == (2, 16) and torch.allclose(v.norm(dim=1), torch.ones(2), atol=1e-5)
    per_frame = clip.model.get_image_features(pixel_values=frames.flatten(0, 1)).pooler_output.view(
        2, 3, -1
    )
    assert torch.allclose(v, torch.nn.functional.normalize(per_frame.mean(1), dim=-1), atol=1e-5)
    t = clip.text_features(["a dog", "a man playing a guitar", "a dog"])
    assert torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5) and torch.allclose(t[0], t[2])
    assert not any(p.requires_grad for p in clip.parameters()) and not clip.train().training


def test_text_features_run_in_length_sorted_batches_and_keep_input_order(clip):
    long = "a man playing a guitar on a stage in front of a crowd"
    texts = [long, "a dog", long.replace("guitar", "violin"), "a cat", long.replace("man", "woman")]
    widths = []
    hook = clip.model.text_model.register_forward_hook(
        lambda mod, args, kwargs, out: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        got = clip.text_features(texts, batch_size=2)
    finally:
        hook.remove()
    n_short, n_long = (len(clip.tokenizer(t).input_ids) for t in ("a dog", long))
    assert widths == [
        n_short,
        n_long,
        n_long,
    ]  # the short texts share a batch: no batch pads short to long
    one_by_one = torch.cat([clip.text_features([t], batch_size=1) for t in texts])
    assert torch.allclose(got, one_by_one, atol=1e-5)
    assert clip.text_features([]).shape == (0, 16)


def test_text_cache_encodes_each_text_once_across_runs(clip, tmp_path, monkeypatch):
    calls = []
    real = clip.text_features
    monkeypatch.setattr(
        clip, "text_features", lambda texts, bs=256: calls.append(list(texts)) or real(texts, bs)
    )
    cache = EmbeddingCache(tmp_path / "text", dim=16)
    first = clip.encode_texts(["a", "b", "a"], cache)
    second = EmbeddingCache(tmp_path / "text", dim=16)  # a new process opens the same directory
    again = clip.encode_texts(["b", "c", "a"], second)
    assert calls == [["a", "b"], ["c"]]
    assert torch.allclose(again[0], first[1], atol=2e-3) and torch.allclose(
        again[2], first[0], atol=2e-3
    )
    assert torch.allclose(again, real(["b", "c", "a"]), atol=2e-3)  # float16 storage
    assert torch.allclose(clip.encode_texts(["b", "c", "b"]), real(["b", "c", "b"]), atol=1e-6)


def test_cache_survives_an_interrupted_write(tmp_path):
    cache = EmbeddingCache(tmp_path, dim=4, dtype="float32")
    cache.put(["x", "y"], torch.arange(8.0).view(2, 4))
    with open(tmp_path / "vectors.bin", "ab") as f:  # a killed write: vector bytes without a key
        f.write(b"\x00" * 10)
    reopened = EmbeddingCache(tmp_path, dim=4, dtype="float32")
    assert len(reopened) == 2 and torch.equal(reopened.get(["y"]), torch.tensor([[4.0, 5, 6, 7]]))
    reopened.put(["z"], torch.ones(1, 4))
    assert torch.equal(
        EmbeddingCache(tmp_path, dim=4, dtype="float32").get(["z", "x"])[0], torch.ones(4)
    )
    with open(tmp_path / "vectors.bin", "ab") as f, open(tmp_path / "keys.jsonl", "a") as k:
        # killed after the vector, half way through its key
        f.write(np.full(4, 9, np.float32).tobytes())
        k.write('"w')
    again = EmbeddingCache(tmp_path, dim=4, dtype="float32")
    assert len(again) == 3 and "w" not in again
    again.put(["w"], torch.zeros(1, 4))
    assert torch.equal(
        EmbeddingCache(tmp_path, dim=4, dtype="float32").get(["w"]), torch.zeros(1, 4)
    )
    with pytest.raises(ValueError, match="another directory"):
        EmbeddingCache(tmp_path, dim=8, dtype="float32")


def test_clip_tam_picks_the_class_whose_name_matches_the_caption(clip):
    tam = ClipTam(clip, ["riding a bike", "swimming", "playing guitar"])
    # the caption identical to a class name has cosine 1 with it
    top = tam.topk(["swimming", "playing guitar"], k=2)
    assert [t[0][0] for t in top] == ["swimming", "playing guitar"] and top[0][0][
        1
    ] == pytest.approx(1.0, abs=1e-5)
    two = class_embeddings(clip, ["swimming"], templates=("a video of {}.", "a photo of {}."))
    by_hand = clip.text_features(["a video of swimming.", "a photo of swimming."]).mean(0)
    assert torch.allclose(two[0], by_hand / by_hand.norm(), atol=1e-5)


def test_video_features_are_cached_by_path(clip, make_video, tmp_path):
    items = [VideoItem(str(make_video("a.mp4"))), VideoItem(str(tmp_path / "missing.mp4"))]
    cache = EmbeddingCache(tmp_path / "video", dim=16, dtype="float32")
    feats = encode_videos(clip, items, num_frames=4, cache=cache, progress=False)
    assert list(feats) == [0] and len(cache) == 1
    again = encode_videos(clip, items[:1], num_frames=4, cache=cache, progress=False)
    assert torch.allclose(again[0], feats[0])
