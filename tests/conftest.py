"""Shared test fixtures: device skips, ../shared paths, offline settings for ultralytics, the loader tests' encoded
media, the tiny training set of the training tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PED2_ROOT = SHARED / "datasets" / "ped2"
YOLOV3_TINY = SHARED / "models" / "yolov3-tiny"

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".cache" / "ultralytics"))


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none visible to torch on this machine")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def ped2_root() -> Path:
    if not (PED2_ROOT / "training" / "frames").is_dir():
        pytest.skip(f"real Ped2 not found at {PED2_ROOT} (../shared/datasets/ped2 is absent on this machine)")
    return PED2_ROOT


@pytest.fixture(scope="session")
def yolov3_tiny_dir() -> Path:
    if not (YOLOV3_TINY / "yolov3-tiny.weights").is_file():
        pytest.skip(f"yolov3-tiny Darknet files not found at {YOLOV3_TINY} (../shared/models is absent)")
    return YOLOV3_TINY


def make_tiny_training_set(base: Path, seed: int) -> tuple[Path, Path, Path]:
    """Two 20-frame MJPEG training videos (64x48) under `base` and a background-subtraction box cache for them.

    Returns (dataset root, boxes .npz, a prepare-cache folder) for the training tests that launch `vadgpu train`.
    """
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.synth import make_synthetic_dataset
    from vadgpu.objects import build_box_cache, make_detector

    root = make_synthetic_dataset(base / "synth", seed=seed, train_videos=2, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("avi",))
    boxes = base / "boxes.npz"
    build_box_cache({"train": open_dataset("synthetic", root).train}, make_detector("bgsub"), boxes, "synthetic",
                    progress=False)
    return root, boxes, base / "cache"


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Short encoded videos and frame folders of every format the loaders read (clip_media.write_media)."""
    from clip_media import write_media

    return write_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, Path, Path]:
    """make_tiny_training_set(seed=3), once per test module: (dataset root, boxes .npz, prepare cache)."""
    return make_tiny_training_set(tmp_path_factory.mktemp("synth"), seed=3)
