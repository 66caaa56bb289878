"""Small synthetic surveillance datasets, made in seconds with no download, in one of two scenes.

A fixed camera looks at a paved walkway that runs left-right between two strips of grass, with pedestrian-like
sprites (head, torso, swinging legs) walking along it. Training videos hold only normal traffic; each test video
adds one labelled anomalous event, its kind chosen in turn from the scene's list.

`walkway` (the default, 160 x 120, shaped like UCSD Ped2): pedestrians walk both ways; the anomalies differ in
motion or in looks (this module):

    fast      a pedestrian moving several times faster than anyone else (a runner / cyclist)
    crossing  a pedestrian crossing against the flow: top to bottom, over the grass where nobody walks
    cart      a large cart-like block on wheels rolling along the walkway

`motion` (640 x 360, pedestrians 73-90 px tall): everybody walks one way, left to right; the anomalous
pedestrian looks exactly like the others and differs only in how it moves: running, walking the wrong way,
stopping in the middle of the walkway, zig-zagging (vadgpu.data.synth_motion).

A frame is anomalous while at least `VISIBLE_FRACTION` (synth_scene) of the anomalous object's box is inside the
image (and, for a stop or a zig-zag, while it lasts). Every test video starts with normal frames, so each holds
both classes.

Layout written under OUT (the catalog's `synthetic` reader relies on it):

    OUT/training/videos/NN.avi          MJPEG         OUT/testing/videos/NN.avi
    OUT/training/videos_h264/NN.mp4     H.264         OUT/testing/videos_h264/NN.mp4
    OUT/training/frames/NN/NNN.jpg      jpg frames    OUT/testing/frames/NN/NNN.jpg
    OUT/testing/labels/NN.npy           uint8 0/1 per frame
    OUT/synthetic.json                  scene, seed, sizes, formats, the anomalous event of each test video
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from vadgpu.data import synth_motion
from vadgpu.data.synth_scene import (
    PEDESTRIAN_HALF_WIDTH, VideoPlan, background, clothes, draw_pedestrian, pedestrian_box, pt, render_walkers, unit,
    visible_frames, walkway,
)
from vadgpu.errors import VadgpuError
from vadgpu.optional import require

FORMATS = ("avi", "mp4", "frames")
ANOMALY_KINDS = ("fast", "crossing", "cart")  # the walkway scene's; synth_motion.ANOMALY_KINDS the motion scene's
FPS = 25
MANIFEST_NAME = "synthetic.json"
_FORMAT_DIRS = {"avi": "videos", "mp4": "videos_h264", "frames": "frames"}
_GENERATED = {"training", "testing", MANIFEST_NAME}  # the only entries an overwrite may remove
_WALK_SPEED = (0.8, 1.4)  # px/frame at 160 px width; Ped2 pedestrians move about as far per frame
_FAST_FACTOR = 5.0
_MEAN_PEDESTRIANS = 4.0  # average number of walkers in view


@dataclass(frozen=True)
class _Walker:
    """An object moving in a straight line: position at frame t is (x0 + vx (t - t0), y0 + vy (t - t0))."""

    t0: float
    x0: float
    y0: float  # feet (bottom centre) of the sprite
    vx: float
    vy: float
    phase: float  # gait phase, so walkers do not swing their legs in step
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    kind: str = "pedestrian"  # or "cart"

    def position(self, t: int) -> tuple[float, float]:
        return self.x0 + self.vx * (t - self.t0), self.y0 + self.vy * (t - self.t0)


def make_synthetic_dataset(
    out: str | os.PathLike,
    seed: int = 0,
    train_videos: int = 4,
    test_videos: int = 4,
    frames: int = 120,
    frame_size: tuple[int, int] | None = None,
    formats: tuple[str, ...] = FORMATS,
    overwrite: bool = False,
    scene: str = "walkway",
) -> Path:
    """Write the synthetic dataset to `out` (layout in the module docstring) and return its path.

    `scene` is one of SCENES ("walkway", "motion"). `frame_size` is (height, width), both even (H.264 needs
    it), in the order of every size in vadgpu; None takes the scene's (120, 160) or (360, 640). The same seed
    gives the same files and labels.
    `out` must be absent, empty, or (with `overwrite=True`) a synthetic dataset written earlier.
    """
    out = Path(out)
    if scene not in SCENES:
        raise VadgpuError(f"synthetic dataset {out}: --scene {scene!r} is not one of {', '.join(SCENES)}")
    chosen = SCENES[scene]
    frame_size = chosen.frame_size if frame_size is None else frame_size
    width, height = _check_args(out, train_videos, test_videos, frames, frame_size, formats)
    _check_out(out, overwrite)

    # Build beside OUT, then move into place: an interrupted run never leaves a half-written dataset.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        scenery = background(np.random.default_rng([seed, 0]), width, height)
        events = []
        for split, count, split_id in (("training", train_videos, 1), ("testing", test_videos, 2)):
            for index in range(count):
                name = f"{index + 1:02d}"
                rng = np.random.default_rng([seed, split_id, index])
                kind = chosen.anomaly_kinds[index % len(chosen.anomaly_kinds)] if split == "testing" else None
                plan = chosen.plan(rng, width, height, frames, kind)
                if kind is not None:
                    anomalous = np.flatnonzero(plan.labels)
                    if not len(anomalous):
                        raise VadgpuError(f"synthetic dataset {out}: test video {name} ({kind}) has no anomalous "
                                          f"frame in {frames} frames; give more --frames")
                    events.append({"video": name, "kind": kind, "first_frame": int(anomalous[0]),
                                   "last_frame": int(anomalous[-1]), "anomalous_frames": int(plan.labels.sum())})
                    label_dir = staging / split / "labels"
                    label_dir.mkdir(parents=True, exist_ok=True)
                    np.save(label_dir / f"{name}.npy", plan.labels)
                video = np.stack([chosen.render(scenery, plan, t) for t in range(frames)])  # (T, H, W, 3) RGB
                _write_formats(video, staging / split, name, formats)
        manifest = {
            "generator": "vadgpu.data.synth",
            "scene": scene,
            "anomaly_kinds": list(chosen.anomaly_kinds),
            "seed": seed,
            "train_videos": train_videos,
            "test_videos": test_videos,
            "frames": frames,
            "width": width,
            "height": height,
            "fps": FPS,
            "formats": list(formats),
            "anomalies": events,
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)  # _check_out made sure it is empty or only our own earlier output
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _check_args(out, train_videos, test_videos, frames, frame_size, formats) -> tuple[int, int]:
    """(width, height) from the (height, width) `frame_size`, checked."""
    if train_videos < 1 or test_videos < 1:
        raise VadgpuError(f"synthetic dataset {out}: --train-videos and --test-videos must be >= 1")
    if frames < 20:
        raise VadgpuError(f"synthetic dataset {out}: --frames {frames} is too short (at least 20)")
    try:
        height, width = (int(v) for v in frame_size)
    except (TypeError, ValueError) as exc:
        raise VadgpuError(f"synthetic dataset {out}: --frame-size must be two integers H W, got {frame_size!r}"
                          ) from exc
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise VadgpuError(f"synthetic dataset {out}: --frame-size {height} {width} must be even and at least "
                          "32x32")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise VadgpuError(f"synthetic dataset {out}: formats {list(formats)} must be a non-empty subset of {FORMATS}")
    return width, height


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise VadgpuError(f"synthetic dataset output {out} is a file, not a folder")
    if not out.is_dir():
        return
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    if MANIFEST_NAME not in entries or not entries <= _GENERATED:
        raise VadgpuError(
            f"synthetic dataset output {out} already holds other files ({', '.join(sorted(entries)[:5])}); "
            "choose an empty or new folder"
        )
    if not overwrite:
        raise VadgpuError(f"{out} already holds a synthetic dataset; pass --overwrite to replace it")


# ---------------------------------------------------------------------------------------------- walkway scene


def _pedestrians(rng: np.random.Generator, width: int, height: int, frames: int) -> list[_Walker]:
    """Normal traffic: walkers along the walkway both ways, some in view at frame 0, more arriving at the edges."""
    s = unit(height)
    top, bottom = walkway(height)
    margin = 10 * s
    speed_unit = width / 160.0
    mean_speed = np.mean(_WALK_SPEED) * speed_unit
    arrival_rate = _MEAN_PEDESTRIANS * mean_speed / (width + 2 * margin)  # walkers per frame, both edges together

    def walker(t0: float, x0: float | None) -> _Walker:
        direction = 1.0 if rng.random() < 0.5 else -1.0
        speed = rng.uniform(*_WALK_SPEED) * speed_unit
        if x0 is None:
            x0 = -margin if direction > 0 else width + margin
        shirt, trousers = clothes(rng)
        return _Walker(t0, x0, rng.uniform(top + 14 * s, bottom - 1), direction * speed,
                       rng.normal(0.0, 0.03) * speed_unit, rng.uniform(0, 2 * np.pi), shirt, trousers)

    walkers = [walker(0.0, rng.uniform(0, width)) for _ in range(rng.poisson(_MEAN_PEDESTRIANS))]
    for t in range(frames):
        for _ in range(rng.poisson(arrival_rate)):
            walkers.append(walker(float(t), None))
    return walkers


def _anomaly(kind: str, rng: np.random.Generator, width: int, height: int, frames: int) -> _Walker:
    """The one anomalous object of a test video, entering the image at a frame between 25% and 40% of the video."""
    s = unit(height)
    top, bottom = walkway(height)
    speed_unit = width / 160.0
    start = float(max(1, int(frames * rng.uniform(0.25, 0.4))))
    direction = 1.0 if rng.random() < 0.5 else -1.0
    shirt, trousers = clothes(rng)
    half_width = _half_width(kind, s)
    x_entry = -half_width if direction > 0 else width + half_width  # just outside, touching the edge
    lane = rng.uniform(top + 14 * s, bottom - 1)
    if kind == "fast":
        speed = _FAST_FACTOR * _WALK_SPEED[1] * speed_unit
        return _Walker(start, x_entry, lane, direction * speed, 0.0, 0.0, shirt, trousers)
    if kind == "crossing":
        speed = 1.5 * _WALK_SPEED[1] * speed_unit
        x = rng.uniform(0.2, 0.8) * width
        return _Walker(start, x, 0.0, 0.15 * direction * speed, speed, 0.0, shirt, trousers)  # feet at the top edge
    if kind == "cart":
        speed = np.mean(_WALK_SPEED) * speed_unit
        return _Walker(start, x_entry, lane, direction * speed, 0.0, 0.0, (235, 225, 200), (20, 20, 20), kind="cart")
    raise ValueError(kind)


def _half_width(kind: str, s: float) -> float:
    return (18 if kind == "cart" else PEDESTRIAN_HALF_WIDTH) * s


def _sprite_box(walker: _Walker, t: int, s: float) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 of the sprite at frame t."""
    x, y = walker.position(t)
    if walker.kind != "cart":
        return pedestrian_box(x, y, s)
    return x - _half_width(walker.kind, s), y - 20 * s, x + _half_width(walker.kind, s), y


def _plan_walkway(rng: np.random.Generator, width: int, height: int, frames: int, kind: str | None) -> VideoPlan:
    """Normal traffic, and for a test video (`kind` given) its anomalous object, labelled while in view."""
    walkers = _pedestrians(rng, width, height, frames)
    if kind is None:
        return VideoPlan(walkers, np.zeros(frames, dtype=np.uint8))
    anomaly = _anomaly(kind, rng, width, height, frames)
    s = unit(height)
    labels = visible_frames([_sprite_box(anomaly, t, s) for t in range(frames)], width, height)
    return VideoPlan(walkers + [anomaly], labels, anomaly, kind)


def _render(scenery: np.ndarray, plan: VideoPlan, t: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame t: the background with every walker drawn, farther (higher) ones first."""
    s = unit(scenery.shape[0])

    def draw(frame: np.ndarray, walker: _Walker, t: int) -> None:
        if walker.kind == "cart":
            _draw_cart(frame, walker, t, s)
            return
        x, y = walker.position(t)
        speed = float(np.hypot(walker.vx, walker.vy))
        gait = walker.phase + t * speed * 0.5 / max(s, 1e-6)  # stride follows distance walked
        draw_pedestrian(frame, x, y, gait, s, walker.shirt, walker.trousers)

    return render_walkers(scenery, plan.walkers, t, lambda walker, t: _sprite_box(walker, t, s), draw)


def _draw_cart(frame: np.ndarray, w: _Walker, t: int, s: float) -> None:
    x, y = w.position(t)
    wheel = 3 * s
    x1, y1, x2, y2 = x - 18 * s, y - 20 * s, x + 18 * s, y - wheel
    line = max(1, int(round(s)))
    cv2.rectangle(frame, pt(x1, y1), pt(x2, y2), w.shirt, -1, cv2.LINE_AA, 4)
    # Dark slats on a pale crate: a texture no pedestrian has, still visible after a resize to 64x64 gray.
    for sx in np.arange(x1 + 6 * s, x2, 6 * s):
        cv2.line(frame, pt(sx, y1), pt(sx, y2), (40, 30, 20), line, cv2.LINE_AA, 4)
    cv2.rectangle(frame, pt(x1, y1), pt(x2, y2), (40, 30, 20), line, cv2.LINE_AA, 4)
    for wx in (x1 + 5 * s, x2 - 5 * s):
        cv2.circle(frame, pt(wx, y - wheel), int(round(wheel * 16)), w.trousers, -1, cv2.LINE_AA, 4)


@dataclass(frozen=True)
class Scene:
    """A scene: its default (height, width), its anomaly kinds in the order test videos take them, how a video is
    planned (rng, width, height, frames, kind or None for a normal video) and how frame t is drawn."""

    frame_size: tuple[int, int]
    anomaly_kinds: tuple[str, ...]
    plan: Callable[[np.random.Generator, int, int, int, str | None], VideoPlan]
    render: Callable[[np.ndarray, VideoPlan, int], np.ndarray]


SCENES = {
    "walkway": Scene((120, 160), ANOMALY_KINDS, _plan_walkway, _render),
    "motion": Scene(synth_motion.FRAME_SIZE, synth_motion.ANOMALY_KINDS, synth_motion.plan_video,
                    synth_motion.render),
}


# ---------------------------------------------------------------------------------------------------- writing


def _write_formats(video: np.ndarray, split_dir: Path, name: str, formats: tuple[str, ...]) -> None:
    """Write one (T, H, W, 3) RGB video in each requested format."""
    if "avi" in formats:
        encode_video(video, split_dir / _FORMAT_DIRS["avi"] / f"{name}.avi", "avi", "mjpeg", "yuvj420p",
                {}, bit_rate=40 * video.shape[1] * video.shape[2] * FPS // 10)
    if "mp4" in formats:
        # A fixed thread count keeps x264's output byte-identical between runs.
        encode_video(video, split_dir / _FORMAT_DIRS["mp4"] / f"{name}.mp4", "mp4", "libx264", "yuv420p",
                {"crf": "18", "preset": "veryfast", "threads": "1"})
    if "frames" in formats:
        folder = split_dir / _FORMAT_DIRS["frames"] / name
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(video):
            cv2.imwrite(str(folder / f"{index:03d}.jpg"), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])


def encode_video(video: np.ndarray, path: Path, container: str, codec: str, pix_fmt: str, options: dict | None = None,
                 bit_rate: int | None = None, fps: int = FPS) -> None:
    """Encode a (T, H, W, 3) uint8 RGB array with PyAV (tests use it to make sources in other codecs too)."""
    av = require("av", f"writing the video {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = pix_fmt
        if bit_rate:
            stream.bit_rate = bit_rate
        for image in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
