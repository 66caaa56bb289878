"""What people look at: the heatmap MP4 of `vadgpu score` (the source's aspect ratio, the source frame beside the
error map, the frame number and the score curve under them) and the run folder's training.png."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vadgpu.checkpoint import save_checkpoint
from vadgpu.data.synth import make_synthetic_dataset
from vadgpu.evaluation.heatmap import STRIP_HEIGHT, panel_size
from vadgpu.models.registry import build_model

FRAMES = 20


def _check_png(path):
    from PIL import Image

    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


@pytest.mark.parametrize("source, panel", [((240, 360), (240, 360)), ((60, 90), (240, 360)),
                                           ((48, 64), (240, 320)), ((1080, 1920), (360, 640)),
                                           ((243, 365), (244, 364))])
def test_panel_keeps_the_aspect_ratio_with_even_sides(source, panel):
    assert panel_size(*source) == panel


@pytest.mark.av
def test_heatmap_mp4_shows_the_source_frame_beside_its_error_map(tmp_path, monkeypatch):
    import av
    import cv2

    from vadgpu.evaluation.runner import score_input

    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    # 90x60 frames (3:2) for a model that reads 32x32: the video must keep 3:2, not the model's square
    root = make_synthetic_dataset(tmp_path / "synth", seed=2, train_videos=1, test_videos=1, frames=FRAMES,
                                  frame_size=(60, 90), formats=("avi",))
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    assert model.config.size[0] == model.config.size[1]
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                           "model": model.state_dict(), "epoch": 1, "step": 1, "config": {}})
    source = root / "testing" / "videos" / "01.avi"
    result = score_input(source, ckpt, out=tmp_path / "scored", heatmap_mp4=True, batch_size=5, device="cpu",
                         progress=False)
    with av.open(str(result.heatmap)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(source)) as container:
        originals = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES
    height, width = panel_size(60, 90)
    assert frames[0].shape == (height + STRIP_HEIGHT, 2 * width, 3)  # two 3:2 panels side by side, the strip under
    for index in (0, FRAMES // 2, FRAMES - 1):
        left, right = frames[index][:height, :width].astype(float), frames[index][:height, width:].astype(float)
        expected = cv2.resize(originals[index], (width, height), interpolation=cv2.INTER_LINEAR).astype(float)
        assert np.abs(left - expected).mean() < 8  # the source frame (H.264 and the resize aside)
        assert np.abs(right - expected).mean() > np.abs(left - expected).mean()  # gray + error colours
    # the strip: the frame number and the curve of the scores so far, which grows frame by frame
    strip = [f[height:].astype(int) for f in frames]
    drawn = [int((np.abs(s - s[-2:-1, :1]).sum(axis=2) > 60).sum()) for s in strip]
    assert drawn[-1] > drawn[0] > 0


def test_training_png_is_drawn_and_listed_after_training(synth, tmp_path, monkeypatch):
    from vadgpu.engine.config import TrainConfig
    from vadgpu.engine.run_folder import clear_run, describe_run_dir
    from vadgpu.engine.train import fit
    from vadgpu.engine.training_plot import TRAINING_PLOT

    root, boxes, cache = synth
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    run = tmp_path / "run"
    config = TrainConfig(dataset="synthetic", root=str(root), model="ddl", preset="ddl-tiny-cpu", out=str(run),
                         batch_size=4, max_steps=3, log_every=1, boxes=str(boxes), device="cpu", workers=1,
                         loader="torch", progress=False)
    fit(config)
    width, height = _check_png(run / TRAINING_PLOT)
    assert width >= 600 and height >= 200
    assert TRAINING_PLOT in describe_run_dir(run)
    clear_run(run)  # --overwrite deletes it with the run's other files
    assert not (run / TRAINING_PLOT).exists()


def test_training_plot_panels_and_a_log_cut_short(tmp_path):
    from vadgpu.engine.training_plot import plot_training, plotted_keys, read_log

    log = tmp_path / "log.jsonl"
    records = [{"epoch": 1 + step // 12, "step": step, "recon": 0.1 / step, "loss": 0.2 / step,
                "distinction": 0.5, "anomaly_weight": 0.5 + step / 100, "lr": 1e-3, "clips_per_s": 9.0,
                "time": 1e9} for step in range(1, 25)]
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 25, "lo')  # killed mid-line
    assert len(read_log(log)) == 24
    assert plotted_keys(records) == ["loss", "recon", "distinction", "anomaly_weight", "lr"]
    assert _check_png(plot_training(log, tmp_path / "training.png"))[0] >= 1000  # 4 panels a row
    assert plot_training(tmp_path / "missing.jsonl", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_videos_whose_names_reduce_alike_keep_their_own_curves_and_csvs(tmp_path):
    """'cam ü' and 'cam 日' (and 'a/b' beside 'a_b') once both wrote curves/cam.png: one curve was lost."""
    from vadgpu.evaluation.report import write_object_csvs
    from vadgpu.evaluation.report import VideoScores, safe_names, write_curves

    names = ["cam ü", "cam 日", "a/b", "a_b", "plain"]
    files = safe_names(names)
    assert len(set(f.lower() for f in files)) == len(names)
    assert files[0] == "cam_ü" and files[1] == "cam_日" and files[4] == "plain"
    videos = [VideoScores(n, 4, np.arange(4), np.zeros(4), np.arange(4.0) + i) for i, n in enumerate(names)]
    paths = write_curves(tmp_path / "curves", videos, ylabel="score")
    assert len(set(paths)) == len(names) and all(p.is_file() for p in paths)
    records = [(np.array([i]), np.array([0]), np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([1.0]), np.array([2.0]))
               for i in range(len(names))]
    csvs = write_object_csvs(tmp_path / "objects", names, records, (48, 64))
    assert len(set(csvs)) == len(names) and len(list((tmp_path / "objects").iterdir())) == len(names)
