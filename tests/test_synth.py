"""The synthetic dataset: layout, determinism, the three formats agree, labels, anomalies visible, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from vadgpu.cli.main import cli
from vadgpu.data.synth import make_synthetic_dataset
from vadgpu.errors import VadgpuError

av = pytest.importorskip("av", reason="these tests write and read videos with PyAV")
pytestmark = pytest.mark.av  # the whole module: declared, so `-m av` selects it

FRAMES = 40
SIZE = (64, 48)  # width, height
HW = (SIZE[1], SIZE[0])  # frame_size: height, width


def _files_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "a", seed=3, train_videos=3, test_videos=3,
                                  frames=FRAMES, frame_size=HW)


def test_layout_and_manifest(synth):
    for split, count in (("training", 3), ("testing", 3)):
        for index in range(1, count + 1):
            assert (synth / split / "videos" / f"{index:02d}.avi").is_file()
            assert (synth / split / "videos_h264" / f"{index:02d}.mp4").is_file()
            frames = sorted((synth / split / "frames" / f"{index:02d}").glob("*.jpg"))
            assert [p.name for p in frames] == [f"{i:03d}.jpg" for i in range(FRAMES)]
    assert not (synth / "training" / "labels").exists()
    manifest = json.loads((synth / "synthetic.json").read_text())
    assert manifest["seed"] == 3 and manifest["frames"] == FRAMES and (manifest["width"], manifest["height"]) == SIZE
    assert [a["kind"] for a in manifest["anomalies"]] == ["fast", "crossing", "cart"]


def test_same_seed_same_files_other_seed_differs(synth, tmp_path):
    again = make_synthetic_dataset(tmp_path / "b", seed=3, train_videos=3, test_videos=3, frames=FRAMES, frame_size=HW)
    assert _files_digest(again) == _files_digest(synth)
    other = make_synthetic_dataset(tmp_path / "c", seed=4, train_videos=3, test_videos=3, frames=FRAMES, frame_size=HW)
    digest, other_digest = _files_digest(synth), _files_digest(other)
    assert digest.keys() == other_digest.keys()
    assert digest["testing/videos/01.avi"] != other_digest["testing/videos/01.avi"]
    assert any(not np.array_equal(np.load(synth / "testing/labels" / n), np.load(other / "testing/labels" / n))
               for n in ("01.npy", "02.npy", "03.npy"))


def _decode(path: Path) -> tuple[str, np.ndarray]:
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return codec, np.stack(frames)  # (T, H, W, 3)


@pytest.mark.parametrize("split,name", [("training", "01"), ("testing", "02")])
def test_three_formats_decode_to_same_frames(synth, split, name):
    codec_avi, avi = _decode(synth / split / "videos" / f"{name}.avi")
    codec_mp4, mp4 = _decode(synth / split / "videos_h264" / f"{name}.mp4")
    jpgs = np.stack([cv2.imread(str(p))[..., ::-1] for p in sorted((synth / split / "frames" / name).glob("*.jpg"))])
    assert (codec_avi, codec_mp4) == ("mjpeg", "h264")
    assert avi.shape == mp4.shape == jpgs.shape == (FRAMES, SIZE[1], SIZE[0], 3)
    # Lossy codecs, same content: the mean difference stays small.
    assert np.abs(avi.astype(int) - jpgs).mean() < 6
    assert np.abs(mp4.astype(int) - jpgs).mean() < 6


def test_labels_have_both_classes(synth):
    for name in ("01", "02", "03"):
        labels = np.load(synth / "testing" / "labels" / f"{name}.npy", allow_pickle=False)
        assert labels.dtype == np.uint8 and labels.shape == (FRAMES,)
        assert set(np.unique(labels)) == {0, 1}
        assert labels[0] == 0  # every test video opens with normal frames


def test_anomalies_learnable_from_training_videos(synth):
    """A generic novelty detector fitted on the training videos only (nearest-neighbour distance of 8x8 patches of
    64x64 gray appearance + frame difference + patch position) must rank anomalous test frames well above normal
    ones: the anomalies are visible at the resolution the models use."""
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    def patch_features(path: Path) -> np.ndarray:  # (T, 64 patches, 2 * 8 * 8 + 2)
        video = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (64, 64)) for f in _decode(path)[1]])
        video = video.astype(np.float32) / 255  # (T, 64, 64)
        motion = 4 * np.abs(np.diff(video, axis=0, prepend=video[:1]))
        x = np.stack([video, motion], 1).reshape(len(video), 2, 8, 8, 8, 8)  # (T, 2, rows, 8, cols, 8)
        x = x.transpose(0, 2, 4, 1, 3, 5).reshape(len(video), 64, 128)
        position = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1).reshape(64, 2)
        return np.concatenate([x, np.broadcast_to(position, (len(video), 64, 2))], -1)

    train = np.concatenate([patch_features(p) for p in sorted((synth / "training/videos").glob("*.avi"))])
    neighbours = NearestNeighbors(n_neighbors=1).fit(train.reshape(-1, train.shape[-1]))
    scores, labels = [], []
    for path in sorted((synth / "testing/videos").glob("*.avi")):
        x = patch_features(path)
        scores.append(neighbours.kneighbors(x.reshape(-1, x.shape[-1]))[0].reshape(x.shape[:2]).max(1))
        labels.append(np.load(synth / "testing/labels" / f"{path.stem}.npy"))
    assert roc_auc_score(np.concatenate(labels), np.concatenate(scores)) > 0.8


def test_refuses_foreign_folder_and_needs_overwrite(synth, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(VadgpuError, match="foreign.*other files"):
        make_synthetic_dataset(foreign, frames=FRAMES, frame_size=HW)
    assert (foreign / "notes.txt").read_text() == "mine"
    out = make_synthetic_dataset(tmp_path / "d", seed=1, train_videos=1, test_videos=1, frames=FRAMES, frame_size=HW)
    with pytest.raises(VadgpuError, match="--overwrite"):
        make_synthetic_dataset(out, seed=2, train_videos=1, test_videos=1, frames=FRAMES, frame_size=HW)
    make_synthetic_dataset(out, seed=2, train_videos=1, test_videos=1, frames=FRAMES, frame_size=HW, overwrite=True)
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 2


@pytest.mark.parametrize("kwargs,match", [({"frame_size": (48, 63)}, "even"), ({"frames": 5}, "frames"),
                                          ({"formats": ("mkv",)}, "formats"), ({"test_videos": 0}, "videos")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(VadgpuError, match=match):
        make_synthetic_dataset(tmp_path / "x", **kwargs)


def test_cli(tmp_path):
    runner = CliRunner()
    args = ["data", "synth", str(tmp_path / "s"), "--seed", "1", "--train-videos", "1", "--test-videos", "1",
            "--frames", "24", "--frame-size", "48", "64"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "64x48" in result.output  # width x height, as image sizes are written
    old = runner.invoke(cli, ["data", "synth", str(tmp_path / "old"), "--size", "64", "48"])
    assert old.exit_code != 0 and "--frame-size H W" in old.output and not (tmp_path / "old").exists()
    assert len(list((tmp_path / "s/testing/frames/01").glob("*.jpg"))) == 24
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "--overwrite" in result.output
