"""Drawing the miniature world's clips: one object doing one verb in one scene.

A clip is uint8 (T, S, S, 3). The six verbs are periodic or one-way motions with
no time-reversed twin (bouncing, swaying, circling, pulsing, flickering,
drifting), so which verb a clip shows is in the set of states its frames visit,
not in their order: a mean over frames keeps it. Each frame, on its own, looks
like one verb or none (`frame_hints`): in a `cue_prob` share it looks like the
clip's verb (light-grey motion blur where the object is a moment before and
after; a halo for pulsing; a dimmed object for flickering), in a `mislead_prob`
share like another verb (a shaken camera, a flash), in the rest it shows only
the object. One frame may mislead; over several, the clip's verb is the one
most frames agree on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name -> RGB
OBJECTS = {
    "ball": (230, 50, 40),
    "box": (40, 90, 230),
    "ring": (240, 220, 40),
    "bar": (245, 245, 245),
    "cross": (220, 60, 220),
    "kite": (40, 220, 220),
}
# Objects of the novel-word classes (world version 3): never in a seen class, so never
# in a training video or a seen class name, but in the foundation models' pretraining
# (as BLIP and CLIP know "ocarina", though Kinetics-400 has no such class).
NOVEL_OBJECTS = {
    "cone": (250, 140, 30),
    "moon": (150, 235, 90),
}
SHAPES = {
    "ball": "disc",
    "box": "square",
    "ring": "ring",
    "bar": "bar",
    "cross": "cross",
    "kite": "diamond",
    "cone": "triangle",
    "moon": "crescent",
}
# the order matters: (verb index + object index) % 3 == 0 picks the unseen compositions
VERBS = ("bouncing", "swaying", "circling", "pulsing", "flickering", "drifting")
# A time-reversal pair, outside the world's classes: a falling clip is a rising clip
# played backwards, frame for frame, so only the order of the frames tells them apart
# (benchmarks/temporal_pair.py). A single frame's motion blur is symmetric in time, as
# a camera's is, so it shows vertical motion but not its direction.
ORDER_VERBS = ("rising", "falling")
# motion blur is drawn in one light grey, whatever the object
STREAK = np.array((235, 235, 235), np.float32)
SCENES = {
    "grass": (60, 120, 50),
    "water": (40, 70, 130),
    "sand": (170, 150, 100),
    "night": (25, 25, 35),
}


@dataclass(frozen=True)
class ClipSpec:
    verb: str
    obj: str
    scene: str
    seed: int


def _mask(shape: str, size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if shape == "disc":
        return dx**2 + dy**2 <= radius**2
    if shape == "ring":
        d = np.sqrt(dx**2 + dy**2)
        return (d <= radius) & (d >= 0.55 * radius)
    if shape == "square":
        return (np.abs(dx) <= radius * 0.85) & (np.abs(dy) <= radius * 0.85)
    if shape == "bar":
        return (np.abs(dx) <= radius * 1.2) & (np.abs(dy) <= radius * 0.4)
    if shape == "cross":
        return (
            ((np.abs(dx) <= radius * 0.3) | (np.abs(dy) <= radius * 0.3))
            & (np.abs(dx) <= radius)
            & (np.abs(dy) <= radius)
        )
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius * 1.1
    if shape == "triangle":  # apex up
        return (dy <= radius) & (np.abs(dx) <= 0.6 * (dy + radius))
    if shape == "crescent":
        return (dx**2 + dy**2 <= radius**2) & (
            (dx - 0.5 * radius) ** 2 + dy**2 > (0.8 * radius) ** 2
        )
    raise ValueError(shape)


def _state(verb: str, p: float, phase: float, amp: float) -> tuple[float, float, float]:
    """Offset (dx, dy) in pixels from the clip's centre point and radius scale of
    the object at clip time p in [0, 1]; periodic verbs do two periods a clip."""
    w = 2 * np.pi * (2 * p + phase)
    if verb == "bouncing":
        return 0.0, amp * np.sin(w), 1.0
    if verb == "swaying":
        return amp * np.sin(w), 0.0, 1.0
    if verb == "circling":
        return amp * np.cos(w), amp * np.sin(w), 1.0
    if verb == "pulsing":
        return 0.0, 0.0, 1.0 + 0.45 * np.sin(w)
    if verb == "drifting":  # one way, along a diagonal
        return 0.8 * amp * (2 * p - 1), 0.8 * amp * (2 * p - 1), 1.0
    if verb == "flickering":
        return 0.0, 0.0, 1.0
    # bottom to top at constant speed (falling: its frames in reverse order)
    if verb in ORDER_VERBS:
        return 0.0, 1.4 * amp * (1 - 2 * p), 1.0
    raise ValueError(f"unknown verb {verb!r}; expected one of {VERBS + ORDER_VERBS}")


def frame_hints(
    spec: ClipSpec, frames: int = 16, cue_prob: float = 0.4, mislead_prob: float = 0.4
) -> list[str | None]:
    """The verb each frame looks like on its own: the clip's verb in a `cue_prob`
    share of the frames (blur, halo or dimming), another verb's look in a
    `mislead_prob` share (a shaken camera, a flash), None where the frame shows
    only the object."""
    rng = np.random.default_rng([spec.seed, 1])
    u, other = rng.random(frames), rng.integers(len(VERBS) - 1, size=frames)
    others = [v for v in VERBS if v != spec.verb][: len(VERBS) - 1]
    return [
        spec.verb if x < cue_prob else others[o] if x < cue_prob + mislead_prob else None
        for x, o in zip(u, other)
    ]


def render_clip(
    spec: ClipSpec,
    frames: int = 16,
    size: int = 32,
    cue_prob: float = 0.4,
    mislead_prob: float = 0.4,
) -> np.ndarray:
    """The clip of `spec`, uint8 (frames, size, size, 3); the same spec gives the same clip.
    A falling clip is the rising clip of the same spec, frames reversed."""
    if spec.verb == "falling":
        rising = ClipSpec("rising", spec.obj, spec.scene, spec.seed)
        return render_clip(rising, frames, size, cue_prob, mislead_prob)[::-1].copy()
    rng = np.random.default_rng(spec.seed)
    hints = frame_hints(spec, frames, cue_prob, mislead_prob)
    base = size * rng.uniform(0.12, 0.16)
    amp = size * rng.uniform(0.22, 0.3)
    phase = rng.uniform(0, 1)
    cx0, cy0 = size / 2 + rng.uniform(-0.06, 0.06, 2) * size
    bg = np.array(SCENES[spec.scene], np.float32) * rng.uniform(0.85, 1.15)
    texture = rng.normal(0, 10, (size, size, 1)).astype(np.float32)
    colour = np.array({**OBJECTS, **NOVEL_OBJECTS}[spec.obj], np.float32)
    shape = SHAPES[spec.obj]
    step = 1 / max(frames - 1, 1)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t, hint in enumerate(hints):
        p = t * step
        dx, dy, scale = _state(spec.verb, p, phase, amp)
        cx, cy, radius = cx0 + dx, cy0 + dy, max(base * scale, 1.0)
        img = np.broadcast_to(bg, (size, size, 3)) + texture
        # motion blur: faint copies a moment before and after
        if hint is not None and hint != "flickering":
            # drifting is slow: a longer exposure shows it
            blur_dt = step * (3 if hint == "drifting" else 1)
            hx, hy, hs = _state(hint, p, phase, amp)
            for k, alpha in ((2, 0.25), (1, 0.45)):
                for q in (p - k * blur_dt, p + k * blur_dt):
                    bx, by, bs = _state(hint, q, phase, amp)
                    r = radius * bs / hs * (1.35 if hint == "pulsing" else 1.0)
                    blur = _mask(shape, size, cx + bx - hx, cy + by - hy, max(r, 1.0))
                    img = np.where(blur[..., None], (1 - alpha) * img + alpha * STREAK, img)
        body = 0.3 * colour + 0.7 * img.mean((0, 1)) if hint == "flickering" else colour
        img = np.where(_mask(shape, size, cx, cy, radius)[..., None], body, img)
        img = img + rng.normal(0, 4, img.shape)
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out
