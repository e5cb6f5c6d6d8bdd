"""The miniature world: compositional action classes, their splits, and the text
corpora its tiny foundation models are pretrained on.

Classes are `<verb> <object>` compositions (6 verbs x 6 objects = 36). A third of
them (where (verb + object) % 3 == 0, so every verb and every object keeps
seen compositions) never appear in the unlabelled training videos: they are the
zero-shot test classes; the generalized setting scores their test videos against
all names. Since version 3 (`novel_words`), twelve more classes (6 verbs x 2 novel
objects) are named with a word no seen class has: only the foundation models'
pretraining shows them, and the generalized setting is against all 48 names.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from genact.data.video import write_video
from genact.io import atomic_write_text
from genact.world.render import (
    NOVEL_OBJECTS,
    OBJECTS,
    SCENES,
    VERBS,
    ClipSpec,
    frame_hints,
    render_clip,
)

VERSION = 3  # of the world's design: a cached world of another version is rebuilt
COLOURS = {
    "ball": "red",
    "box": "blue",
    "ring": "yellow",
    "bar": "white",
    "cross": "purple",
    "kite": "cyan",
    "cone": "orange",
    "moon": "green",
}
SCENE_PHRASES = {
    "grass": "on the grass",
    "water": "in the water",
    "sand": "on the sand",
    "night": "at night",
}


@dataclass
class WorldConfig:
    seed: int = 0
    frames: int = 16  # per generated clip (8 fps: 2 s)
    size: int = 32
    cue_prob: float = (
        0.4  # share of frames that hint at the clip's verb on their own (blur, halo, dimming)
    )
    mislead_prob: float = (
        0.4  # share of frames that look like another verb (a shaken camera, a flash)
    )
    train_per_class: int = 20  # unlabelled REST videos per seen composition
    fewshot_per_class: int = 8  # labelled pool per unseen composition (few-shot training)
    test_per_class: int = 10  # test videos per unseen composition
    novel_per_class: int = 10  # test videos per novel-word class
    base_shots_per_class: int = 16  # labelled pool per seen composition (base-to-novel)
    base_test_per_class: int = 10  # test videos per seen composition (base-to-novel)
    novel_words: bool = True  # the novel-word classes (test_novel; in pretraining); since v3


def class_name(verb: str, obj: str) -> str:
    return f"{verb} {obj}"


def compositions() -> list[tuple[str, str]]:
    """All (verb, object) pairs, verb-major."""
    return [(v, o) for v in VERBS for o in OBJECTS]


def novel_compositions(cfg: WorldConfig | None = None) -> list[tuple[str, str]]:
    """The novel-word classes (every verb with an object no seen class has); none
    unless `cfg.novel_words` (all of them without a config)."""
    if cfg is not None and not cfg.novel_words:
        return []
    return [(v, o) for v in VERBS for o in NOVEL_OBJECTS]


def is_unseen(verb: str, obj: str) -> bool:
    return (list(VERBS).index(verb) + list(OBJECTS).index(obj)) % 3 == 0


def describe(spec: ClipSpec) -> str:
    """The full description of a clip (what CLIP's pretraining texts look like)."""
    colour, scene = COLOURS[spec.obj], SCENE_PHRASES[spec.scene]
    if spec.seed % 2:  # both word orders, as the web has them
        return f"a {spec.verb} {colour} {spec.obj} {scene}"
    return f"a {colour} {spec.obj} {spec.verb} {scene}"


def frame_caption(spec: ClipSpec, hint: str | None, rng: np.random.Generator) -> str:
    """A generic, incomplete caption of one frame, as a web image captioner would
    give: the object, often its colour or scene, and the verb the frame looks like
    (`hint`, see `frame_hints`: not always the clip's) nearly always when it looks
    like one."""
    obj, colour, scene = spec.obj, COLOURS[spec.obj], SCENE_PHRASES[spec.scene]
    if hint is not None and rng.random() < 0.9:
        options = [
            f"a {hint} {obj}",
            f"a {hint} {colour} {obj}",
            f"a {hint} {obj} {scene}",
            f"a {hint} {colour} {obj} {scene}",
        ]
        return options[int(rng.integers(len(options)))]
    options = [
        f"a {obj}",
        f"a {colour} {obj}",
        f"a {obj} {scene}",
        f"a {colour} {obj} {scene}",
        f"something {scene}",
    ]
    return options[int(rng.integers(len(options)))]


def _specs(pairs: list[tuple[str, str]], per_class: int, seed: int, tag: int) -> list[ClipSpec]:
    rng = np.random.default_rng([seed, tag])
    scenes = list(SCENES)
    return [
        ClipSpec(v, o, scenes[int(rng.integers(len(scenes)))], int(rng.integers(2**31)))
        for v, o in pairs
        for _ in range(per_class)
    ]


def _write_split(root: Path, name: str, specs: list[ClipSpec], cfg: WorldConfig) -> None:
    lines = []
    for k, spec in enumerate(specs):
        rel = f"{name}/{spec.obj}_{spec.verb.replace(' ', '_')}_{k:04d}.mp4"
        path = root / "videos" / rel
        if not path.exists():
            write_video(
                path, render_clip(spec, cfg.frames, cfg.size, cfg.cue_prob, cfg.mislead_prob)
            )
        lines.append(f"{rel},{class_name(spec.verb, spec.obj)}")
    atomic_write_text(root / "splits" / f"{name}.txt", "\n".join(lines) + "\n")


def build_world(root: str | Path, cfg: WorldConfig | None = None) -> Path:
    """Write the world's videos and split files below `root` (kept when the config
    is unchanged). Layout: videos/<split>/*.mp4; splits/<split>.txt (`path,class
    name` lines, readable with `read_list` and any of
    splits/classes_{seen,unseen,novel,all}.txt). Splits: train (seen classes, REST's
    unlabelled videos), fewshot (a labelled pool of the unseen classes), test (unseen
    classes: against classes_unseen zero-shot, against classes_all generalized),
    test_novel (with `novel_words`: those classes, against classes_all), fewshot_base and
    test_base (seen classes: base-to-novel's shots and base test videos)."""
    cfg = cfg or WorldConfig()
    root = Path(root)
    stamp = root / "world.json"
    key = hashlib.sha1(
        json.dumps({**asdict(cfg), "version": VERSION}, sort_keys=True).encode()
    ).hexdigest()[:12]
    if stamp.exists():
        if json.loads(stamp.read_text()).get("key") == key:
            return root
        # another config: none of its videos or split files may stay
        shutil.rmtree(root / "videos", ignore_errors=True)
        shutil.rmtree(root / "splits", ignore_errors=True)
        stamp.unlink()
    seen = [p for p in compositions() if not is_unseen(*p)]
    unseen = [p for p in compositions() if is_unseen(*p)]
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for name, pairs in (
        ("classes_all", compositions() + novel_compositions(cfg)),
        ("classes_unseen", unseen),
        ("classes_seen", seen),
        *([("classes_novel", novel_compositions(cfg))] if cfg.novel_words else []),
    ):
        atomic_write_text(
            root / "splits" / f"{name}.txt", "\n".join(class_name(v, o) for v, o in pairs) + "\n"
        )
    _write_split(root, "train", _specs(seen, cfg.train_per_class, cfg.seed, 1), cfg)
    _write_split(root, "fewshot", _specs(unseen, cfg.fewshot_per_class, cfg.seed, 2), cfg)
    _write_split(root, "test", _specs(unseen, cfg.test_per_class, cfg.seed, 3), cfg)
    if cfg.novel_words:
        novel = _specs(novel_compositions(cfg), cfg.novel_per_class, cfg.seed, 6)
        _write_split(root, "test_novel", novel, cfg)
    _write_split(root, "fewshot_base", _specs(seen, cfg.base_shots_per_class, cfg.seed, 7), cfg)
    _write_split(root, "test_base", _specs(seen, cfg.base_test_per_class, cfg.seed, 8), cfg)
    atomic_write_text(stamp, json.dumps({"key": key, "config": asdict(cfg)}, indent=1))
    return root


def pretraining_corpus(
    cfg: WorldConfig, clips: int, seed: int
) -> list[tuple[ClipSpec, int, str, str]]:
    """Frames for pretraining the tiny foundation models, drawn from fresh clips of
    composition (and novel-word class, with `cfg.novel_words`), never a split's video:
    (clip spec, frame index, generic frame caption for the captioner, full description
    for CLIP)."""
    rng = np.random.default_rng([seed, 4])
    pairs = compositions() + novel_compositions(cfg)
    specs = _specs(pairs, max(clips // len(pairs), 1), seed, 5)
    out = []
    for s in specs:
        f = int(rng.integers(cfg.frames))
        hint = frame_hints(s, cfg.frames, cfg.cue_prob, cfg.mislead_prob)[f]
        out.append((s, f, frame_caption(s, hint, rng), describe(s)))
    return out
