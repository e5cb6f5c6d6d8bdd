"""The miniature world: procedurally generated compositional action videos on which
the whole method runs offline (the demo), with its splits and pretraining corpora."""

from genact.world.render import NOVEL_OBJECTS, OBJECTS, SCENES, VERBS, ClipSpec, render_clip
from genact.world.world import (
    WorldConfig,
    build_world,
    class_name,
    compositions,
    is_unseen,
    novel_compositions,
    pretraining_corpus,
)

__all__ = [
    "NOVEL_OBJECTS",
    "OBJECTS",
    "SCENES",
    "VERBS",
    "ClipSpec",
    "WorldConfig",
    "build_world",
    "class_name",
    "compositions",
    "is_unseen",
    "novel_compositions",
    "pretraining_corpus",
    "render_clip",
]
