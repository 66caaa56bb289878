"""Object boxes and patch bank: detectors, IoU tracker, box cache, device-side sampling, patch sources."""

from __future__ import annotations

import inspect
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vadgpu.errors import VadgpuError
from vadgpu.objects import (
    BackgroundSubtractionDetector,
    DarknetDetector,
    Detections,
    IoUTracker,
    ObjectBoxes,
    UltralyticsDetector,
    build_box_cache,
    iou_matrix,
    load_patch_bank,
    read_box_cache,
    track_video,
)
from vadgpu.data.types import PreparedVideo, Video
from vadgpu.objects.detectors import Detector
from vadgpu.objects.frames import FrameSource

W, H, FRAMES, SQUARE = 64, 48, 30, 10


def square_box(t: int) -> tuple[int, int, int, int]:
    """Ground truth of the moving square in frame t: x1, y1, x2, y2 (pixels, exclusive end)."""
    x = 4 + int(1.5 * t)
    return x, 18, x + SQUARE, 18 + SQUARE


def square_video() -> list[np.ndarray]:
    """(H, W, 3) BGR frames: a textured static background and a bright square moving right."""
    rng = np.random.default_rng(0)
    background = (60 + 40 * rng.random((H, W))).astype(np.uint8)
    frames = []
    for t in range(FRAMES):
        frame = background.copy()
        x1, y1, x2, y2 = square_box(t)
        frame[y1:y2, x1:x2] = 230
        frames.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    return frames


def write_folder(frames: list[np.ndarray], folder: Path) -> Video:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)  # lossless: boxes must come out exact
    return Video(folder.name, folder, tuple(sorted(folder.glob("*.png"))))


def write_avi(frames: list[np.ndarray], path: Path) -> Video:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
        stream.options = {"q:v": "2"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
        out.mux(stream.encode())
    return Video(path.stem, path)


def prepared(video: Video, frames: int) -> PreparedVideo:
    return PreparedVideo(video, video.path, frames, 10.0, W, H, "png")


# ---------------------------------------------------------------------------------------------------- tracking


def test_iou_matrix_hand_computed():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])


def test_iou_tracker_keeps_ids_through_motion_misses_and_crossing():
    tracker = IoUTracker(iou_threshold=0.3, max_age=1)
    left, right = np.array([0, 0, 10, 10.0]), np.array([30, 0, 40, 10.0])
    ids0 = tracker.update(np.stack([left, right]))
    assert list(ids0) == [0, 1]
    # Both move 2 px; detections come in the other order: matching is by overlap, not by position in the list.
    ids1 = tracker.update(np.stack([right + [2, 0, 2, 0], left + [2, 0, 2, 0]]))
    assert list(ids1) == [1, 0]
    # `left` is missed for one frame (max_age=1 keeps it), a new object appears far away.
    ids2 = tracker.update(np.stack([right + [4, 0, 4, 0], [60, 40, 70, 50]]))
    assert list(ids2) == [1, 2]
    ids3 = tracker.update(np.stack([left + [6, 0, 6, 0]]))
    assert list(ids3) == [0]
    # Greedy would give the first track its best match and leave the second unmatched; Hungarian finds both.
    tracker = IoUTracker(iou_threshold=0.2, max_age=0)
    tracker.update(np.array([[0, 0, 10, 10], [6, 0, 16, 10.0]]))
    ids = tracker.update(np.array([[3, 0, 13, 10], [9, 0, 19, 10.0]]))
    assert list(ids) == [0, 1]
    # After max_age frames without a detection the track is closed; the same place gets a new id.
    tracker.update(np.zeros((0, 4)))
    assert tracker.update(np.array([[3, 0, 13, 10.0]]))[0] == 2


# ---------------------------------------------------------------------------------------------------- detectors


def test_bgsub_finds_moving_square_in_folder_and_video_file(tmp_path):
    frames = square_video()
    for video in (write_folder(frames, tmp_path / "sq"), write_avi(frames, tmp_path / "sq.avi")):
        source = FrameSource(video)
        assert (source.num_frames, source.width, source.height) == (FRAMES, W, H)
        dets = track_video(BackgroundSubtractionDetector(min_area=0.01), source, chunk=7)
        assert len(dets) == FRAMES
        for t, det in enumerate(dets):
            assert len(det) == 1, f"{video.path} frame {t}: {det.boxes}"
            truth = np.array(square_box(t))
            assert iou_matrix(det.boxes, truth[None])[0, 0] > 0.6  # the blur widens the box by about a pixel
            assert (det.boxes[0, :2] <= truth[:2]).all() and (det.boxes[0, 2:] >= truth[2:]).all()
        assert {int(d.tracks[0]) for d in dets} == {0}  # one object, one track through the video


@pytest.mark.shared
def test_darknet_finds_pedestrians_on_ped2(ped2_root, yolov3_tiny_dir):
    folder = ped2_root / "training" / "frames" / "01"
    frames = [cv2.imread(str(folder / f"{i:03d}.jpg")) for i in (0, 50, 110)]
    d = yolov3_tiny_dir
    detector = DarknetDetector(d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights", d / "coco.names")
    dets = detector.detect(frames)
    assert len(dets) == 3
    for det in dets:
        persons = det.classes == detector.class_names.index("person")
        assert persons.sum() >= 3  # Ped2's walkway always holds several pedestrians
        assert (det.boxes[:, [0, 2]] <= 360).all() and (det.boxes[:, [1, 3]] <= 240).all() and (det.boxes >= 0).all()
        assert (det.boxes[:, 2:] > det.boxes[:, :2]).all() and (det.scores >= detector.conf).all()
    with pytest.raises(VadgpuError, match="--classes: zebra-crossing"):
        DarknetDetector(d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights", d / "coco.names", classes=["zebra-crossing"])


def test_missing_weights_are_a_clear_error_before_ultralytics_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # any import of ultralytics would now fail
    with pytest.raises(VadgpuError, match=r"--weights .*nope\.pt: no such file"):
        UltralyticsDetector(tmp_path / "nope.pt")
    cfg = tmp_path / "x.cfg"
    cfg.write_text("[net]\n")
    with pytest.raises(VadgpuError, match=r"--weights .*nope\.weights: no such file"):
        DarknetDetector(cfg, tmp_path / "nope.weights", tmp_path / "coco.names")
    from click.testing import CliRunner

    from vadgpu.cli.main import cli

    result = CliRunner().invoke(cli, ["data", "boxes", "--dataset", "ped2", "--root", str(tmp_path),
                                      "--detector", "ultralytics", "--weights", str(tmp_path / "y.pt")])
    assert result.exit_code == 1 and "y.pt: no such file" in result.output
    result = CliRunner().invoke(cli, ["data", "boxes", "--dataset", "ped2", "--root", str(tmp_path),
                                      "--detector", "bgsub", "--weights", str(tmp_path / "y.pt")])
    assert result.exit_code == 1 and "--detector bgsub takes no --weights" in result.output


def test_ultralytics_detector_runs_offline_with_weights_from_yaml(tmp_path):
    from ultralytics import YOLO

    weights = tmp_path / "yolov8n-random.pt"
    YOLO("yolov8n.yaml").save(weights)  # an untrained model: built from the yaml, nothing downloaded
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(VadgpuError, match="garbage.pt: ultralytics cannot load it"):
        UltralyticsDetector(garbage)
    detector = UltralyticsDetector(weights, imgsz=64)
    frames = square_video()[:3]
    dets = detector.detect(frames)
    assert len(dets) == 3 and all(d.boxes.shape[1] == 4 and d.tracks is None for d in dets)
    source = FrameSource(write_folder(frames, tmp_path / "v"))
    tracked = track_video(detector, source)
    assert len(tracked) == 3 and all(d.tracks is not None and len(d.tracks) == len(d) for d in tracked)


# ---------------------------------------------------------------------------------------------------- box cache


class ScriptedDetector(Detector):
    """Returns pre-set boxes per frame of each video (in the order the videos are visited)."""

    name = "scripted"
    class_names = ("thing",)

    def __init__(self, script: list[dict[int, list[tuple]]]) -> None:
        self.script, self.video, self.frame = script, -1, 0

    def begin_video(self, source) -> None:
        self.video, self.frame = self.video + 1, 0

    def detect(self, frames):
        out = []
        for _ in frames:
            boxes = self.script[self.video].get(self.frame, [])
            self.frame += 1
            if not boxes:
                out.append(Detections.empty())
                continue
            out.append(Detections(np.array(boxes, np.float32), np.full(len(boxes), 0.9, np.float32),
                                  np.zeros(len(boxes), np.int64)))
        return out


def scripted_cache(tmp_path: Path) -> tuple[Path, list[PreparedVideo]]:
    """Two 30-frame videos. Video a: object A in every frame; object B in frames 5-14 except 9 (one missed frame);
    object C in frames 20-22 (too short for T=5). Video b: nothing in frames 0-9, object D in 10-29."""
    blank = [np.zeros((H, W, 3), np.uint8)] * FRAMES
    va, vb = write_folder(blank, tmp_path / "a"), write_folder(blank, tmp_path / "b")
    a: dict[int, list[tuple]] = {t: [(2 + t * 0.5, 2, 12 + t * 0.5, 12)] for t in range(FRAMES)}
    for t in range(5, 15):
        if t != 9:
            a[t].append((40, 30, 50 + (t - 5), 46))
    for t in range(20, 23):
        a[t].append((30, 2, 36, 8))
    b = {t: [(20, 20, 30, 30 + t * 0.2)] for t in range(10, FRAMES)}
    out = tmp_path / "cache" / "boxes.npz"
    summary = build_box_cache({"train": [va, vb]}, ScriptedDetector([a, b]), out, dataset="scripted", progress=False)
    assert (summary.boxes, summary.tracks, summary.frames) == (30 + 9 + 3 + 20, 4, 60)
    return out, [prepared(va, FRAMES), prepared(vb, FRAMES)]


def test_box_cache_round_trip(tmp_path):
    path, videos = scripted_cache(tmp_path)
    arrays = read_box_cache(path)  # np.load(allow_pickle=False) inside
    assert list(arrays["video_names"]) == ["a", "b"] and list(arrays["video_frames"]) == [FRAMES, FRAMES]
    assert str(arrays["dataset"]) == "scripted" and list(arrays["class_names"]) == ["thing"]
    for key in ("x1", "y1", "x2", "y2"):
        assert arrays[key].dtype == np.float32 and arrays[key].min() >= 0 and arrays[key].max() <= 1
    first = (arrays["video"] == 0) & (arrays["frame"] == 0)
    np.testing.assert_allclose(arrays["x1"][first], [2 / W])
    np.testing.assert_allclose(arrays["y2"][first], [12 / H])
    assert not list(tmp_path.glob("cache/.*.tmp"))  # the atomic write left no temporary file

    with pytest.raises(VadgpuError, match="no boxes for video.* zz"):
        ObjectBoxes.load(path, [prepared(Video("zz", tmp_path / "zz"), FRAMES)], "cpu", temporal=5)
    with pytest.raises(VadgpuError, match="video a had 30 frames at detection.* 31"):
        ObjectBoxes.load(path, [prepared(videos[0].video, FRAMES + 1)], "cpu", temporal=5)
    with pytest.raises(VadgpuError, match="split test"):
        ObjectBoxes.load(path, videos, "cpu", temporal=5, split="test")
    bad = tmp_path / "bad.npz"
    np.savez(bad, video=np.zeros(1))
    with pytest.raises(VadgpuError, match="not a vadgpu box cache"):
        ObjectBoxes.load(bad, videos, "cpu", temporal=5)


def test_sample_picks_one_track_present_in_all_clip_frames(tmp_path):
    path, videos = scripted_cache(tmp_path)
    T = 5
    boxes_table = ObjectBoxes.load(path, videos, "cpu", temporal=T)
    arrays = read_box_cache(path)
    rows = {}  # (video, frame) -> list of (track, box)
    for i in range(len(arrays["score"])):
        key = (int(arrays["video"][i]), int(arrays["frame"][i]))
        box = [arrays[k][i] for k in ("x1", "y1", "x2", "y2")]
        rows.setdefault(key, []).append((int(arrays["track"][i]), np.array(box)))

    video = torch.arange(2).repeat_interleave(FRAMES).repeat(8)  # (480,) every centre of both videos, 8 times
    frame = torch.arange(FRAMES).repeat(2).repeat(8)
    gen = torch.Generator().manual_seed(3)
    boxes, valid = boxes_table.sample(video, frame, gen)
    assert boxes.shape == (len(video), T, 4) and boxes.dtype == torch.float32 and valid.dtype == torch.bool
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[~valid] == 0).all()
    picked_b = 0
    for v, c, bx, ok in zip(video.tolist(), frame.tolist(), boxes.numpy(), valid.tolist()):
        full_clip = T // 2 <= c <= FRAMES - 1 - T // 2
        expect_valid = full_clip and (v == 0 or c - T // 2 >= 10)
        assert ok == expect_valid, (v, c)
        if not ok:
            continue
        # One track whose box in every frame of the clip is the sampled one (frame 9 of B is interpolated).
        start = c - T // 2
        tracks = [{tr for tr, b in rows.get((v, start + t), []) if np.allclose(b, bx[t], atol=1e-6)}
                  for t in range(T)]
        if v == 0 and start <= 9 < start + T and not tracks[9 - start]:
            prev = dict(rows[(0, 8)])
            nxt = dict(rows[(0, 10)])
            b_track = next(tr for tr in prev if tr in nxt and prev[tr][0] > 0.6)
            np.testing.assert_allclose(bx[9 - start], (prev[b_track] + nxt[b_track]) / 2, atol=1e-6)
            tracks[9 - start] = {b_track}
            picked_b += 1
        assert set.intersection(*tracks), (v, c, bx)
    assert picked_b > 0  # the track with a missed frame was sampled across its gap

    again, _ = boxes_table.sample(video, frame, torch.Generator().manual_seed(3))
    other, _ = boxes_table.sample(video, frame, torch.Generator().manual_seed(4))
    assert torch.equal(boxes, again) and not torch.equal(boxes, other)
    assert boxes_table.info["segments"] == 3 and boxes_table.info["max_candidates"] == 2
    assert boxes_table.coverage == pytest.approx((26 + 16) / 52)


def test_sample_makes_no_host_sync(tmp_path, monkeypatch):
    source = inspect.getsource(ObjectBoxes.sample)
    for call in (".item(", ".cpu(", ".tolist(", ".numpy(", "int(", "float(", "bool("):
        assert call not in source
    path, videos = scripted_cache(tmp_path)
    table = ObjectBoxes.load(path, videos, "cpu", temporal=5)

    def refuse(*args, **kwargs):
        raise AssertionError("sample() moved a tensor value to the host")

    video, frame, gen = torch.tensor([0, 1, 1]), torch.tensor([12, 3, 20]), torch.Generator().manual_seed(0)
    for name in ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    boxes, valid = table.sample(video, frame, gen)
    monkeypatch.undo()
    assert valid.tolist() == [True, False, True] and boxes.shape == (3, 5, 4)


@pytest.mark.gpu
def test_sample_on_cuda_without_sync(tmp_path):
    path, videos = scripted_cache(tmp_path)
    table = ObjectBoxes.load(path, videos, "cuda", temporal=5)
    cpu_table = ObjectBoxes.load(path, videos, "cpu", temporal=5)
    video = torch.tensor([0, 0, 1, 1], device="cuda")
    frame = torch.tensor([2, 12, 3, 20], device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        boxes, valid = table.sample(video, frame, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert boxes.device.type == "cuda" and valid.tolist() == [True, True, False, True]
    _, cpu_valid = cpu_table.sample(video.cpu(), frame.cpu(), torch.Generator().manual_seed(0))
    assert torch.equal(valid.cpu(), cpu_valid)


def test_boxes_command_on_synthetic_dataset_feeds_object_boxes(tmp_path):
    from click.testing import CliRunner

    from vadgpu.cli.main import cli
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", train_videos=2, test_videos=1, frames=24, frame_size=(64, 96),
                                  formats=("avi",))
    cache = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["data", "boxes", "--dataset", "synthetic", "--root", str(root), "--detector",
                                      "bgsub", "--cache", str(cache), "--no-progress"])
    assert result.exit_code == 0, result.output
    written = list(cache.glob("synthetic-*/boxes-bgsub-train.npz"))
    assert len(written) == 1 and "boxes in" in result.output and "48 frames of 2 videos" in result.output
    prepared = load_prepared(open_dataset("synthetic", root), "cpu", cache=cache, progress=False)
    table = ObjectBoxes.load(written[0], prepared.train, "cpu", temporal=3)
    assert table.info["boxes"] > 24 and table.coverage > 0.5  # walkers are in view in most frames
    boxes, valid = table.sample(torch.zeros(24, dtype=torch.int64), torch.arange(24), torch.Generator())
    assert valid[1:23].float().mean() > 0.5 and not valid[0] and not valid[23]


# ---------------------------------------------------------------------------------------------------- patch bank


def test_patch_bank_from_image_folder(tmp_path):
    folder = tmp_path / "imgs" / "nested"
    folder.mkdir(parents=True)
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 2] = 255  # BGR on disk
    cv2.imwrite(str(folder / "red.png"), red)
    cv2.imwrite(str(folder / "grey.jpg"), np.full((64, 40, 3), 128, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    bank = load_patch_bank(tmp_path / "imgs", channels=3, size=(8, 6))
    assert bank.shape == (2, 3, 8, 6) and bank.dtype == torch.float32
    assert torch.allclose(bank[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # red.png sorts after grey.jpg; RGB
    assert torch.allclose(bank[0], torch.full_like(bank[0], 128 / 255), atol=2 / 255)
    gray = load_patch_bank(tmp_path / "imgs", channels=1, size=(8, 6), max_patches=1)
    assert gray.shape == (1, 1, 8, 6)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(VadgpuError, match="cannot read .*broken.png"):
        load_patch_bank(tmp_path / "imgs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VadgpuError, match="no images"):
        load_patch_bank(tmp_path / "empty")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_patch_bank_from_cifar_pickle(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    path = tmp_path / "train"
    with open(path, "wb") as fh:  # the layout of cifar-100-python/train
        pickle.dump({b"data": data, b"fine_labels": list(range(6)), b"filenames": [b"x.png"] * 6}, fh, protocol=2)
    bank = load_patch_bank(path, channels=3, size=(32, 32))
    assert bank.shape == (6, 3, 32, 32)
    expected = torch.from_numpy(data.reshape(6, 3, 32, 32).astype(np.float32) / 255)  # R plane, G plane, B plane
    assert torch.allclose(bank, expected)
    assert load_patch_bank(path, channels=1, size=(16, 16), max_patches=4).shape == (4, 1, 16, 16)
    evil = tmp_path / "evil"
    evil.write_bytes(pickle.dumps({b"data": _Evil()}))
    with pytest.raises(VadgpuError, match="refusing global builtins.print"):
        load_patch_bank(evil)
    with pytest.raises(VadgpuError, match="no such file or folder"):
        load_patch_bank(tmp_path / "missing")


def test_procedural_patch_bank_is_deterministic_and_varied():
    bank = load_patch_bank(None, channels=3, size=(24, 24), max_patches=16, seed=1)
    assert bank.shape == (16, 3, 24, 24) and bank.min() >= 0 and bank.max() <= 1
    assert torch.equal(bank, load_patch_bank(None, channels=3, size=(24, 24), max_patches=16, seed=1))
    assert not torch.equal(bank, load_patch_bank(None, channels=3, size=(24, 24), max_patches=16, seed=2))
    spread = bank.flatten(1).std(dim=1)  # every patch has structure, not a flat colour
    assert (spread > 0.02).all()
    assert len({tuple(p.flatten()[:50].tolist()) for p in bank}) == 16
    assert load_patch_bank(None, channels=1, size=(8, 12), max_patches=5).shape == (5, 1, 8, 12)
    with pytest.raises(VadgpuError, match="channels 2"):
        load_patch_bank(None, channels=2)


@pytest.mark.gpu
def test_patch_bank_on_cuda():
    bank = load_patch_bank(None, channels=1, size=(16, 16), device="cuda", max_patches=8)
    assert bank.device.type == "cuda"
    assert torch.equal(bank.cpu(), load_patch_bank(None, channels=1, size=(16, 16), device="cpu", max_patches=8))
