"""The optical-flow feature of benchmarks/travel/flow_term.py: a box's histogram of flow directions weighted by
magnitude reads the direction and speed of what moves inside it, the same at any working scale, on real frame
files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vadgpu.data.types import Video
from vadgpu.errors import VadgpuError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def flow_term():
    spec = importlib.util.spec_from_file_location("flow_term", REPO / "benchmarks" / "travel" / "flow_term.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["flow_term"] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("flow_term", None)


def test_histogram_puts_magnitude_in_the_direction_of_motion(flow_term):
    motion = np.zeros((60, 80, 2), np.float32)
    motion[:, :40, 0] = 3.0  # left half: 3 px/frame to the right
    motion[:, 40:, 1] = -2.0  # right half: 2 px/frame up the image
    boxes = np.array([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0], [0.25, 0.0, 0.75, 1.0]])
    out = flow_term.box_histograms(motion, boxes, 8, np.array([1.0, 2.0, 1.0]))
    assert out.shape == (3, 8)
    np.testing.assert_allclose(out[0], [3, 0, 0, 0, 0, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(out[1], [0, 0, 0, 0, 0, 0, 1, 0], atol=1e-5)  # 2 px / a unit of 2 px, at 270 deg
    np.testing.assert_allclose(out[2], [1.5, 0, 0, 0, 0, 0, 1, 0], atol=1e-5)  # half of each


def _moving_square(folder: Path, frames: int, step: int, zoom: int = 1) -> tuple[Video, dict]:
    """PNG frames (160 x 120, times `zoom`) of a textured 40-pixel square moving `step` px/frame to the right over
    a still textured background, and a box cache (the arrays read_box_cache gives) with its box in every frame."""
    rng = np.random.default_rng(0)

    def texture(shape):  # smooth noise at full contrast: something the flow can follow
        smooth = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), 2)
        return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)

    size = (120, 160)
    background, square = texture(size), texture((40, 40))
    folder.mkdir()
    files, rows = [], []
    for t in range(frames):
        frame = background.copy()
        x = 60 + step * t
        frame[40:80, x:x + 40] = square
        files.append(folder / f"{t:03d}.png")
        cv2.imwrite(str(files[-1]), cv2.resize(frame, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR))
        rows.append((t, x / size[1], 40 / size[0], (x + 40) / size[1], 80 / size[0]))
    frame_index, x1, y1, x2, y2 = (np.array(c) for c in zip(*rows))
    arrays = {"video": np.zeros(frames, np.int32), "frame": frame_index.astype(np.int32),
              "x1": x1.astype(np.float32), "y1": y1.astype(np.float32), "x2": x2.astype(np.float32),
              "y2": y2.astype(np.float32), "video_height": np.array([size[0] * zoom]),
              "video_width": np.array([size[1] * zoom])}
    return Video("01", folder, frame_files=tuple(files)), arrays


def test_a_box_moving_right_reads_the_same_at_any_frame_size(flow_term, tmp_path):
    found = {}
    for zoom in (1, 2):  # the same scene at twice the size: the flow is worked out with 40-pixel boxes in both
        video, arrays = _moving_square(tmp_path / f"x{zoom}", frames=6, step=2, zoom=zoom)
        make = flow_term.FlowFeatures("medium", 1 / zoom, 8, "median", 40)
        found[zoom], frames = make.of_cache(arrays, {0: video})
        assert frames == 6 and np.isfinite(found[zoom]).all()
        # all of it to the right (bin 0), the first frame (flow to the next one) as every other
        assert (found[zoom][:, 0] > 0.9 * found[zoom].sum(axis=1)).all()
        # 2 px/frame of a 40-pixel box = 0.05 box heights per frame, inside the box
        np.testing.assert_allclose(found[zoom].sum(axis=1), 0.05, rtol=0.2)
    np.testing.assert_allclose(found[2], found[1], atol=0.005)

    video, arrays = _moving_square(tmp_path / "left", frames=3, step=-2)
    left, _ = flow_term.FlowFeatures("medium", 1.0, 8, "box", 40).of_cache(arrays, {0: video})
    assert (left[:, 4] > 0.9 * left.sum(axis=1)).all()  # to the left: the sector at 180 degrees
    np.testing.assert_allclose(left.sum(axis=1), 0.05, rtol=0.2)  # in the box's own height: 40 px here too


def test_a_frame_of_another_size_than_the_cache_is_an_error_naming_the_file(flow_term, tmp_path):
    video, arrays = _moving_square(tmp_path / "01", frames=3, step=2)
    arrays["video_width"] = np.array([200])
    with pytest.raises(VadgpuError, match=r"01/000.png: frame 0 is 160x120, the box cache says 200x120"):
        flow_term.FlowFeatures("medium", 1.0, 8, "median", 40).of_cache(arrays, {0: video})
