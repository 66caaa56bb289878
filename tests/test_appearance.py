"""The appearance term: box features from a Darknet backbone in torch (equal to OpenCV DNN's), the leave-one-video-out
bank and its coreset, the calibration record in model.pt, and one detector in eval, score and live scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_darknet

from tests.cli_helpers import invoke, needs_export, read_csv
from vadgpu.errors import VadgpuError
from vadgpu.objects.appearance import BoxFeatures, network_input, network_input_size
from vadgpu.optional import available
from vadgpu.scoring.appearance import AppearanceBank, k_centre
from vadgpu.scoring.protocol import Protocol


def test_network_input_keeps_the_aspect_and_a_multiple_of_32():
    assert network_input_size((240, 360)) == (480, 320)  # Ped2: x 4/3
    assert network_input_size((360, 640)) == (576, 320)
    assert network_input_size((10, 10), short_side=32) == (32, 32)
    gray = torch.rand(2, 1, 240, 360)
    x = network_input(gray)
    assert x.shape == (2, 3, 320, 480) and torch.equal(x[:, 0], x[:, 2])  # gray: three equal channels


@pytest.fixture(scope="module")
def tiny(tiny_darknet):
    return tiny_darknet  # conftest.py's


def _opencv_features(weights, frames: np.ndarray, owner: np.ndarray, boxes: np.ndarray, pool: int = 2):
    """The same features computed the way OpenCV DNN would give them: its map of the same network input, pooled
    with roi_align (the reference the torch backbone must equal)."""
    import cv2
    from torchvision.ops import roi_align

    net = cv2.dnn.readNetFromDarknet(str(weights.with_suffix(".cfg")), str(weights))
    net.setInput(frames.astype(np.float32))
    maps = torch.from_numpy(net.forward("leaky_9"))
    height, width = frames.shape[-2:]
    rois = torch.cat([torch.from_numpy(owner).float()[:, None],
                      torch.from_numpy(boxes).float() * torch.tensor([width, height, width, height])], dim=1)
    pooled = roi_align(maps, rois, (pool, pool), spatial_scale=maps.shape[-1] / width, sampling_ratio=2,
                       aligned=True)
    return torch.nn.functional.normalize(pooled.flatten(1), dim=1).numpy()


def test_box_features_equal_opencv_dnn_and_do_not_depend_on_the_batch(tiny):
    features = BoxFeatures.from_darknet(tiny, short_side=64)
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.random((3, 3, 64, 96), dtype=np.float32))  # already the network's size
    owner = torch.tensor([0, 0, 2])
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.2, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0]])
    vectors = features(frames, owner, boxes)
    assert vectors.shape == (3, 16 * 2 * 2)
    np.testing.assert_allclose(vectors.norm(dim=1).numpy(), 1.0, rtol=1e-5)
    reference = _opencv_features(tiny, frames.numpy(), owner.numpy(), boxes.numpy())
    assert float(np.abs(vectors.numpy() - reference).max()) < 1e-4
    alone = torch.cat([features(frames[:1], owner[:2], boxes[:2]), features(frames[2:], owner[:1], boxes[2:])])
    assert torch.allclose(vectors, alone, atol=1e-5)
    assert not torch.allclose(vectors[0], vectors[1], atol=1e-3)  # a box over other pixels gives another vector


@pytest.mark.shared
def test_yolov3_tiny_features_equal_opencv_dnn(yolov3_tiny_dir):
    weights = yolov3_tiny_dir / "yolov3-tiny.weights"
    features = BoxFeatures.from_darknet(weights)
    frames = torch.rand(2, 3, 320, 480, generator=torch.Generator().manual_seed(0))
    owner, boxes = torch.tensor([0, 1, 1]), torch.tensor([[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.6, 0.9],
                                                           [0.0, 0.0, 0.2, 0.2]])
    got = features(frames, owner, boxes).numpy()
    assert float(np.abs(got - _opencv_features(weights, frames.numpy(), owner.numpy(), boxes.numpy())).max()) < 1e-4


def test_missing_files_and_layers_are_clear_errors(tmp_path):
    weights = make_tiny_darknet(tmp_path / "net")
    with pytest.raises(VadgpuError, match="no such file"):
        BoxFeatures.from_darknet(tmp_path / "absent.weights")
    with pytest.raises(VadgpuError, match="leaky_99"):
        BoxFeatures.from_darknet(weights, layer="leaky_99")
    (tmp_path / "net" / "tiny.cfg").unlink()
    with pytest.raises(VadgpuError, match=r"tiny\.cfg: no such file"):
        BoxFeatures.from_darknet(weights)


def _unit(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))


def test_bank_scores_an_unseen_look_above_a_training_look():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32))
    train = _unit(np.repeat(centres, 40, axis=0) + 0.05 * rng.normal(size=(120, 32)))
    video = torch.from_numpy(np.tile(np.arange(4), 30))  # every look appears in every training video
    bank = AppearanceBank.fit(train, video)
    seen = _unit(centres + 0.05 * rng.normal(size=(3, 32)))
    unseen = _unit(rng.normal(size=(3, 32)))
    assert bank.score(unseen).min() > bank.score(seen).max()
    # a new sample of a training look lies about as far from the bank as training boxes from other videos do
    assert abs(float(bank.score(seen).mean())) < 3


def test_bank_leaves_each_box_s_own_video_out():
    rng = np.random.default_rng(1)
    looks = rng.normal(size=(2, 16))
    # each video holds one look, 20 near-copies of it: within a video every box has a twin a frame away
    boxes = _unit(np.repeat(looks, 20, axis=0) + 1e-3 * rng.normal(size=(40, 16)))
    bank = AppearanceBank.fit(boxes, torch.from_numpy(np.repeat([0, 1], 20)))
    unit = looks / np.linalg.norm(looks, axis=1, keepdims=True)
    assert bank.mean == pytest.approx(np.log(1 - float(unit[0] @ unit[1])), abs=0.05)  # the other video only
    with pytest.raises(VadgpuError, match="at least two training videos"):
        AppearanceBank.fit(boxes, torch.zeros(40, dtype=torch.int64))


def test_the_coreset_keeps_every_look_and_a_bank_of_its_size():
    rng = np.random.default_rng(2)
    looks = rng.normal(size=(5, 24))
    features = _unit(np.repeat(looks, 200, axis=0) + 0.01 * rng.normal(size=(1000, 24)))
    picked = k_centre(features, 5)
    assert sorted(int(p) // 200 for p in picked) == [0, 1, 2, 3, 4]  # one of each look, none twice
    video = torch.from_numpy(np.tile(np.arange(4), 250))
    bank = AppearanceBank.fit(features, video, max_rows=50)
    assert len(bank.features) == 50 and bank.boxes == 1000 and bank.features.dtype == torch.float16
    full = AppearanceBank.fit(features, video)
    outsider = _unit(rng.normal(size=(4, 24)))
    assert bank.score(outsider).min() > bank.score(features[:10]).max()
    assert full.score(outsider).min() > full.score(features[:10]).max()


def test_protocol_checks_what_appearance_needs():
    from vadgpu.models.registry import model_config_from_dict

    with pytest.raises(VadgpuError, match="--tube-norm location"):
        Protocol(appearance="x.weights", tube_norm="none")
    with pytest.raises(VadgpuError, match="positive"):
        Protocol(appearance_weight=0.0)
    frames = model_config_from_dict({}, "ddl")
    with pytest.raises(VadgpuError, match="frame model"):
        Protocol(appearance="x.weights").for_model(frames)
    Protocol(appearance="none").for_model(frames)  # leaving the term out is fine for any model


@pytest.fixture(scope="module")
def calibrated(calibrated_model):
    return calibrated_model  # conftest.py's: the object run calibrated with the tiny Darknet network's features


def test_the_record_is_in_the_weights_file_and_loads_safely(calibrated, tiny):
    from vadgpu.scoring.calibration import stored_calibration

    ckpt = torch.load(calibrated, weights_only=True)
    assert "train_scores" not in ckpt  # the record supersedes the old statistics
    calibration = stored_calibration(ckpt)
    assert calibration.detector.startswith("bgsub") and calibration.window == ckpt["model_config"]["window"] > 0
    identity = calibration.appearance.features.identity()
    assert identity["name"] == "tiny.weights" and identity["layer"] == "leaky_9"
    assert calibration.appearance.bank.boxes > 0 and len(calibration.frame_scores) == 2
    # the camera's empty scene for live background subtraction: the training frames' size, gray
    assert calibration.background.dtype == np.uint8 and calibration.background.shape == (120, 160)
    # the stored backbone is the network: same features as the Darknet files give
    frames = torch.rand(2, 1, 48, 64, generator=torch.Generator().manual_seed(1))
    owner, boxes = torch.tensor([0, 1]), torch.tensor([[0.1, 0.1, 0.6, 0.7], [0.2, 0.3, 0.9, 0.8]])
    assert torch.allclose(calibration.appearance.features(frames, owner, boxes),
                          BoxFeatures.from_darknet(tiny)(frames, owner, boxes), atol=1e-6)
    broken = {**ckpt["calibration"], "format": 99}
    with pytest.raises(VadgpuError, match="calibration record"):
        stored_calibration({**ckpt, "calibration": broken})


def test_score_eval_and_live_use_the_record_and_agree(calibrated, object_run, tmp_path, monkeypatch):
    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    code, output = invoke(["eval", "--checkpoint", str(calibrated), "--no-progress", "--out", str(tmp_path / "ev")])
    assert code == 0, output
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    calibration = record["objects"]["calibration"]
    assert calibration["from"].startswith("the weights file") and "appearance z" in calibration["tube_score"]
    assert calibration["appearance"]["features"]["name"] == "tiny.weights"
    eval_rows = read_csv(tmp_path / "ev" / "scores.csv")
    for name in ("01", "02"):
        video = root / "testing" / "videos" / f"{name}.avi"
        code, output = invoke(["score", str(video), "--checkpoint", str(calibrated), "--no-progress",
                               "--out", str(tmp_path / name)])
        assert code == 0, output
        assert f"wrote {tmp_path / name / 'objects.csv'}" in output
        scored = [float(r["raw_score"]) for r in read_csv(tmp_path / name / "scores.csv")]
        offline = [float(r["raw_score"]) for r in eval_rows if r["video"] == name]
        np.testing.assert_allclose(scored, offline, rtol=1e-5, atol=1e-5)  # the same detector in both
    # the same video without the appearance term scores otherwise
    code, output = invoke(["score", str(video), "--checkpoint", str(run / "model.pt"), "--no-progress",
                           "--out", str(tmp_path / "plain")])
    assert code == 0, output
    plain = [float(r["raw_score"]) for r in read_csv(tmp_path / "plain" / "scores.csv")]
    assert not np.allclose(plain, scored, atol=1e-3)
    if available("av"):
        # live, replaying the file with the dataset's boxes, decodes as the torch loader does (FFmpeg through PyAV
        # and OpenCV; DALI's MJPEG decoder rounds its colours otherwise): the same raw scores, frame by frame
        boxes = next((base / "cache").glob("synthetic-*/boxes-bgsub-both.npz"))
        code, output = invoke(["score", str(video), "--checkpoint", str(calibrated), "--loader", "torch",
                               "--boxes", str(boxes), "--out", str(tmp_path / "torch"), "--no-progress"])
        assert code == 0, output
        code, output = invoke(["score", str(video), "--live", "--checkpoint", str(calibrated), "--boxes",
                               str(boxes), "--out", str(tmp_path / "live"), "--no-progress"])
        assert code == 0, output
        live = [float(r["raw_score"]) for r in read_csv(tmp_path / "live" / "scores.csv")]
        offline = [float(r["raw_score"]) for r in read_csv(tmp_path / "torch" / "scores.csv")]
        np.testing.assert_allclose(live, offline, atol=5e-4)  # one clip per call live, 16 offline: float32 rounding


def test_another_extractor_or_detector_than_the_record_s_is_refused(calibrated, object_run, tmp_path, monkeypatch):
    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    other = make_tiny_darknet(tmp_path / "other", seed=5)
    code, output = invoke(["eval", "--checkpoint", str(calibrated), "--appearance", str(other), "--no-progress",
                           "--out", str(tmp_path / "e")])
    assert code != 0 and "tiny.weights" in output and "calibration record" in output, output
    # the record's own network, named again, is accepted; leaving the term out scores like the plain model
    code, output = invoke(["eval", "--checkpoint", str(calibrated), "--appearance", "none", "--no-progress",
                           "--out", str(tmp_path / "none")])
    assert code == 0, output
    code, output = invoke(["eval", "--run", str(run), "--no-progress", "--out", str(tmp_path / "plain")])
    assert code == 0, output
    assert read_csv(tmp_path / "none" / "scores.csv") == read_csv(tmp_path / "plain" / "scores.csv")


def test_eval_appearance_calibrates_in_memory_when_the_record_has_none(object_run, tiny, tmp_path, monkeypatch):
    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    code, output = invoke(["eval", "--run", str(run), "--appearance", str(tiny), "--no-progress",
                           "--out", str(tmp_path / "a")])
    assert code == 0, output
    record = json.loads((tmp_path / "a" / "metrics.json").read_text())["objects"]["calibration"]
    assert record["from"].startswith("a calibration pass") and record["appearance"]["weight"] == 1.0
    with_looks = read_csv(tmp_path / "a" / "objects" / "01.csv")
    code, output = invoke(["eval", "--run", str(run), "--no-progress", "--out", str(tmp_path / "b")])
    without = read_csv(tmp_path / "b" / "objects" / "01.csv")
    assert sorted(r["raw_score"] for r in with_looks) == sorted(r["raw_score"] for r in without)
    assert sorted(r["score"] for r in with_looks) != sorted(r["score"] for r in without)


@needs_export
def test_the_exported_file_scores_like_the_weights_file(calibrated, object_run, tmp_path, monkeypatch):
    import onnxruntime

    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    onnx_file = tmp_path / "model.onnx"
    code, output = invoke(["export", "--checkpoint", str(calibrated), "--format", "onnx", "--out", str(onnx_file)])
    assert code == 0, output
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["clips", "frames"]
    assert [o.name for o in session.get_outputs()] == ["recon", "maps"]
    video = root / "testing" / "videos" / "02.avi"
    for flag, path, out in (("--checkpoint", calibrated, "pt"), ("--model", onnx_file, "onnx")):
        code, output = invoke(["score", str(video), flag, str(path), "--no-progress", "--out", str(tmp_path / out)])
        assert code == 0, output
    exported = [float(r["raw_score"]) for r in read_csv(tmp_path / "onnx" / "scores.csv")]
    weights = [float(r["raw_score"]) for r in read_csv(tmp_path / "pt" / "scores.csv")]
    np.testing.assert_allclose(exported, weights, atol=1e-4)
    from vadgpu.models.onnx_model import OnnxModel
    from vadgpu.scoring.calibration import stored_calibration

    stored = stored_calibration(torch.load(calibrated, weights_only=True)).background
    np.testing.assert_array_equal(OnnxModel(onnx_file).calibration.background, stored)  # live starts from it too


@pytest.mark.gpu
def test_the_appearance_term_runs_on_cuda_without_a_host_sync_and_equals_the_cpu(tiny):
    """Frames already on the device in, appearance z-scores out: the backbone, the roi pooling and the bank's
    distances stay on the GPU (no sync), and give the CPU's numbers."""
    from vadgpu.scoring.appearance import AppearanceTerm

    generator = torch.Generator().manual_seed(3)
    features = BoxFeatures.from_darknet(tiny, short_side=64)
    frames = torch.rand(4, 1, 48, 64, generator=generator)
    owner = torch.tensor([0, 1, 1, 3])
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.2, 0.2, 0.9, 0.9], [0.0, 0.3, 0.4, 1.0], [0.5, 0.1, 1.0, 0.5]])
    train = torch.rand(12, 1, 48, 64, generator=generator)
    train_owner = torch.arange(12).repeat_interleave(2)
    train_boxes = torch.tensor([[0.1, 0.1, 0.6, 0.7], [0.3, 0.2, 0.9, 0.8]]).repeat(12, 1)
    bank = AppearanceBank.fit(features(train, train_owner, train_boxes), train_owner % 3)
    expected = AppearanceTerm(features, bank)(frames, owner, boxes)
    cuda = torch.device("cuda")
    term = AppearanceTerm(BoxFeatures.from_darknet(tiny, short_side=64), bank).to(cuda)
    inputs = (frames.to(cuda), owner.to(cuda), boxes.to(cuda))
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        term(*inputs)  # warm-up: cuDNN's algorithm choice
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = term(*inputs)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), expected, atol=1e-3)


def test_training_with_appearance_writes_the_term_into_the_record(synth, tmp_path, monkeypatch):
    from vadgpu.scoring.calibration import stored_calibration

    root, boxes, cache = synth
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    weights = make_tiny_darknet(tmp_path / "net")
    common = ["train", "--dataset", "synthetic", "--root", str(root), "--boxes", str(boxes), "--appearance",
              str(weights), "--epochs", "1", "--max-steps", "2", "--batch-size", "2", "--device", "cpu",
              "--no-progress"]
    code, output = invoke([*common, "--preset", "ddl-tiny-cpu", "--out", str(tmp_path / "frames")])
    assert code != 0 and "frame model" in output and not (tmp_path / "frames").exists()  # refused before work
    code, output = invoke([*common, "--preset", "ddl-objects-cpu", "--appearance-weight", "0.5",
                           "--out", str(tmp_path / "objects")])
    assert code == 0, output
    calibration = stored_calibration(torch.load(tmp_path / "objects" / "model.pt", weights_only=True))
    assert calibration.appearance.weight == 0.5 and calibration.appearance.features.identity()["name"] == "tiny.weights"
