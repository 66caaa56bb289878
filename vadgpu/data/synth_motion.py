"""The `motion` scene of `vadgpu data synth`: anomalous pedestrians that look like everybody else and only move
differently.

The walkway of the synthetic scenes (vadgpu.data.synth_scene), by default at 640 x 360, where pedestrians walk one
way only, left to right, at walking speed (2.4-3.3 px a frame at 360 rows), 73 px tall (head to the tips of the
legs) at the walkway's far edge and 90 px at its near edge. Training videos hold only that. In each test video one
more pedestrian, drawn by the same function (same sprite, clothes from the same palette, the size of its place on
the walkway), moves differently; the kinds, in turn:

    running    runs with the flow at four times walking speed                labelled while in view
    wrong-way  walks at walking speed right to left, against everybody       labelled while in view
    stopping   walks in with the flow, stands still in the middle of the     labelled while it stands
               walkway for 30 % of the video, walks on
    zigzag     walks with the flow, swerving across the walkway every        labelled from its first swerve,
               6-12 frames                                                   while in view

"In view" is synth_scene.VISIBLE_FRACTION of its box inside the image. Each starts (enters, stops, swerves) at a
frame between 25 % and 40 % of the video, so every test video opens with normal frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vadgpu.data.synth_scene import (
    PEDESTRIAN_HALF_WIDTH, VideoPlan, clothes, draw_pedestrian, pedestrian_box, render_walkers, unit, visible_frames,
    walkway,
)

ANOMALY_KINDS = ("running", "wrong-way", "stopping", "zigzag")
FRAME_SIZE = (360, 640)  # height, width
WALK_SPEED = (0.8, 1.1)  # units (height / 120 px) per frame
RUN_FACTOR = 4.0
_RUN_STRIDE = 2.5  # a runner's stride is longer: legs cycle RUN_FACTOR / 2.5 times as often as walking
_DEPTH = (0.93, 1.15)  # size at the walkway's far (top) and near (bottom) edge, relative to the scene's unit
_MEAN_PEDESTRIANS = 5.0  # average number of walkers in view
_START = (0.25, 0.4)  # the anomaly starts between these fractions of the video
STOP_FRACTION = 0.3
_ZIGZAG_LEG = (6.0, 12.0)  # frames per swerve
_ZIGZAG_AMPLITUDE = 0.3  # of the walkway's depth, either side of the lane


@dataclass(frozen=True, eq=False)
class Pedestrian:
    """A pedestrian walking straight between waypoints (frame, x, y of the feet); absent before the first frame
    of its path, and the last waypoint lies at or past the video's end."""

    times: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    phase: float  # gait phase, so walkers do not swing their legs in step
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    stride: float = 1.0  # stride length relative to walking

    @property
    def t0(self) -> float:
        return float(self.times[0])

    def position(self, t: float) -> tuple[float, float]:
        return float(np.interp(t, self.times, self.xs)), float(np.interp(t, self.times, self.ys))

    def walked(self, t: float) -> float:
        """Path length covered by frame t (it sets the gait: legs stand still while the pedestrian does)."""
        steps = np.hypot(np.diff(self.xs), np.diff(self.ys))
        return float(np.interp(t, self.times, np.concatenate([[0.0], np.cumsum(steps)])))


def feet_rows(height: int) -> tuple[float, float]:
    """Far and near rows where pedestrians' feet may be."""
    top, bottom = walkway(height)
    return top + 14 * unit(height), bottom - 2.0


def drawn_scale(y: float, height: int) -> float:
    """Pixels per unit of a pedestrian whose feet are at row y: nearer (lower) pedestrians are larger."""
    far, near = feet_rows(height)
    return unit(height) * float(np.interp(y, (far, near), _DEPTH))


def box(walker: Pedestrian, t: float, height: int) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 of the walker's sprite at frame t."""
    x, y = walker.position(t)
    return pedestrian_box(x, y, drawn_scale(y, height))


def _path(points: list[tuple[float, float, float]], rng: np.random.Generator, stride: float = 1.0) -> Pedestrian:
    times, xs, ys = (np.array(values, np.float64) for values in zip(*points))
    shirt, trousers = clothes(rng)
    return Pedestrian(times, xs, ys, rng.uniform(0, 2 * np.pi), shirt, trousers, stride)


def _straight(t0: float, x0: float, y0: float, vx: float, vy: float, frames: int, rng: np.random.Generator,
              stride: float = 1.0) -> Pedestrian:
    end = max(float(frames), t0 + 1.0)
    return _path([(t0, x0, y0), (end, x0 + vx * (end - t0), y0 + vy * (end - t0))], rng, stride)


def _traffic(rng: np.random.Generator, width: int, height: int, frames: int) -> list[Pedestrian]:
    """Normal traffic: walkers left to right, some in view at frame 0, more arriving at the left edge."""
    s = unit(height)
    far, near = feet_rows(height)
    margin = 10 * s
    arrival_rate = _MEAN_PEDESTRIANS * np.mean(WALK_SPEED) * s / (width + 2 * margin)  # walkers per frame

    def walker(t0: float, x0: float) -> Pedestrian:
        speed = rng.uniform(*WALK_SPEED) * s
        y0 = rng.uniform(far, near)
        return _straight(t0, x0, y0, speed, rng.normal(0.0, 0.02) * s, frames, rng)

    walkers = [walker(0.0, rng.uniform(-margin, width)) for _ in range(rng.poisson(_MEAN_PEDESTRIANS))]
    for t in range(frames):
        for _ in range(rng.poisson(arrival_rate)):
            walkers.append(walker(float(t), -margin))
    return walkers


def _anomaly(kind: str, rng: np.random.Generator, width: int, height: int,
             frames: int) -> tuple[Pedestrian, np.ndarray]:
    """The anomalous pedestrian of a test video and the frames its anomaly lasts ((frames,) bool, before the
    in-view rule)."""
    s = unit(height)
    far, near = feet_rows(height)
    margin = 10 * s
    start = float(max(1, int(frames * rng.uniform(*_START))))
    speed = rng.uniform(*WALK_SPEED) * s
    t = np.arange(frames)
    if kind in ("running", "wrong-way"):
        lane = rng.uniform(far, near)
        half = PEDESTRIAN_HALF_WIDTH * drawn_scale(lane, height)  # enters just outside, touching the edge
        if kind == "running":
            return _straight(start, -half, lane, RUN_FACTOR * speed, 0.0, frames, rng, _RUN_STRIDE), t >= start
        return _straight(start, width + half, lane, -speed, 0.0, frames, rng), t >= start
    if kind == "stopping":
        lane = rng.uniform(far, near)
        x_stop = rng.uniform(0.35, 0.65) * width
        end = start + max(5, round(STOP_FRACTION * frames))
        arrive = start - (x_stop + margin) / speed  # before frame 0: in view from the first frame
        points = [(arrive, -margin, lane), (start, x_stop, lane), (end, x_stop, lane),
                  (frames, x_stop + speed * (frames - end), lane)]
        return _path(points, rng), (t >= start) & (t <= end)
    if kind == "zigzag":
        amplitude = _ZIGZAG_AMPLITUDE * (near - far)
        lane = rng.uniform(far + amplitude, near - amplitude)
        x_turn = rng.uniform(0.15, 0.35) * width
        points = [(start - (x_turn + margin) / speed, -margin, lane), (start, x_turn, lane)]
        side, when = (1.0 if rng.random() < 0.5 else -1.0), start
        while when < frames:
            when += rng.uniform(*_ZIGZAG_LEG)
            points.append((when, x_turn + speed * (when - start), lane + side * amplitude * rng.uniform(0.6, 1.0)))
            side = -side
        return _path(points, rng), t >= start
    raise ValueError(kind)


def plan_video(rng: np.random.Generator, width: int, height: int, frames: int, kind: str | None) -> VideoPlan:
    """Normal traffic, and for a test video (`kind` given) its anomalous pedestrian, labelled while its anomaly
    lasts and it is in view."""
    walkers = _traffic(rng, width, height, frames)
    if kind is None:
        return VideoPlan(walkers, np.zeros(frames, dtype=np.uint8))
    anomaly, lasts = _anomaly(kind, rng, width, height, frames)
    boxes = [box(anomaly, t, height) for t in range(frames)]
    labels = (visible_frames(boxes, width, height).astype(bool) & lasts).astype(np.uint8)
    return VideoPlan(walkers + [anomaly], labels, anomaly, kind)


def render(scenery: np.ndarray, plan: VideoPlan, t: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame t: the background with the plan's walkers drawn, farther (higher) ones first."""
    height = scenery.shape[0]
    s = unit(height)

    def draw(frame: np.ndarray, walker: Pedestrian, t: int) -> None:
        x, y = walker.position(t)
        gait = walker.phase + walker.walked(t) * 0.5 / (s * walker.stride)  # stride follows distance walked
        draw_pedestrian(frame, x, y, gait, drawn_scale(y, height), walker.shirt, walker.trousers)

    return render_walkers(scenery, plan.walkers, t, lambda walker, t: box(walker, t, height), draw)
