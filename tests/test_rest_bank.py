import math

import pytest
import torch

from genact.data import VideoItem
from genact.inference import frame_captions
from genact.io import atomic_dir, atomic_write_text
from genact.models import VideoBlip
from genact.rest.retrieval import retrieval_update
from genact.training.bank import CaptionBank


def test_bank_provenance_through_a_retrieval_round(tmp_path):
    bank = CaptionBank(["v0", "v1"])
    bank.add(0, "a man  dancing", 0, "init")
    bank.add(0, "a man dancing", 0, "init")  # same text after whitespace clean-up: kept once
    bank.add(1, "a dog running", 0, "init")
    bank.add(1, "a dog playing", 1, "generated")
    assert bank.captions(0) == ["a man dancing"] and bank.padded().tolist() == [[0, -1], [1, 2]]
    video = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.6, 0.8]]), dim=1)
    ids, scores = retrieval_update([[0, 1], [1, 0]], bank.padded(), video, text, k=2)
    assert bank.apply_retrieval(ids, scores, round=1) == 1  # v1 keeps its own two captions
    got = {
        (bank.keys[i], bank.texts[c.text_id], c.source, c.round)
        for i in range(2)
        for c in bank.entries[i]
    }
    assert got == {
        ("v0", "a man dancing", "init", 0),
        ("v0", "a dog playing", "retrieved", 1),
        ("v1", "a dog running", "init", 0),
        ("v1", "a dog playing", "generated", 1),
    }
    bank.save(tmp_path / "bank.jsonl")
    again = CaptionBank.load(tmp_path / "bank.jsonl")
    assert again.keys == bank.keys and [again.captions(i) for i in range(2)] == [
        bank.captions(i) for i in range(2)
    ]
    assert [c.score for c in again.entries[0]] == pytest.approx(
        [c.score for c in bank.entries[0]], abs=1e-6
    )
    assert not math.isnan(again.entries[1][0].score)


def test_atomic_writes_keep_the_old_version_on_failure(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "old")
    with atomic_dir(tmp_path / "ckpt") as d:
        (d / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "ckpt") as d:
            (d / "weights").write_text("half")
            raise RuntimeError("killed while writing")
    assert (tmp_path / "ckpt" / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt",
        "f.txt",
    ]  # no temporary left behind
    with atomic_dir(tmp_path / "ckpt") as d:
        (d / "weights").write_text("v2")
    assert (tmp_path / "ckpt" / "weights").read_text() == "v2" and (
        tmp_path / "f.txt"
    ).read_text() == "old"


def test_frame_captions_cover_frames_and_prompts(tiny_blip_dir, make_video, tmp_path, monkeypatch):
    model = VideoBlip.from_pretrained(tiny_blip_dir)
    seen = []
    real = model.caption_prompts

    def spy(memory, prompts, **kw):
        seen.append((memory.shape[0], tuple(prompts)))
        return [[f"frame{j}" for j in range(memory.shape[0])] for _ in prompts]

    monkeypatch.setattr(model, "caption_prompts", spy)
    items = [
        VideoItem(str(make_video("a.mp4"))),
        VideoItem(str(tmp_path / "bad.mp4")),
        VideoItem(str(make_video("b.mp4"))),
    ]
    caps = frame_captions(
        model,
        items,
        num_frames=3,
        prompts=["a video of", "a person is"],
        batch_size=3,
        progress=False,
    )
    # 2 good videos x 3 frames, one batch for both prompts
    assert seen == [(6, ("a video of", "a person is"))]
    assert sorted(caps) == [0, 2]
    assert caps[0] == [
        "frame0",
        "frame1",
        "frame2",
        "a person is frame0",
        "a person is frame1",
        "a person is frame2",
    ]
    assert caps[2][0] == "frame3"
    monkeypatch.setattr(model, "caption_prompts", real)
    merged = frame_captions(model, items[:1], num_frames=4, prompts=["a video of"], progress=False)
    assert len(merged[0]) == len(set(merged[0])) >= 1  # identical frames give one merged caption
