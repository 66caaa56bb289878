"""Dataset catalog and label readers: every layout built on the fly in tmp, real Ped2, and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from vadgpu.data import labels as L
from vadgpu.data.catalog import DATASETS, open_dataset
from vadgpu.data.synth import encode_video, make_synthetic_dataset
from vadgpu.errors import VadgpuError

H, W = 24, 32


def frames_array(count: int, seed: int = 0) -> np.ndarray:
    """(count, H, W, 3) uint8 RGB: a bright square moving over noise, so codecs have something to encode."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 60, (count, H, W, 3), dtype=np.uint8)
    for t in range(count):
        video[t, 8:16, t % (W - 8):t % (W - 8) + 8] = 220
    return video


def write_frames(folder: Path, count: int, ext: str = ".jpg", start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames_array(count)):
        cv2.imwrite(str(folder / f"{start + i:03d}{ext}"), image)


def write_avi(path: Path, count: int, codec: str = "mjpeg") -> None:
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    encode_video(frames_array(count), path, "avi", codec, pix_fmt)


def gt_cell(intervals: list[list[tuple[int, int]]]) -> np.ndarray:
    """A MATLAB cell of (2, K) first/last rows, as ped2.mat stores it."""
    cell = np.empty((1, len(intervals)), dtype=object)
    for i, video in enumerate(intervals):
        cell[0, i] = np.array(video, dtype=np.uint8).T.reshape(2, -1)
    return cell


# ---------------------------------------------------------------------------------------------------------- ped2


@pytest.fixture
def ped2_jpg(tmp_path) -> Path:
    root = tmp_path / "ped2"
    for i in (1, 2):
        write_frames(root / "training" / "frames" / f"{i:02d}", 6)
    write_frames(root / "testing" / "frames" / "01", 8)
    write_frames(root / "testing" / "frames" / "02", 5)
    scipy.io.savemat(root / "ped2.mat", {"gt": gt_cell([[(3, 8)], [(1, 2), (4, 5)]])})
    np.save(root / "frame_labels_ped2.npy", np.array([[0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1]]))
    return root


def test_datasets_tuple():
    assert DATASETS == ("ped2", "avenue", "shanghaitech", "generic", "synthetic")


def test_ped2_jpg_layout_both_label_files_agree(ped2_jpg):
    mat = open_dataset("ped2", ped2_jpg)
    npy = open_dataset("ped2", ped2_jpg, labels=ped2_jpg / "frame_labels_ped2.npy")
    assert [v.name for v in mat.train] == ["01", "02"] and all(v.is_folder for v in mat.train)
    assert [len(v.frame_files) for v in mat.test] == [8, 5]
    assert mat.test[0].labels.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert mat.test[1].labels.tolist() == [1, 1, 0, 1, 1]
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(mat.test, npy.test))
    assert mat.label_source.endswith("ped2.mat") and npy.label_source.endswith(".npy")
    assert all(v.labels is None for v in mat.train)


def test_ped2_ucsd_layout_tif_and_m_intervals(tmp_path):
    base = tmp_path / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
    write_frames(base / "Train" / "Train001", 5, ".tif", start=1)
    write_frames(base / "Train" / "Train002", 4, ".tif", start=1)
    write_frames(base / "Test" / "Test001", 6, ".tif", start=1)
    write_frames(base / "Test" / "Test001_gt", 6, ".bmp", start=1)  # pixel masks: not a video
    write_frames(base / "Test" / "Test002", 7, ".tif", start=1)
    (base / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile = {};\n% comment gt_frame = [9:9];\n"
        "TestVideoFile{end+1}.gt_frame = [2:3, 5:6];\nTestVideoFile{end+1}.gt_frame = [1:7];\n")
    for root in (base.parent, base):  # the release folder or UCSDped2 itself
        dataset = open_dataset("ped2", root)
        assert [v.name for v in dataset.test] == ["Test001", "Test002"]
        assert dataset.train[0].frame_files[0].name == "001.tif"
        assert dataset.test[0].labels.tolist() == [0, 1, 1, 0, 1, 1]
        assert dataset.test[1].labels.sum() == 7


def test_ped2_label_count_mismatch_names_video_and_counts(ped2_jpg):
    scipy.io.savemat(ped2_jpg / "ped2.mat", {"gt": gt_cell([[(3, 8)], [(1, 9)]])})
    with pytest.raises(VadgpuError, match=r"ped2.mat.*video 02.*\[1, 9\].*5 frames"):
        open_dataset("ped2", ped2_jpg)
    np.save(ped2_jpg / "frame_labels_ped2.npy", np.zeros(12, np.uint8))
    with pytest.raises(VadgpuError, match=r"cover 12 frames.*13 frames.*01: 8, 02: 5"):
        open_dataset("ped2", ped2_jpg, labels=ped2_jpg / "frame_labels_ped2.npy")


def test_ped2_per_video_label_length_mismatch(ped2_jpg):
    (ped2_jpg / "ped2.mat").unlink()
    (ped2_jpg / "frame_labels_ped2.npy").unlink()
    (ped2_jpg / "labels.json").write_text(json.dumps([0] * 13))
    # A split label file that covers all frames but a folder gained a frame: the count check names both counts.
    write_frames(ped2_jpg / "testing" / "frames" / "02", 6)
    with pytest.raises(VadgpuError, match=r"cover 13 frames.*14 frames"):
        open_dataset("ped2", ped2_jpg, labels=ped2_jpg / "labels.json")
    with pytest.raises(VadgpuError, match=r"no Ped2 label file.*ped2.mat"):
        open_dataset("ped2", ped2_jpg)


@pytest.mark.shared
def test_real_ped2(ped2_root):
    by_mat = open_dataset("ped2", ped2_root)
    by_npy = open_dataset("ped2", ped2_root, labels=ped2_root / "frame_labels_ped2.npy")
    assert len(by_mat.train) == 16 and sum(len(v.frame_files) for v in by_mat.train) == 2550
    assert len(by_mat.test) == 12 and sum(len(v.frame_files) for v in by_mat.test) == 2010
    assert [len(v.frame_files) for v in by_mat.test] == [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]
    for dataset in (by_mat, by_npy):
        assert sum(int(v.labels.sum()) for v in dataset.test) == 1648
        assert all(v.labels.dtype == np.uint8 for v in dataset.test)
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(by_mat.test, by_npy.test))


# --------------------------------------------------------------------------------------- avenue / shanghaitech


def test_avenue_masks_and_npy(tmp_path):
    root = tmp_path / "avenue"
    write_avi(root / "training_videos" / "01.avi", 6)
    write_avi(root / "testing_videos" / "01.avi", 5)
    write_avi(root / "testing_videos" / "02.avi", 4)
    mask_dir = root / "ground_truth_demo" / "testing_label_mask"
    mask_dir.mkdir(parents=True)
    for number, anomalous in ((1, [0, 1, 1, 0, 0]), (2, [1, 0, 0, 0])):
        cell = np.empty((1, len(anomalous)), dtype=object)
        for t, flag in enumerate(anomalous):
            mask = np.zeros((H, W), np.uint8)
            mask[3:5, 4:9] = flag
            cell[0, t] = mask
        scipy.io.savemat(mask_dir / f"{number}_label.mat", {"volLabel": cell})
    dataset = open_dataset("avenue", root)
    assert [v.name for v in dataset.test] == ["01", "02"] and not dataset.test[0].is_folder
    assert dataset.test[0].labels.tolist() == [0, 1, 1, 0, 0] and dataset.test[1].labels.tolist() == [1, 0, 0, 0]
    # A back-to-back .npy is split by the videos' frame counts (read from the containers).
    np.save(root / "frame_labels_avenue.npy", np.array([0, 1, 1, 0, 0, 1, 0, 0, 0], np.uint8))
    by_npy = open_dataset("avenue", root, labels=root / "frame_labels_avenue.npy")
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(dataset.test, by_npy.test))
    (mask_dir / "2_label.mat").unlink()
    with pytest.raises(VadgpuError, match=r"test video 02.*2_label.mat"):
        open_dataset("avenue", root)


def test_shanghaitech(tmp_path):
    root = tmp_path / "sht"
    write_avi(root / "training" / "videos" / "01_001.avi", 6)
    write_frames(root / "testing" / "frames" / "01_0014", 7)
    (root / "testing" / "test_frame_mask").mkdir(parents=True)
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 0, 0, 1, 1, 1, 0]))
    dataset = open_dataset("shanghaitech", root)
    assert dataset.train[0].name == "01_001" and dataset.test[0].labels.sum() == 3
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 1]))
    with pytest.raises(VadgpuError, match=r"video 01_0014.*2 frames.*7 frames"):
        open_dataset("shanghaitech", root)


# ------------------------------------------------------------------------------------------ generic / synthetic


def test_generic_mixed_videos_and_folders(tmp_path):
    root = tmp_path / "generic"
    write_avi(root / "training" / "cam_a.avi", 6)
    write_frames(root / "training" / "cam_b", 5, ".png")
    write_avi(root / "testing" / "x.avi", 5)
    write_frames(root / "testing" / "y", 4)
    assert open_dataset("generic", root).test[0].labels is None  # labels are optional
    (root / "testing" / "labels").mkdir()
    np.save(root / "testing" / "labels" / "x.npy", np.array([0, 0, 1, 1, 0], np.uint8))
    (root / "testing" / "labels" / "y.json").write_text(json.dumps({"frames": 4, "intervals": [[2, 3]]}))
    dataset = open_dataset("generic", root)
    assert [v.name for v in dataset.train] == ["cam_a", "cam_b"] and dataset.train[1].is_folder
    assert dataset.test[0].labels.tolist() == [0, 0, 1, 1, 0] and dataset.test[1].labels.tolist() == [0, 0, 1, 1]
    (root / "testing" / "labels" / "x.npy").unlink()
    with pytest.raises(VadgpuError, match=r"labels of test video x.*x.npy"):
        open_dataset("generic", root)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("catalog") / "synth", train_videos=2, test_videos=2,
                                  frames=20, frame_size=(48, 64))


@pytest.mark.parametrize("variant,suffix", [(None, ".avi"), ("mp4", ".mp4"), ("frames", "")])
def test_synthetic_variants(synth_root, variant, suffix):
    dataset = open_dataset("synthetic", synth_root, variant=variant)
    assert [v.name for v in dataset.test] == ["01", "02"] and len(dataset.train) == 2
    assert dataset.test[0].path.suffix == suffix
    assert dataset.test[0].is_folder == (variant == "frames")
    assert all(v.labels is not None and len(v.labels) == 20 for v in dataset.test)


# ----------------------------------------------------------------------------------------------------- errors


def test_missing_root_and_unknown_names(tmp_path, synth_root):
    with pytest.raises(VadgpuError, match=r"dataset root .*nowhere does not exist"):
        open_dataset("ped2", tmp_path / "nowhere")
    with pytest.raises(VadgpuError, match=r"--dataset 'ucf'.*ped2"):
        open_dataset("ucf", tmp_path)
    with pytest.raises(VadgpuError, match=r"--variant 'mkv'.*avi, mp4, frames"):
        open_dataset("synthetic", synth_root, variant="mkv")
    with pytest.raises(VadgpuError, match=r"not a Ped2 layout"):
        open_dataset("ped2", tmp_path)
    with pytest.raises(VadgpuError, match=r"no synthetic.json"):
        open_dataset("synthetic", tmp_path)


def test_empty_and_mixed_frame_folders(ped2_jpg):
    empty = ped2_jpg / "testing" / "frames" / "03"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    with pytest.raises(VadgpuError, match=r"frame folder .*03 holds no image files"):
        open_dataset("ped2", ped2_jpg)
    write_frames(empty, 2, ".jpg")
    write_frames(empty, 1, ".png", start=5)
    with pytest.raises(VadgpuError, match=r"03 mixes image formats"):
        open_dataset("ped2", ped2_jpg)


def test_label_reader_errors(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(VadgpuError, match=r"obj.npy is not a plain numeric"):
        L.read_npy_labels(tmp_path / "obj.npy")
    np.save(tmp_path / "two.npy", np.array([0, 2, 1]))
    with pytest.raises(VadgpuError, match=r"two.npy: values must be 0 or 1, found 2 at frame 1"):
        L.read_npy_labels(tmp_path / "two.npy")
    (tmp_path / "bad.m").write_text("TestVideoFile{end+1}.gt_frame = [3-9];\n")
    with pytest.raises(VadgpuError, match=r"bad.m line 1.*'3-9'"):
        L.read_ucsd_m_intervals(tmp_path / "bad.m")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(VadgpuError, match=r"bad.json is not valid JSON"):
        L.read_json_labels(tmp_path / "bad.json")
    (tmp_path / "bad.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(VadgpuError, match=r"bad.mat is not a MATLAB"):
        L.read_mat_intervals(tmp_path / "bad.mat")
    with pytest.raises(VadgpuError, match=r"missing.npy does not exist"):
        L.read_npy_labels(tmp_path / "missing.npy")
    with pytest.raises(VadgpuError, match=r"interval \[4, 9\] does not fit a video of 6 frames"):
        L.intervals_to_labels([(4, 9)], 6, "x.mat")
