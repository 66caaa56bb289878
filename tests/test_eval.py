"""`vadgpu eval` and `vadgpu score` end to end: a tiny synthetic dataset (real files, real codecs), an untrained
tiny model saved with save_checkpoint, the real catalog / prepare / loader; plus Ped2 label alignment."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli_helpers import invoke, read_csv

from vadgpu.checkpoint import save_checkpoint
from vadgpu.data.catalog import open_dataset
from vadgpu.data.prepare import load_prepared
from vadgpu.data.synth import make_synthetic_dataset
from vadgpu.data.types import PreparedVideo, Video
from vadgpu.errors import VadgpuError
from vadgpu.evaluation.metrics import roc_auc
from vadgpu.scoring.protocol import Protocol
from vadgpu.evaluation.report import write_scores_csv
from vadgpu.evaluation.runner import _apply, evaluate
from vadgpu.scoring.run import place as _place
from vadgpu.models.registry import build_model
from vadgpu.optional import available

FRAMES = 24
# every format where PyAV can write videos; jpg frame folders alone where it cannot (the CUDA test reads those)
FORMATS = ("avi", "mp4", "frames") if available("av") else ("frames",)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A synthetic dataset (2 train, 2 test videos of 24 frames, 64x48) and a run folder with an untrained model."""
    base = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VADGPU_CACHE", str(base / "cache"))  # prepare's transcodes and manifests stay in tmp
        root = make_synthetic_dataset(base / "synth", seed=1, train_videos=2, test_videos=2, frames=FRAMES,
                                      frame_size=(48, 64), formats=FORMATS)
        torch.manual_seed(0)
        model = build_model("ddl-tiny-cpu")
        run = base / "run"
        state = {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(), "model": model.state_dict(),
                 "epoch": 3, "step": 42, "config": {"dataset": "synthetic", "root": str(root), "variant": "avi"}}
        save_checkpoint(run / "checkpoints" / "last.pt", state)
        yield {"root": root, "run": run, "base": base, "state": state, "temporal": model.config.temporal}


def _check_png(path, min_size=(200, 150)):
    from PIL import Image

    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= min_size[0] and img.size[1] >= min_size[1]


def test_eval_run_writes_metrics_scores_and_plots(setup):
    code, output = invoke(["eval", "--run", str(setup["run"]), "--device", "cpu", "--no-progress"])
    assert code == 0, output
    for line in ("micro AUC", "macro AUC", "EER", "AP", "01", "02"):
        assert line in output
    out = setup["run"] / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["score"] == "patch-max" and metrics["protocol"]["norm"] == "video"
    assert metrics["protocol"]["smooth"] == "median" and metrics["protocol"]["window"] == 17
    assert metrics["protocol"]["drop_edges"] is False and metrics["protocol"]["dropped_frames_total"] == 0
    assert metrics["checkpoint"]["epoch"] == 3 and metrics["checkpoint"]["step"] == 42
    assert metrics["checkpoint"]["path"].endswith("checkpoints/last.pt")
    assert metrics["dataset"]["name"] == "synthetic" and metrics["dataset"]["variant"] == "avi"
    assert metrics["dataset"]["label_source"].endswith("testing/labels")
    assert [v["frames"] for v in metrics["videos"]] == [FRAMES, FRAMES]
    assert metrics["totals"]["scored_frames"] == 2 * FRAMES

    # Alignment: every test frame exactly once, in video then frame order, with the catalog's label.
    dataset = open_dataset("synthetic", setup["root"], variant="avi")
    rows = read_csv(out / "scores.csv")
    expected = [(v.name, f, int(v.labels[f])) for v in dataset.test for f in range(FRAMES)]
    assert [(r["video"], int(r["frame"]), int(r["label"])) for r in rows] == expected
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    assert 0 < labels.sum() < labels.size
    assert scores.min() == 0.0 and scores.max() == 1.0  # min-max per video
    assert metrics["metrics"]["micro_auc"] == pytest.approx(roc_auc(labels, scores), abs=1e-6)
    for name in ("01", "02"):
        _check_png(out / "curves" / f"{name}.png")
    _check_png(out / "roc.png")


def test_eval_options_are_applied_and_recorded(setup):
    out = setup["base"] / "eval-options"
    ckpt = setup["run"] / "checkpoints" / "last.pt"
    code, output = invoke(["eval", "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu", "--no-progress",
                            "--score", "psnr", "--norm", "train", "--smooth", "gaussian", "--sigma", "2",
                            "--drop-edges", "--batch-size", "5", "--variant", "frames"])
    assert code == 0, output
    metrics = json.loads((out / "metrics.json").read_text())
    half = setup["temporal"] // 2
    protocol = metrics["protocol"]
    assert (protocol["score"], protocol["norm"], protocol["smooth"], protocol["sigma"]) == ("psnr", "train",
                                                                                         "gaussian", 2.0)
    assert protocol["drop_edges"] and protocol["dropped_frames_per_video_end"] == half >= 1
    assert protocol["train_stats"]["frames"] == 2 * (FRAMES - 2 * half) and protocol["train_stats"]["std"] > 0
    assert metrics["dataset"]["variant"] == "frames"  # --variant overrides the checkpoint's "avi"
    rows = read_csv(out / "scores.csv")
    assert [int(r["frame"]) for r in rows if r["video"] == "01"] == list(range(half, FRAMES - half))
    assert metrics["totals"]["scored_frames"] == 2 * (FRAMES - 2 * half)
    # Raw scores do not depend on the batch size (5 above, 16 here) nor on the normalisation.
    again = evaluate(ckpt, variant="frames", protocol=Protocol(score="psnr", norm="none", drop_edges=True),
                     device="cpu", out=setup["base"] / "eval-api", progress=False, batch_size=16)
    raw = np.concatenate([v.raw for v in again.videos])
    np.testing.assert_allclose(raw, [float(r["raw_score"]) for r in rows], rtol=1e-6)


def test_eval_errors_name_the_problem(setup, tmp_path):
    ckpt = setup["run"] / "checkpoints" / "last.pt"
    code, output = invoke(["eval", "--run", str(setup["run"]), "--checkpoint", str(ckpt)])
    assert code == 1 and "exactly one of --run DIR and --checkpoint FILE" in output
    code, output = invoke(["eval", "--run", str(tmp_path)])
    assert code == 1 and "has no checkpoints/last.pt" in output
    code, output = invoke(["eval", "--run", str(setup["run"]), "--window", "4"])
    assert code == 1 and "--window 4" in output
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, {**setup["state"], "config": {}})
    code, output = invoke(["eval", "--checkpoint", str(bare), "--device", "cpu"])
    assert code == 1 and "records no dataset/root" in output and str(bare) in output
    data = tmp_path / "data"  # an empty folder, no dataset (the run folder itself would be refused: eval/ is in it)
    data.mkdir()
    code, output = invoke(["eval", "--checkpoint", str(bare), "--dataset", "synthetic", "--root", str(data)])
    assert code == 1 and str(data) in output and "synthetic" in output


def test_score_h264_video_with_heatmap(setup, tmp_path):
    import av

    source = setup["root"] / "testing" / "videos_h264" / "01.mp4"  # H.264: prepare transcodes it for DALI's CPU
    before = source.read_bytes()
    out = tmp_path / "scored"
    code, output = invoke(["score", str(source), "--checkpoint", str(setup["run"] / "checkpoints" / "last.pt"),
                            "--out", str(out), "--heatmap-mp4", "--device", "cpu", "--no-progress"])
    assert code == 0, output
    assert source.read_bytes() == before  # the source is never modified
    rows = read_csv(out / "scores.csv")
    assert list(rows[0]) == ["video", "frame", "raw_score", "score"]  # unlabelled: no label column
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    _check_png(out / "01.png")
    with av.open(str(out / "01-heatmap.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == FRAMES and min(frames[0].shape[:2]) >= 240 and frames[0].std() > 0


def test_score_frame_folder_and_bad_inputs(setup, tmp_path):
    ckpt = str(setup["run"] / "checkpoints" / "last.pt")
    folder = setup["root"] / "testing" / "frames" / "02"
    code, output = invoke(["score", str(folder), "--checkpoint", ckpt, "--out", str(tmp_path / "f"),
                            "--device", "cpu", "--no-progress", "--smooth", "none", "--norm", "none"])
    assert code == 0, output
    rows = read_csv(tmp_path / "f" / "scores.csv")
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    assert all(r["raw_score"] == r["score"] for r in rows)  # no smoothing, no normalisation
    fake = tmp_path / "notes.avi"
    fake.write_text("not a video")
    code, output = invoke(["score", str(fake), "--checkpoint", ckpt, "--out", str(tmp_path / "x"), "--device",
                            "cpu"])
    assert code == 1 and str(fake) in output
    code, output = invoke(["score", str(folder), "--checkpoint", ckpt, "--norm", "train", "--out",
                            str(tmp_path / "t"), "--device", "cpu", "--no-progress"])
    assert code == 1 and "--norm train" in output and "no training scores" in output  # this file has none


def _video(name: str, frames: int) -> PreparedVideo:
    from pathlib import Path

    return PreparedVideo(Video(name, Path(f"/data/{name}.avi")), Path(f"/data/{name}.avi"), frames, 25.0, 64, 48,
                         "mjpeg")


def test_scores_are_placed_by_video_and_frame_whatever_the_batch_order():
    videos = [_video("a", 3), _video("b", 2)]
    video = torch.tensor([1, 0, 0, 1, 0])
    frame = torch.tensor([1, 2, 0, 0, 1])
    scores = torch.tensor([11.0, 2.0, 0.0, 10.0, 1.0])
    placed = _place(videos, scores, video, frame)
    assert [p.tolist() for p in placed] == [[0.0, 1.0, 2.0], [10.0, 11.0]]
    with pytest.raises(VadgpuError, match="video a .*frame 2 was scored 2 times"):
        _place(videos, torch.zeros(6), torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 2, 0, 1]))
    with pytest.raises(VadgpuError, match="video b .*frame 1 was scored 0 times"):
        _place(videos, torch.zeros(4), torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 2, 0]))


@pytest.mark.shared
def test_ped2_labels_align_with_scored_frames(ped2_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    dataset = open_dataset("ped2", ped2_root)
    test = load_prepared(dataset, "cpu", progress=False).test
    assert [v.num_frames for v in test] == [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]
    # Stand-in raw scores that encode (video, frame), through the same protocol and CSV code as a model pass.
    raw = [np.arange(v.num_frames) + 1000.0 * i for i, v in enumerate(test)]
    scored = _apply(test, raw, Protocol(smooth="none", norm="none"), temporal=3, stats=None, labelled=True)
    write_scores_csv(tmp_path / "scores.csv", scored)
    rows = read_csv(tmp_path / "scores.csv")
    reference = np.load(ped2_root / "frame_labels_ped2.npy", allow_pickle=False).reshape(-1)
    assert len(rows) == reference.size == 2010
    assert np.array_equal([int(r["label"]) for r in rows], reference) and reference.sum() == 1648
    assert [float(r["score"]) for r in rows] == [1000.0 * i + f for i, v in enumerate(test)
                                                  for f in range(v.num_frames)]
    dropped = _apply(test, raw, Protocol(smooth="none", norm="none", drop_edges=True), temporal=3, stats=None,
                     labelled=True)
    assert sum(v.frames.size for v in dropped) == 2010 - 2 * 12
    assert np.array_equal(np.concatenate([v.labels for v in dropped]),
                          np.concatenate([reference[o + 1:o + n - 1] for o, n in
                                          zip(np.cumsum([0] + [v.num_frames for v in test[:-1]]),
                                              [v.num_frames for v in test])]))


@pytest.mark.gpu
def test_eval_on_cuda_matches_cpu(setup):
    ckpt = setup["run"] / "checkpoints" / "last.pt"
    protocol = Protocol(smooth="none", norm="none")
    cpu = evaluate(ckpt, variant="frames", protocol=protocol, device="cpu", out=setup["base"] / "cpu",
                   progress=False)
    cuda = evaluate(ckpt, variant="frames", protocol=protocol, device="cuda", out=setup["base"] / "cuda",
                    progress=False)
    assert cuda.record["device"].startswith("cuda")
    for a, b in zip(cpu.videos, cuda.videos):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
        # nvJPEG and libjpeg may differ by a grey level; the scores must agree far below the anomaly contrast.
        np.testing.assert_allclose(b.raw, a.raw, rtol=0.05, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.av
def test_score_heatmap_on_cuda(setup, tmp_path):
    from vadgpu.evaluation.runner import score_input

    import av

    source = setup["root"] / "testing" / "videos_h264" / "02.mp4"  # H.264 decodes on NVDEC without a transcode
    ckpt = setup["run"] / "checkpoints" / "last.pt"
    protocol = Protocol(smooth="none", norm="none")
    cpu = score_input(source, ckpt, out=tmp_path / "cpu", heatmap_mp4=True, device="cpu", progress=False,
                      protocol=protocol)
    cuda = score_input(source, ckpt, out=tmp_path / "cuda", heatmap_mp4=True, device="cuda", progress=False,
                       protocol=protocol)
    assert cuda.video.frames.tolist() == cpu.video.frames.tolist() == list(range(FRAMES))
    np.testing.assert_allclose(cuda.video.raw, cpu.video.raw, rtol=0.05, atol=1e-3)  # as eval on CUDA
    decoded = []
    for result in (cpu, cuda):
        with av.open(str(result.heatmap)) as container:
            decoded.append(np.stack([f.to_ndarray(format="gray").astype(np.float64)
                                     for f in container.decode(video=0)]))
    assert decoded[0].shape == decoded[1].shape and len(decoded[0]) == FRAMES
    # the same frames, maps and curve: a few grey levels apart (decoders, encoder), far less than a frame apart
    same = np.abs(decoded[0] - decoded[1]).mean()
    shifted = np.abs(decoded[0][1:] - decoded[1][:-1]).mean()
    assert same < 3 and same < shifted / 3, (same, shifted)
