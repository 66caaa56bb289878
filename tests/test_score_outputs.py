"""What `vadgpu score` and `vadgpu eval` tell their user: help texts that say what the code does, the files the
command wrote, the score's name on the plots, the object heatmap's colour legend, and a line per video while
appearance features are computed without a progress bar."""

from __future__ import annotations

import json
import logging
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import make_tiny_darknet

from vadgpu.checkpoint import save_checkpoint
from vadgpu.cli.main import cli
from vadgpu.models.registry import build_model


def _help(*command: str) -> str:
    return " ".join(CliRunner().invoke(cli, [*command, "--help"], terminal_width=400).output.split())


def test_score_help_says_what_heatmap_and_norm_do(tmp_path):
    from vadgpu.data.synth import make_synthetic_dataset

    text = _help("score")
    heatmap = re.search(r"--heatmap-mp4 (.*?) --boxes", text).group(1)
    assert "(frame models)" not in heatmap and "object models" in heatmap and "colour bar" in heatmap
    norm = re.search(r"--norm \[video\|train\|none\] (.*?) --tube-norm", text).group(1)
    assert "live scoring (a stream, or --live) takes train or none, default train" in norm
    assert "none for object models" in norm
    # and the code does so: live scoring without --norm normalises by the training scores, which this file lacks
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                           "model": model.state_dict(), "epoch": 1, "step": 1})
    root = make_synthetic_dataset(tmp_path / "synth", seed=0, train_videos=1, test_videos=1, frames=20,
                                  formats=("avi",))
    result = CliRunner().invoke(cli, ["score", str(root / "testing" / "videos" / "01.avi"), "--live",
                                      "--checkpoint", str(ckpt), "--out", str(tmp_path / "live"), "--device", "cpu"])
    assert result.exit_code == 1 and "--norm train: the model file holds no training scores" in result.output
    # eval's --norm default is unchanged and says nothing of live scoring
    assert "live scoring" not in re.search(r"--norm \[video\|train\|none\] (.*?) --tube-norm",
                                           _help("eval")).group(1)


@pytest.mark.av
def test_object_score_lists_its_objects_csv_and_the_heatmap_has_a_colour_bar(tmp_path, monkeypatch):
    import av

    from vadgpu.colour_bar import WIDTH, bar_colours
    from vadgpu.data.synth import make_synthetic_dataset
    from vadgpu.evaluation.heatmap import MAX_OPACITY, panel_size

    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    root = make_synthetic_dataset(tmp_path / "synth", seed=0, train_videos=1, test_videos=1, frames=30,
                                  formats=("avi",))
    out = tmp_path / "scored"
    result = CliRunner().invoke(cli, ["score", str(root / "testing" / "videos" / "01.avi"), "--checkpoint",
                                      "ped2-ddl", "--out", str(out), "--heatmap-mp4", "--no-progress",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'objects.csv'}" in result.output and (out / "objects.csv").is_file()
    with av.open(str(out / "01-heatmap.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24").astype(float)
    height, width = panel_size(120, 160)
    right, top, bottom = 2 * width - 6, 8, height - 8
    bar = frame[top + 2:bottom - 2, right - WIDTH + 3:right - 3].mean(axis=1)  # (rows, 3), inside the border
    expected = bar_colours(bottom - top, MAX_OPACITY)[2:-2].astype(float)
    assert np.abs(bar - expected).mean() < 12  # the legend's colours (H.264 aside)
    assert np.abs(bar[:5].mean(0) - bar[-5:].mean(0)).sum() > 150  # bright at the top, gray at the bottom


def test_object_scores_are_labelled_z_scores(object_run, tmp_path, monkeypatch):
    base, _root, run, runner, cli_ = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    labels = {}
    for name, extra in (("place", []), ("raw", ["--tube-norm", "none", "--norm", "video"])):
        result = runner.invoke(cli_, ["eval", "--run", str(run), "--no-progress", "--out", str(tmp_path / name),
                                      *extra])
        assert result.exit_code == 0, result.output
        labels[name] = json.loads((tmp_path / name / "metrics.json").read_text())["protocol"]["score_label"]
    assert labels == {"place": "mse z-score by place", "raw": "mse score (min-max per video)"}


def test_appearance_features_log_a_line_per_video_without_a_progress_bar(tmp_path):
    from vadgpu.data.types import Video
    from vadgpu.objects.appearance import DarknetFeatures, box_features
    from vadgpu.objects.tubes import FrameBoxes

    rng = np.random.default_rng(0)
    videos = []
    for name in ("01", "02"):
        folder = tmp_path / name
        folder.mkdir()
        files = []
        for i in range(3):
            files.append(folder / f"{i:03d}.png")
            cv2.imwrite(str(files[-1]), rng.integers(0, 256, (48, 72, 3), dtype=np.uint8))
        videos.append(SimpleNamespace(name=name, num_frames=3, video=Video(name, folder, tuple(files))))
    table = FrameBoxes(np.array([0, 0, 1]), np.array([0, 2, 1]), np.array([[0.1, 0.1, 0.6, 0.7]] * 3), [3, 3])
    extractor = DarknetFeatures(make_tiny_darknet(tmp_path / "net"))
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("vadgpu")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        features = box_features(extractor, videos, table, progress=False, desc="appearance test")
        quiet = len(lines)
        box_features(extractor, videos, table, progress=True, desc="appearance test")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert features.shape[0] == 3
    assert quiet == 3 and len(lines) == 3  # with a progress bar the bar says it
    assert lines[0].startswith("appearance test: features of 3 boxes in 6 frames of 2 video(s) (darknet:tiny")
    assert lines[1].startswith("appearance test: video 01 done (1/2, 3/6 frames")
    assert lines[2].startswith("appearance test: video 02 done (2/2, 6/6 frames")
