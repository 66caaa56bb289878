"""What the synthetic scenes share (vadgpu.data.synth, vadgpu.data.synth_motion): the walkway background, the
pedestrian sprite and its clothes, and the rule that labels a frame.

Sizes are in units of `unit(height)` = height / 120 pixels, so a scene drawn at another size is the same scene:
a pedestrian stands `PEDESTRIAN_HEIGHT` units tall (24 px at 120 rows, 72 px at 360).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

VISIBLE_FRACTION = 0.3  # a frame is anomalous while at least this much of the anomalous object's box is in view
PEDESTRIAN_HEIGHT = 24.0  # feet to top of the head, in units
PEDESTRIAN_HALF_WIDTH = 4.0
SKIN = (225, 185, 150)
_PALETTE = [(30, 30, 35), (200, 60, 50), (60, 80, 170), (230, 230, 225), (90, 60, 40), (240, 190, 60)]


@dataclass(frozen=True)
class VideoPlan:
    """One video of a scene before it is drawn: its moving objects (the scene's own records), the anomalous one
    (None in a normal video), its kind and the per-frame labels."""

    walkers: list
    labels: np.ndarray  # (frames,) uint8 0/1
    anomaly: object | None = None
    kind: str | None = None


def unit(height: int) -> float:
    """Pixels per scene unit: the scenes are laid out for 120 rows."""
    return height / 120.0


def walkway(height: int) -> tuple[int, int]:
    """Top and bottom rows of the walkway; pedestrians' feet stay inside it."""
    return int(0.38 * height), int(0.78 * height)


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB: grass with blotchy texture, a paved walkway with tile joints, a few dark bushes."""
    def blotches(cells: int, amplitude: float) -> np.ndarray:
        coarse = rng.normal(0.0, amplitude, (cells * height // width + 2, cells + 2)).astype(np.float32)
        return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)

    texture = blotches(8, 14.0) + blotches(32, 6.0) + rng.normal(0.0, 4.0, (height, width)).astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[:] = (92, 128, 78)  # grass
    top, bottom = walkway(height)
    image[top:bottom] = (150, 146, 140)  # paving
    tile = max(4, width // 16)
    image[top:bottom, ::tile] *= 0.8  # joints between paving stones
    image[top:bottom:tile // 2 + 1] *= 0.85
    image[top - 2:top] = image[bottom:bottom + 2] = (110, 108, 104)  # kerbs
    image += texture[..., None]
    for _ in range(3):  # bushes on the grass: static structure a model must learn to keep
        cx = int(rng.uniform(0.05, 0.95) * width)
        cy = int(rng.uniform(0.03, 0.2) * height) if rng.random() < 0.5 else int(rng.uniform(0.84, 0.97) * height)
        axes = (int(rng.uniform(0.04, 0.08) * width), int(rng.uniform(0.04, 0.07) * height))
        cv2.ellipse(image, (cx, cy), axes, 0, 0, 360, (48, 78, 40), -1, cv2.LINE_AA)
    return np.clip(image, 0, 255).astype(np.uint8)


def clothes(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Shirt and trousers colours, each drawn from one palette: every pedestrian of every scene dresses alike."""
    shirt = _PALETTE[rng.integers(len(_PALETTE))]
    trousers = _PALETTE[rng.integers(len(_PALETTE))]
    return tuple(int(c) for c in shirt), tuple(int(c) for c in trousers)


def pt(x: float, y: float) -> tuple[int, int]:
    # cv2 draws with sub-pixel precision when given fixed-point coordinates (shift=4): smooth motion, no jitter.
    return int(round(x * 16)), int(round(y * 16))


def pedestrian_box(x: float, y: float, s: float) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 of a pedestrian whose feet are at (x, y), drawn at `s` pixels per unit."""
    return x - PEDESTRIAN_HALF_WIDTH * s, y - PEDESTRIAN_HEIGHT * s, x + PEDESTRIAN_HALF_WIDTH * s, y


def draw_pedestrian(frame: np.ndarray, x: float, y: float, gait: float, s: float, shirt: tuple[int, int, int],
                    trousers: tuple[int, int, int]) -> None:
    """Draw a pedestrian (head, torso, two legs) with its feet at (x, y); `gait` is the stride phase in radians
    (it sets how far the legs swing apart)."""
    swing = np.sin(gait) * 3.0 * s
    leg = 9 * s
    hip = (x, y - leg)
    thickness = max(1, int(round(2 * s)))
    for sign in (1.0, -1.0):
        cv2.line(frame, pt(*hip), pt(x + sign * swing, y), trousers, thickness, cv2.LINE_AA, 4)
    cv2.ellipse(frame, pt(x, y - leg - 5 * s), pt(3.2 * s, 6 * s), 0, 0, 360, shirt, -1, cv2.LINE_AA, 4)
    cv2.circle(frame, pt(x, y - leg - 12.5 * s), int(round(2.6 * s * 16)), SKIN, -1, cv2.LINE_AA, 4)


def visible_frames(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(frames,) uint8: 1 where at least VISIBLE_FRACTION of the box (frames, 4: x1, y1, x2, y2) is in the image."""
    boxes = np.asarray(boxes, np.float64)
    inside_w = np.clip(np.minimum(boxes[:, 2], width) - np.maximum(boxes[:, 0], 0.0), 0.0, None)
    inside_h = np.clip(np.minimum(boxes[:, 3], height) - np.maximum(boxes[:, 1], 0.0), 0.0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return (inside_w * inside_h >= VISIBLE_FRACTION * area).astype(np.uint8)


def render_walkers(scenery: np.ndarray, walkers: list, t: int, box: Callable, draw: Callable) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame t: `scenery` with every walker that has started (`t >= walker.t0`) and whose
    `box(walker, t)` (x1, y1, x2, y2) touches the image drawn by `draw(frame, walker, t)`, farther (higher) ones
    first."""
    frame = scenery.copy()
    height, width = frame.shape[:2]
    for walker in sorted(walkers, key=lambda w: w.position(t)[1]):
        if t < walker.t0:
            continue
        x1, y1, x2, y2 = box(walker, t)
        if x2 < -2 or x1 > width + 2 or y2 < -2 or y1 > height + 2:
            continue
        draw(frame, walker, t)
    return frame
