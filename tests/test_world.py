"""The miniature world: deterministic clips, held-out compositions, readable splits,
frame-level cues that are partial and clip-level evidence that is complete."""

import numpy as np
import pytest

from genact.data import read_list, read_video
from genact.world import OBJECTS, VERBS, ClipSpec, WorldConfig, build_world, compositions, is_unseen, render_clip
from genact.world.world import frame_caption, pretraining_corpus


def test_clips_are_deterministic_and_show_their_verb_over_time():
    spec = ClipSpec("rising", "ball", "grass", 7)
    a, b = render_clip(spec), render_clip(spec)
    assert a.shape == (16, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    red = lambda clip: (clip[..., 0] > 180) & (clip[..., 1] < 100)  # noqa: E731 - the ball's pixels
    rows = [np.nonzero(red(f))[0].mean() for f in a]
    assert rows[-1] < rows[0] - 8  # the ball goes up
    down = render_clip(ClipSpec("falling", "ball", "grass", 7))
    rows = [np.nonzero(red(f))[0].mean() for f in down]
    assert rows[-1] > rows[0] + 8
    grow = render_clip(ClipSpec("growing", "ball", "grass", 7))
    assert red(grow[-1]).sum() > 3 * red(grow[0]).sum()


def test_held_out_compositions_cover_every_verb_and_object():
    unseen = [p for p in compositions() if is_unseen(*p)]
    assert len(compositions()) == 36 and len(unseen) == 12
    assert {v for v, _ in unseen} == set(VERBS) and {o for _, o in unseen} == set(OBJECTS)


def test_build_writes_readable_splits_without_unseen_classes_in_training(tmp_path):
    cfg = WorldConfig(train_per_class=1, fewshot_per_class=1, test_per_class=1)
    root = build_world(tmp_path, cfg)
    train = read_list(root / "splits" / "train.txt", root / "videos", root / "splits" / "classes_all.txt")
    test = read_list(root / "splits" / "test.txt", root / "videos", root / "splits" / "classes_unseen.txt")
    gen = read_list(root / "splits" / "test.txt", root / "videos", root / "splits" / "classes_all.txt")
    assert len(train.items) == 24 and len(test.items) == 12 and len(test.class_names) == 12
    assert len(gen.class_names) == 36 and [test.class_names[i.label] for i in test.items] == [
        gen.class_names[i.label] for i in gen.items]
    assert not {train.class_names[i.label] for i in train.items} & set(test.class_names)
    assert read_video(test.items[0].path, 8).shape == (8, 32, 32, 3)
    stamp = (root / "world.json").stat().st_mtime_ns
    build_world(tmp_path, cfg)  # cached: nothing rewritten
    assert (root / "world.json").stat().st_mtime_ns == stamp


def test_pretraining_captions_are_generic_and_descriptions_complete():
    corpus = pretraining_corpus(WorldConfig(), 360, seed=0)
    assert len(corpus) == 360
    from genact.world.render import cue_frames

    cue = [bool(cue_frames(spec, 16, 0.6)[f]) for spec, f, _, _ in corpus]
    said = [spec.verb in caption for spec, _, caption, _ in corpus]
    assert not any(s for s, c in zip(said, cue) if not c)  # never a verb the frame does not show
    share = sum(s for s, c in zip(said, cue) if c) / sum(cue)
    assert 0.8 < share < 0.97  # shown: usually said, not always
    assert all(spec.verb in text and spec.obj in text for spec, _, _, text in corpus)
    rng = np.random.default_rng(0)
    assert all("rising" not in frame_caption(ClipSpec("rising", "box", "water", 1), False, rng) for _ in range(50))


def test_world_tokenizers_round_trip_every_word():
    from genact.world.pretrain import blip_tokenizer, clip_tokenizer, world_words

    texts = [t for _, _, c, t in pretraining_corpus(WorldConfig(), 72, 0)]
    words = world_words(texts)
    ctok = clip_tokenizer(words)
    for w in words:  # one BPE token per world word
        assert len(ctok(w, add_special_tokens=False).input_ids) == 1, w
    text = "a cyan kite sliding left on the grass"
    assert ctok.decode(ctok(text).input_ids, skip_special_tokens=True).strip() == text
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        btok = blip_tokenizer(words, Path(d))
        assert btok.decode(btok(text).input_ids, skip_special_tokens=True) == text
        assert btok.unk_token_id not in btok(text).input_ids


def test_pretrained_world_models_load_through_the_user_path(tmp_path):
    """A short pretraining run: the saved models load with VideoBlip / FrozenClip
    and CLIP already tells objects apart in single frames."""
    import torch

    from genact.models import FrozenClip, VideoBlip
    from genact.world.pretrain import _frames, pretrain

    blip_dir, clip_dir = pretrain(tmp_path, clips=360, steps=120)
    model = VideoBlip.from_pretrained(blip_dir, num_frames=1, prompt="a picture of")
    clip = FrozenClip.from_pretrained(clip_dir)
    corpus = pretraining_corpus(WorldConfig(), 72, seed=5)
    frames = _frames(WorldConfig(), corpus)
    assert len(model.generate(frames[:4, None], max_new_tokens=6)) == 4
    img = torch.nn.functional.normalize(clip.model.get_image_features(pixel_values=frames).pooler_output, dim=-1)
    objects = list(OBJECTS)
    names = clip.text_features([f"a {o}" for o in objects])
    hit = [objects[j] == spec.obj for (spec, *_), j in zip(corpus, (img @ names.T).argmax(1).tolist())]
    assert sum(hit) / len(hit) > 0.5  # chance: 1/6


def test_changing_the_world_config_rewrites_its_videos(tmp_path):
    small = dict(train_per_class=1, fewshot_per_class=1, test_per_class=1)
    root = build_world(tmp_path, WorldConfig(**small))
    first = read_list(root / "splits" / "test.txt", root / "videos", root / "splits" / "classes_unseen.txt").items[0]
    before = read_video(first.path, 16)
    build_world(tmp_path, WorldConfig(cue_prob=0.0, **small))  # no trails at all now
    after = read_video(first.path, 16)
    assert before.shape == after.shape and not np.array_equal(before, after)


def test_reduced_demo_runs_the_user_path_on_the_shipped_models(tmp_path):
    """A small demo (4 of its rows): the shipped tiny models are used as they are,
    the world's unseen compositions are recognised far above chance (1/12), and
    REST's own captions name what the objects do."""
    import json

    from genact.world.demo import SHIPPED, DemoConfig, run_demo

    assert (SHIPPED / "blip" / "model.safetensors").exists() and (SHIPPED / "clip" / "model.safetensors").exists()
    cfg = DemoConfig(train_per_class=6, test_per_class=4, rest_epochs=2, rest_rounds=1,
                     methods=("clip", "frame-captioner", "rest-h1", "rest"))
    table = run_demo(tmp_path, cfg, progress=False)
    assert not (tmp_path / "pretrained").exists()  # nothing was pretrained: the package's weights served
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    assert list(rows) == ["clip", "frame-captioner", "rest-h1", "rest"] and "REST without retrieval" in table
    assert rows["clip"]["top1"] > 50 and rows["frame-captioner"]["top1"] > 30 and rows["rest"]["top1"] > 30
    results = json.loads((tmp_path / "results" / "rest" / "results.json").read_text())["splits"]["unseen"]["videos"]
    assert len(results) == 48
    assert sum(any(v in r["caption"] for v in VERBS) for r in results) >= 5
    assert (tmp_path / "report" / "report.html").exists()


def test_world_pretrain_command_defaults_are_the_shipped_weights_settings(monkeypatch, tmp_path):
    """`genact world pretrain --out DIR` must train with pretrain()'s defaults (what
    the shipped weights were made with), and pass on the sizes a user gives."""
    import inspect

    import genact.world.pretrain as pretrain_module
    from genact.cli import main

    calls = []

    def record(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append({k: bound.arguments[k] for k in ("clips", "steps", "seed")})
        return tmp_path / "blip", tmp_path / "clip"

    real = pretrain_module.pretrain
    monkeypatch.setattr(pretrain_module, "pretrain", record)
    for argv in (["world", "pretrain", "--out", str(tmp_path)], ["world", "pretrain", "--out", str(tmp_path),
                                                                 "--clips", "64", "--steps", "3"]):
        with pytest.raises(SystemExit):
            main(argv)
    assert calls == [{"clips": 8640, "steps": 1500, "seed": 0}, {"clips": 64, "steps": 3, "seed": 0}]
