"""The weights shipped with vadgpu (vadgpu/weights): load by name, safely, and score a new video with no training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.cli_helpers import invoke, read_csv
from vadgpu.checkpoint import load_checkpoint
from vadgpu.errors import VadgpuError
from vadgpu.scoring.calibration import stored_calibration
from vadgpu.weights import SHIPPED, metrics_file, scores_file, shipped_weights


RECORDED = {"ped2-ddl": (98.30, 98.70)}  # micro, macro AUC of its Ped2 evaluation, as docs/scoring.md gives them


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_load_by_name_with_their_record(name):
    path = shipped_weights(name)
    assert path is not None and path.stat().st_size < 20 * 2**20  # weights and the calibration record
    ckpt = load_checkpoint(name)  # weights_only=True inside
    assert ckpt["model_config"]["clips"] == "objects"
    calibration = stored_calibration(ckpt)
    assert calibration.appearance is not None and calibration.detector.startswith("bgsub")
    assert calibration.appearance.features.identity()["layer"] == "leaky_9"
    assert all(ckpt["config"][k] is None for k in ("root", "boxes", "out"))  # no path of the machine it came from
    record = json.loads(metrics_file(name).read_text())
    assert record["dataset"]["name"] == "ped2" and record["checkpoint"]["path"] == name
    assert record["objects"]["calibration"]["tube_score"] == calibration.terms()
    # the record is of these very weights, and holds the numbers the docs give for them
    assert (record["checkpoint"]["epoch"], record["checkpoint"]["step"]) == (ckpt["epoch"], ckpt["step"])
    assert record["checkpoint"]["model_name"] == ckpt["model_name"]
    assert (round(100 * record["metrics"]["micro_auc"], 2), round(100 * record["metrics"]["macro_auc"], 2)) == \
        RECORDED[name]
    # the recorded AUC is the one its scores give
    rows = read_csv(scores_file(name))
    labels = np.array([int(r["label"]) for r in rows])
    assert roc_auc_score(labels, [float(r["score"]) for r in rows]) == pytest.approx(record["metrics"]["micro_auc"],
                                                                                      abs=1e-12)


@pytest.mark.shared
@pytest.mark.slow
def test_score_gives_the_evaluation_s_raw_scores_on_every_ped2_test_video(ped2_root, tmp_path, monkeypatch):
    """`vadgpu score` of each Ped2 test video with the shipped weights, no other option: the raw frame scores of
    `vadgpu eval` of the same file (ped2-ddl.scores.csv), and video 06 (a cyclist) ranked as the evaluation ranks it."""
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    evaluated = read_csv(scores_file("ped2-ddl"))
    for name in sorted({r["video"] for r in evaluated}):
        out = tmp_path / name
        code, output = invoke(["score", str(ped2_root / "testing" / "frames" / name), "--checkpoint", "ped2-ddl",
                               "--out", str(out), "--no-progress"])
        assert code == 0, output
        scored = read_csv(out / "scores.csv")
        mine = [r for r in evaluated if r["video"] == name]
        np.testing.assert_allclose([float(r["raw_score"]) for r in scored], [float(r["raw_score"]) for r in mine],
                                   rtol=1e-5, atol=1e-5)
        if name == "06":
            labels = [int(r["label"]) for r in mine]
            assert roc_auc_score(labels, [float(r["score"]) for r in scored]) >= 0.99


def test_an_unknown_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(VadgpuError, match="ped2-ddl"):
        load_checkpoint(tmp_path / "no-such.pt")


def test_ped2_ddl_scores_new_videos_right_away(tmp_path, monkeypatch):
    """Trained on Ped2 only, the shipped model ranks the anomalous frames of synthetic test videos (another scene,
    another camera, four kinds of anomaly) above their normal ones, video by video, with no training."""
    from vadgpu.data.synth import make_synthetic_dataset

    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    root = make_synthetic_dataset(tmp_path / "synth", seed=0, train_videos=1, test_videos=4, frames=80,
                                  formats=("frames",))
    aucs = []
    for name in ("01", "02", "03", "04"):
        code, output = invoke(["score", str(root / "testing" / "frames" / name), "--checkpoint", "ped2-ddl",
                               "--out", str(tmp_path / name), "--no-progress"])
        assert code == 0, output
        scores = [float(r["score"]) for r in read_csv(tmp_path / name / "scores.csv")]
        labels = np.load(root / "testing" / "labels" / f"{name}.npy")
        assert 0 < labels.sum() < labels.size
        aucs.append(roc_auc_score(labels, scores))
    assert min(aucs) > 0.55 and np.mean(aucs) > 0.7, aucs  # measured 0.58, 0.85, 1.00, 0.71


@pytest.mark.shared
@pytest.mark.slow
def test_the_exported_shipped_model_scores_a_ped2_video_like_the_weights(ped2_root, tmp_path, monkeypatch):
    """`vadgpu export` of ped2-ddl carries the whole detector (network, appearance backbone, calibration record):
    scoring a Ped2 test video from the ONNX file alone gives the weights file's raw scores within 1e-4."""
    pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    onnx_file = tmp_path / "ped2-ddl.onnx"
    code, output = invoke(["export", "--checkpoint", "ped2-ddl", "--format", "onnx", "--out", str(onnx_file)])
    assert code == 0, output
    frames = ped2_root / "testing" / "frames" / "06"
    code, output = invoke(["score", str(frames), "--model", str(onnx_file), "--out", str(tmp_path / "onnx"),
                           "--no-progress"])
    assert code == 0, output
    exported = [float(r["raw_score"]) for r in read_csv(tmp_path / "onnx" / "scores.csv")]
    evaluated = [float(r["raw_score"]) for r in read_csv(scores_file("ped2-ddl")) if r["video"] == "06"]
    np.testing.assert_allclose(exported, evaluated, atol=1e-4)


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.av
def test_live_scoring_of_a_ped2_video_gives_the_scores_of_vadgpu_score(ped2_root, tmp_path, monkeypatch):
    """Ped2 test video 06 scored by `vadgpu score` (its frame folder) and live (the same pixels as a lossless FFV1
    file, replayed with the boxes the offline scoring found): frame by frame the same raw scores, appearance term
    included; only the smoothing (trailing, live) differs."""
    import av
    import cv2

    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    folder = ped2_root / "testing" / "frames" / "06"
    code, output = invoke(["score", str(folder), "--checkpoint", "ped2-ddl", "--out", str(tmp_path / "folder"),
                           "--no-progress"])
    assert code == 0, output
    frames = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(folder.glob("*.jpg"))]
    video = tmp_path / "06.mkv"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.height, stream.width = frames[0].shape
        stream.pix_fmt = "gray"
        for gray in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(gray, format="gray")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    boxes = next((tmp_path / "cache").glob("input-*/boxes-bgsub-both.npz"))  # the folder's, a video named 06
    code, output = invoke(["score", str(video), "--live", "--checkpoint", "ped2-ddl", "--boxes", str(boxes),
                           "--out", str(tmp_path / "live"), "--no-progress"])
    assert code == 0, output
    offline = [float(r["raw_score"]) for r in read_csv(tmp_path / "folder" / "scores.csv")]
    live = [float(r["raw_score"]) for r in read_csv(tmp_path / "live" / "scores.csv")]
    assert len(live) == len(offline) == len(frames)
    np.testing.assert_allclose(live, offline, atol=5e-4)  # one clip per call live, 16 offline: float32 rounding
