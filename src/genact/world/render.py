"""Drawing the miniature world's clips: one object doing one verb in one scene.

A clip is uint8 (T, S, S, 3). In a share of the frames (`cue_prob`) the object
leaves a faint trail of where it just was (motion verbs) or how big it just was
(size verbs: a halo when shrinking, nothing beyond the object when growing): a
single frame may hint at the verb, the clip shows it in the order of its frames.
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
SHAPES = {"ball": "disc", "box": "square", "ring": "ring", "bar": "bar", "cross": "cross", "kite": "diamond"}
# name -> (dx, dy, growth) per clip, in units of the canvas / base size
VERBS = {
    "rising": (0.0, -1.0, 0.0),
    "falling": (0.0, 1.0, 0.0),
    "sliding left": (-1.0, 0.0, 0.0),
    "sliding right": (1.0, 0.0, 0.0),
    "growing": (0.0, 0.0, 1.0),
    "shrinking": (0.0, 0.0, -1.0),
}
SCENES = {"grass": (60, 120, 50), "water": (40, 70, 130), "sand": (170, 150, 100), "night": (25, 25, 35)}


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
        return ((np.abs(dx) <= radius * 0.3) | (np.abs(dy) <= radius * 0.3)) & (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius * 1.1
    raise ValueError(shape)


def cue_frames(spec: ClipSpec, frames: int = 16, cue_prob: float = 0.6) -> np.ndarray:
    """Which frames of the clip show a trail (a single-frame hint of the verb), (frames,) bool."""
    return np.random.default_rng([spec.seed, 1]).random(frames) < cue_prob


def render_clip(spec: ClipSpec, frames: int = 16, size: int = 32, cue_prob: float = 0.6) -> np.ndarray:
    """The clip of `spec`, uint8 (frames, size, size, 3); the same spec gives the same clip."""
    rng = np.random.default_rng(spec.seed)
    cues = cue_frames(spec, frames, cue_prob)
    dx, dy, growth = VERBS[spec.verb]
    base = size * rng.uniform(0.12, 0.16)
    travel = size * rng.uniform(0.45, 0.6)
    cx0 = size / 2 - dx * travel / 2 + rng.uniform(-0.08, 0.08) * size * (dx == 0)
    cy0 = size / 2 - dy * travel / 2 + rng.uniform(-0.08, 0.08) * size * (dy == 0)
    bg = np.array(SCENES[spec.scene], np.float32) * rng.uniform(0.85, 1.15)
    texture = rng.normal(0, 10, (size, size, 1)).astype(np.float32)
    colour = np.array(OBJECTS[spec.obj], np.float32)
    shape = SHAPES[spec.obj]
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        p = t / max(frames - 1, 1)
        cx, cy = cx0 + dx * travel * p, cy0 + dy * travel * p
        radius = base * (1 + 0.8 * growth * (p - 0.5) * 2) if growth else base
        img = np.broadcast_to(bg, (size, size, 3)) + texture
        if cues[t] and not growth:  # a fading trail behind the moving object, up to 3 radii long
            for k, alpha in ((3, 0.25), (2, 0.4), (1, 0.55)):
                back = 0.9 * k * radius
                trail = _mask(shape, size, cx - dx * back, cy - dy * back, radius)
                img = np.where(trail[..., None], (1 - alpha) * img + alpha * colour, img)
        if cues[t] and growth < 0:  # a fading halo of how big the shrinking object just was
            for scale, alpha in ((1.8, 0.25), (1.4, 0.45)):
                halo = _mask(shape, size, cx, cy, radius * scale)
                img = np.where(halo[..., None], (1 - alpha) * img + alpha * colour, img)
        img = np.where(_mask(shape, size, cx, cy, max(radius, 1.0))[..., None], colour, img)
        if cues[t] and growth > 0:  # a dark core: how small the growing object just was
            core = _mask(shape, size, cx, cy, max(radius * 0.5, 1.0))
            img = np.where(core[..., None], 0.35 * colour, img)
        img = img + rng.normal(0, 4, img.shape)
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out
