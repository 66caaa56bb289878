"""`vadgpu data pack --scale / --resize`: the copy holds the same frames resized, every frame and label kept, the
sizes recorded in pack.json, read by the catalog like any packed copy; bad values are usage errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from vadgpu.cli.main import cli
from vadgpu.data.catalog import open_dataset
from vadgpu.data.pack import pack_dataset, packed_size
from vadgpu.data.synth import make_synthetic_dataset
from vadgpu.errors import VadgpuError
from vadgpu.objects.frames import iter_frames

pytestmark = pytest.mark.av  # pack encodes with PyAV

FRAMES = 20
TOLERANCE = 4.0  # mean absolute difference per frame (0-255) at QUALITY, with 4:2:0 colour
QUALITY = {"mjpeg": None, "h264": 16}  # MJPEG's default; H.264's crf 23 blurs 36x48 frames by more than a resize


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "s", seed=2, train_videos=1, test_videos=1,
                                  frames=FRAMES, frame_size=(48, 64), formats=("frames",))
    return open_dataset("synthetic", root, variant="frames")


def test_packed_size_rounds_to_even_sides():
    assert packed_size(240, 360, scale=2.0) == (480, 720)
    assert packed_size(240, 360, scale=0.75) == (180, 270)
    assert packed_size(240, 360, scale=0.5) == (120, 180)
    assert packed_size(45, 61, scale=1.0) == (44, 60)  # 22.5 -> 22 (half to even), 30.5 -> 30
    assert packed_size(240, 360, size=(100, 200)) == (100, 200)
    assert packed_size(47, 63) == (48, 64)  # no resize: odd sides padded by one pixel, as before


@pytest.mark.parametrize("codec,scale,size,interpolation", [
    ("mjpeg", 2.0, None, cv2.INTER_LINEAR),
    ("h264", 0.75, None, cv2.INTER_AREA),
    ("mjpeg", None, (40, 50), cv2.INTER_AREA),
])
def test_pack_resizes_every_frame_and_keeps_labels(source, tmp_path, codec, scale, size, interpolation):
    result = pack_dataset(source, tmp_path / "packed", codec=codec, quality=QUALITY[codec], scale=scale, size=size,
                          progress=False)
    height, width = size or (round(48 * scale), round(64 * scale))
    packed = open_dataset("generic", result.out)
    assert result.frames == 2 * FRAMES and [v.name for v in packed.train] == [v.name for v in source.train]
    manifest = json.loads((result.out / "pack.json").read_text())
    assert manifest["scale"] == scale and manifest["resize"] == (list(size) if size else None)
    assert manifest["codec"] == codec and len(manifest["videos"]) == 2
    for original, copy in zip(source.train + source.test, packed.train + packed.test):
        record = next(r for r in manifest["videos"] if r["name"] == original.name and r["file"].endswith(
            copy.path.name) and (r["split"] == "testing") == (copy.labels is not None))
        assert (record["source_size"], record["size"], record["frames"]) == ([48, 64], [height, width], FRAMES)
        if original.labels is not None:
            assert np.array_equal(copy.labels, original.labels)
        images = [cv2.imread(str(f)) for f in original.frame_files]
        truth = [cv2.resize(image, (width, height), interpolation=interpolation) for image in images]
        nearest = [cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST) for image in images]
        frames = list(iter_frames(copy))
        assert len(frames) == FRAMES and frames[0].shape == (height, width, 3)
        for index, frame in enumerate(frames):
            frame = frame.astype(np.float32)
            error = np.abs(frame - truth[index]).mean()
            # lossy codec, same content: near its own frame resized, farther from another frame or a cruder resize
            assert error < TOLERANCE, (copy.path, index, error)
            assert error < np.abs(frame - truth[(index + 10) % FRAMES]).mean(), (copy.path, index)
            assert error < np.abs(frame - nearest[index]).mean() - 0.2, (copy.path, index)


def test_library_refuses_bad_values_before_writing(source, tmp_path):
    for kwargs, match in [({"scale": 0.0}, "--scale 0.0: must be a number above 0"),
                          ({"scale": float("nan")}, "--scale nan"),
                          ({"size": (41, 50)}, "--resize 41 50: .* even positive"),
                          ({"scale": 2.0, "size": (40, 50)}, "--scale and --resize both given")]:
        with pytest.raises(VadgpuError, match=match):
            pack_dataset(source, tmp_path / "packed", progress=False, **kwargs)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args,message", [
    (["--scale", "0"], "--scale 0.0: must be a number above 0"),
    (["--scale", "-2"], "--scale -2.0: must be a number above 0"),
    (["--resize", "0", "64"], "--resize 0 64: height and width must be even positive integers"),
    (["--resize", "48", "63"], "--resize 48 63: height and width must be even positive integers"),
    (["--scale", "2", "--resize", "48", "64"], "--scale and --resize both given"),
])
def test_cli_bad_resize_is_a_usage_error(source, tmp_path, args, message):
    out = tmp_path / "packed"
    result = CliRunner().invoke(cli, ["data", "pack", "--dataset", "synthetic", "--root", str(source.root),
                                      "--variant", "frames", "--out", str(out), "--no-progress", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not out.exists()


def test_cli_scale_writes_the_copy(source, tmp_path):
    out = tmp_path / "packed"
    result = CliRunner().invoke(cli, ["data", "pack", "--dataset", "synthetic", "--root", str(source.root),
                                      "--variant", "frames", "--out", str(out), "--codec", "mjpeg", "--scale", "0.5",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"packed 2 videos ({2 * FRAMES} frames)" in result.output
    assert next(iter_frames(open_dataset("generic", out).test[0])).shape == (24, 32, 3)
