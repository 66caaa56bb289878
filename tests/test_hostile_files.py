"""Hostile and damaged files that vadgpu reads (box caches, checkpoints, ONNX metadata): each is one clear
VadgpuError naming the file, never a native crash, a library traceback or a silent use of bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vadgpu.errors import VadgpuError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def box_data(tmp_path_factory):
    """A synthetic dataset (2 train / 2 test videos of 20 frames, 64x48) and its background-subtraction cache of
    both splits: (root, cache path, the cache's arrays)."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.synth import make_synthetic_dataset
    from vadgpu.objects import build_box_cache, make_detector

    base = tmp_path_factory.mktemp("boxes")
    root = make_synthetic_dataset(base / "synth", seed=1, train_videos=2, test_videos=2, frames=20,
                                  frame_size=(48, 64), formats=("frames",))
    data = open_dataset("synthetic", root)
    cache = base / "boxes.npz"
    build_box_cache({"train": data.train, "test": data.test}, make_detector("bgsub"), cache, "synthetic",
                    progress=False)
    with np.load(cache) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert len(arrays["x1"]) > 10
    return root, cache, arrays


def _mutated(tmp_path: Path, arrays: dict, **changes) -> Path:
    out = dict(arrays)
    for key, change in changes.items():
        out[key] = change(out[key].copy()) if callable(change) else change
    path = tmp_path / "mutated.npz"
    np.savez(path, **out)
    return path


def _set(index, value):
    def change(column):
        column[index] = value
        return column
    return change


BAD_CACHES = {
    "nan x1": ({"x1": _set(slice(None), np.nan)}, r"box 0 has x1 nan"),
    "one inf y2": ({"y2": _set(3, np.inf)}, r"box 3 has y2 inf"),
    "negative x1": ({"x1": _set(2, -0.5)}, r"box 2 has x1 -0\.5, outside the frame"),
    "huge y2": ({"y2": _set(1, 1e30)}, r"box 1 has y2 1e\+30, outside the frame"),
    "inverted": ({"x1": _set(4, 0.9), "x2": _set(4, 0.1)}, r"box 4 is inverted \(x1 0\.9 > x2 0\.1\)"),
    "video out of range": ({"video": _set(0, 99)}, r"box 0 names video 99, but the cache lists 4"),
    "negative video": ({"video": _set(5, -1)}, r"box 5 names video -1"),
    "frame past the end": ({"frame": _set(0, 20)}, r"box 0 is in frame 20 of video '01', which has 20"),
    "fractional frame": ({"frame": lambda f: f.astype(np.float32) + 0.5}, r"frame must hold whole numbers"),
    "nan score": ({"score": _set(0, np.nan)}, r"box 0 has score nan"),
    "class out of range": ({"cls": _set(0, 7)}, r"box 0 has class 7, but the cache names 1"),
    "track below -1": ({"track": _set(0, -5)}, r"box 0 has track id -5"),
    "short column": ({"track": lambda t: t[:-1]}, r"the per-box arrays must be 1-D and of one length"),
    "2-D column": ({"x1": lambda x: np.stack([x, x], 1)}, r"the per-box arrays must be 1-D"),
    "text coordinates": ({"x1": lambda x: x.astype(str)}, r"x1 must hold numbers"),
    "negative frame count": ({"video_frames": _set(0, -3)}, r"video '01' has -3 frames"),
    "frame counts too few": ({"video_frames": lambda f: f[:2]}, r"video_frames has 2 entries for 4 videos"),
    "unknown split": ({"video_splits": _set(1, "val")}, r"video '02' is in split 'val', not train or test"),
    "duplicate name": ({"video_names": _set(1, "01")}, r"split train names a video twice"),
    "zero width": ({"video_width": _set(0, 0)}, r"video '01' has video_width 0"),
    "format array": ({"format": np.array([1, 1])}, r"format must be a scalar"),
    "names as numbers": ({"video_names": np.arange(4)}, r"video_names must be a list of texts"),
}


@pytest.mark.parametrize("case", list(BAD_CACHES))
def test_a_damaged_box_cache_is_refused_where_it_is_read(box_data, tmp_path, case):
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.objects.boxes import ObjectBoxes, read_box_cache
    from vadgpu.objects.tubes import FrameBoxes

    root, _, arrays = box_data
    changes, message = BAD_CACHES[case]
    path = _mutated(tmp_path, arrays, **changes)
    with pytest.raises(VadgpuError, match=rf"box cache .*mutated\.npz: {message}"):
        read_box_cache(path)
    prepared = load_prepared(open_dataset("synthetic", root, "frames"), "cpu", cache=tmp_path / "c",
                             progress=False, loader="torch")
    with pytest.raises(VadgpuError, match="mutated.npz"):  # every reader goes through read_box_cache
        FrameBoxes.load(path, list(prepared.test), "test")
    with pytest.raises(VadgpuError, match="mutated.npz"):
        ObjectBoxes.load(path, list(prepared.train), "cpu", 3)


def test_the_intact_cache_reads_as_before(box_data):
    from vadgpu.objects.boxes import read_box_cache

    _, cache, arrays = box_data
    read = read_box_cache(cache)
    for key in arrays:
        np.testing.assert_array_equal(read[key], arrays[key])
        assert read[key].dtype == arrays[key].dtype


def test_eval_with_nan_boxes_is_an_error_not_a_native_crash(box_data, tmp_path):
    root, _, arrays = box_data
    bad = _mutated(tmp_path, arrays, x1=_set(slice(None), np.nan))
    done = subprocess.run([sys.executable, "-m", "vadgpu", "eval", "--checkpoint", "ped2-ddl", "--dataset",
                           "synthetic", "--root", str(root), "--variant", "frames", "--boxes", str(bad), "--out",
                           str(tmp_path / "o"), "--no-progress", "--loader", "torch", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**__import__("os").environ, "VADGPU_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])  # a segfault is -11
    assert "Error: box cache" in done.stderr and "x1 nan" in done.stderr and "Traceback" not in done.stderr
