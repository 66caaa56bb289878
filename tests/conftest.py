"""Shared test fixtures: device skips, ../shared paths, offline settings for ultralytics, the loader tests' encoded
media, the tiny training set of the training tests."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PED2_ROOT = SHARED / "datasets" / "ped2"
YOLOV3_TINY = SHARED / "models" / "yolov3-tiny"
SHARED_FIXTURES = {"ped2_root", "yolov3_tiny_dir"}  # the fixtures that need ../shared (and skip without it)

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".cache" / "ultralytics"))


_SIGNAL_LEAKS: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test that leaves SIGINT or SIGTERM handled otherwise than it found them is named at the end of the run
    and the handler put back, so that the tests after it (which start commands and send them Ctrl-C) see the
    default."""
    import signal

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in before.items():
        if signal.getsignal(signum) is not handler:
            _SIGNAL_LEAKS.append(f"{item.nodeid} left {signal.Signals(signum).name} handled by "
                                 f"{signal.getsignal(signum)!r}")
            signal.signal(signum, handler)


def pytest_terminal_summary(terminalreporter):
    for line in _SIGNAL_LEAKS:
        terminalreporter.write_line(f"signal handler put back: {line}", yellow=True)


def pytest_collection_modifyitems(config, items):
    import torch

    from vadgpu.optional import available

    skips = {
        "gpu": (torch.cuda.is_available(), "needs a CUDA GPU; none visible to torch on this machine"),
        "dali": (available("nvidia.dali"), "needs NVIDIA DALI, which is not installed here"),
        "av": (available("av"), "needs PyAV, which is not installed here"),
    }
    for item in items:
        uses_shared = SHARED_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_shared and "shared" not in item.keywords:  # every skip is declared: `-m "not shared"` must hold
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(uses_shared))} (../shared) without "
                                    "@pytest.mark.shared")
        for marker, (present, reason) in skips.items():
            if marker in item.keywords and not present:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors on a small CPU shared with other jobs: one torch thread for the module avoids OpenMP
    spin-waiting (10x faster under load on 2 cores); `pytestmark = pytest.mark.usefixtures("one_torch_thread")`
    asks for it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def make_tiny_darknet(folder: Path, seed: int = 0) -> Path:
    """A Darknet network of five 3x3 convolutions (batch norm, leaky ReLU) with 2x2 max pools between them, so
    that its layer `leaky_9` is a 16-channel map at stride 16 as yolov3-tiny's is (256 channels), and random
    weights in Darknet's format: folder/tiny.cfg + folder/tiny.weights (returned)."""
    folder.mkdir(parents=True, exist_ok=True)
    filters = [4, 4, 8, 8, 16]
    lines = ["[net]", "width=64", "height=64", "channels=3", ""]
    for i, count in enumerate(filters):
        if i:
            lines += ["[maxpool]", "size=2", "stride=2", ""]
        lines += ["[convolutional]", "batch_normalize=1", f"filters={count}", "size=3", "stride=1", "pad=1",
                  "activation=leaky", ""]
    (folder / "tiny.cfg").write_text("\n".join(lines))
    rng = np.random.default_rng(seed)
    # header: major, minor, revision (int32), images seen (int64); then per layer: biases, BN scales, means,
    # variances, convolution weights (float32)
    parts = [np.array([0, 2, 0], np.int32).tobytes(), np.array([0], np.int64).tobytes()]
    channels = 3
    for count in filters:
        parts += [np.zeros(count, np.float32).tobytes(), np.ones(count, np.float32).tobytes(),
                  np.zeros(count, np.float32).tobytes(), np.ones(count, np.float32).tobytes(),
                  rng.normal(0, 0.5, count * channels * 9).astype(np.float32).tobytes()]
        channels = count
    (folder / "tiny.weights").write_bytes(b"".join(parts))
    return folder / "tiny.weights"


def make_tiny_training_set(base: Path, seed: int) -> tuple[Path, Path, Path]:
    """Two 20-frame MJPEG training videos (64x48) under `base` and a background-subtraction box cache for them.

    Returns (dataset root, boxes .npz, a prepare-cache folder) for the training tests that launch `vadgpu train`.
    """
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.synth import make_synthetic_dataset
    from vadgpu.objects import build_box_cache, make_detector
    from vadgpu.optional import available

    # MJPEG videos; where PyAV cannot write them, jpg frame folders (what the dataset then opens by default)
    root = make_synthetic_dataset(base / "synth", seed=seed, train_videos=2, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("avi",) if available("av") else ("frames",))
    boxes = base / "boxes.npz"
    build_box_cache({"train": open_dataset("synthetic", root).train}, make_detector("bgsub"), boxes, "synthetic",
                    progress=False)
    return root, boxes, base / "cache"


def make_box_dataset(base: Path, seed: int, videos: int) -> tuple[Path, object, Path]:
    """A synthetic dataset of jpg frame folders (`videos` train and test videos of 20 frames, 64x48) under `base`
    and its background-subtraction box cache of both splits: (root, the opened Dataset, the cache)."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.synth import make_synthetic_dataset
    from vadgpu.objects import build_box_cache, make_detector

    root = make_synthetic_dataset(base / "synth", seed=seed, train_videos=videos, test_videos=videos, frames=20,
                                  frame_size=(48, 64), formats=("frames",))
    data = open_dataset("synthetic", root)
    cache = base / "boxes.npz"
    build_box_cache({"train": data.train, "test": data.test}, make_detector("bgsub"), cache, "synthetic",
                    progress=False)
    return root, data, cache


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Short encoded videos and frame folders of every format the loaders read (clip_media.write_media)."""
    from clip_media import write_media

    pytest.importorskip("av", reason="the loader tests' media are encoded with PyAV")
    return write_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, Path, Path]:
    """make_tiny_training_set(seed=3), once per test module: (dataset root, boxes .npz, prepare cache)."""
    return make_tiny_training_set(tmp_path_factory.mktemp("synth"), seed=3)


def orphan_temporary(folder: Path, name: str) -> Path:
    """The hidden temporary that a writer of `folder/name` killed by SIGKILL leaves behind (its PID is gone)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = folder / f".{name}.{proc.pid}-abc123_x.tmp"
    path.write_bytes(b"partial")
    return path


@contextlib.contextmanager
def read_only_folder(folder: Path):
    """Make `folder` unwritable for this process for the block (root ignores modes: chattr +i then), then undo."""
    import shutil
    import subprocess

    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                         capture_output=True).returncode != 0:
        pytest.skip(f"cannot make {folder} read-only for root here (chattr +i)")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextlib.contextmanager
def folder_held_elsewhere(folder: Path, command: str):
    """Another process holds `folder`'s vadgpu lock (as `command`) for the block; yields that process."""
    import subprocess
    import sys

    script = ("import sys, time\nfrom vadgpu.folder_lock import hold_folder\n"
              "with hold_folder(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(folder), command], stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def object_run(tmp_path_factory):
    """A small synthetic dataset and an object-mode DDL run trained for a few steps through `vadgpu train`
    (no --boxes: the background-subtraction cache of both splits is made on the way)."""
    from click.testing import CliRunner

    from vadgpu.cli.main import cli

    base = tmp_path_factory.mktemp("objects")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VADGPU_CACHE", str(base / "cache"))
        runner = CliRunner()
        root, run = base / "synth", base / "run"
        result = runner.invoke(cli, ["data", "synth", str(root), "--train-videos", "2", "--test-videos", "2",
                                     "--frames", "40"])
        assert result.exit_code == 0, result.output
        result = runner.invoke(cli, ["train", "--dataset", "synthetic", "--root", str(root), "--preset",
                                     "ddl-objects-cpu", "--out", str(run), "--epochs", "1", "--max-steps", "3",
                                     "--batch-size", "2", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert "object tubes: 4 per clip" in result.output
        yield base, root, run, runner, cli


@pytest.fixture(scope="module")
def tiny_darknet(tmp_path_factory) -> Path:
    """make_tiny_darknet's weights file (its .cfg beside it), once per test module."""
    return make_tiny_darknet(tmp_path_factory.mktemp("darknet"))


@pytest.fixture(scope="module")
def calibrated_model(object_run, tiny_darknet, tmp_path_factory) -> Path:
    """The object run's model.pt calibrated with the tiny Darknet network's features (`vadgpu calibrate`): an
    object model with location and appearance terms in its record."""
    base, root, run, runner, cli = object_run
    out = tmp_path_factory.mktemp("calibrated") / "model.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VADGPU_CACHE", str(base / "cache"))
        result = runner.invoke(cli, ["calibrate", "--checkpoint", str(run / "model.pt"), "--appearance",
                                     str(tiny_darknet), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "appearance z" in result.output and f"wrote {out}" in result.output
    return out
