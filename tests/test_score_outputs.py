"""What `vadgpu score` and `vadgpu eval` tell their user: help texts that say what the code does, the files the
command wrote, the score's name on the plots, the object heatmap's colour legend, and a line per video while
appearance features are computed without a progress bar."""

from __future__ import annotations

import json
import re

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


def test_a_long_pass_logs_a_line_per_video_without_a_progress_bar(object_run, tmp_path, monkeypatch):
    base, root, run, runner, cli_ = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    weights = make_tiny_darknet(tmp_path / "net")
    result = runner.invoke(cli_, ["calibrate", "--checkpoint", str(run / "model.pt"), "--appearance", str(weights),
                                  "--out", str(tmp_path / "cal.pt"), "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("calibrating on the training videos")]
    assert lines[0] == "calibrating on the training videos: 80 frames of 2 video(s)"
    assert lines[1].startswith("calibrating on the training videos: video 01 done (1/2, 40/80 frames")
    assert lines[2].startswith("calibrating on the training videos: video 02 done (2/2, 80/80 frames")
