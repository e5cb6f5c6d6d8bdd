"""The miniature world: deterministic clips, held-out compositions, readable splits,
frame-level cues that are partial and clip-level evidence that is complete."""

import numpy as np

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
    with_verb = sum(spec.verb in caption for spec, _, caption, _ in corpus)
    assert 0.1 < with_verb / len(corpus) < 0.4  # web-like: the verb is rarely said
    assert all(spec.verb in text and spec.obj in text for spec, _, _, text in corpus)
    rng = np.random.default_rng(0)
    assert frame_caption(ClipSpec("rising", "box", "water", 1), rng)
