"""`--boxes none` at evaluation: an object model is told it needs boxes (before anything is prepared), a frame
model is told it reads none, and neither looks for a file named `none`."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from vadgpu.checkpoint import save_checkpoint
from vadgpu.cli.main import cli
from vadgpu.data.synth import make_synthetic_dataset
from vadgpu.models.registry import build_model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 1 + 1 video synthetic dataset and two untrained weights files: a frame model and an object model."""
    base = tmp_path_factory.mktemp("boxes-none")
    root = make_synthetic_dataset(base / "synth", seed=4, train_videos=1, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("frames",))
    paths = {}
    for preset in ("ddl-tiny-cpu", "ddl-objects-cpu"):
        torch.manual_seed(0)
        model = build_model(preset)
        paths[preset] = base / preset / "model.pt"
        save_checkpoint(paths[preset], {"model_name": preset, "model_config": model.config.to_dict(),
                                        "model": model.state_dict(), "epoch": 1, "step": 1,
                                        "config": {"dataset": "synthetic", "root": str(root), "variant": "frames"}})
    return {"root": root, "base": base, **paths}


def _invoke(args):
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", ["eval", "score"])
def test_an_object_model_is_told_it_needs_boxes(runs, tmp_path, monkeypatch, command):
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    ckpt = str(runs["ddl-objects-cpu"])
    source = ["--checkpoint", ckpt] if command == "eval" else [str(runs["root"] / "testing" / "frames" / "01"),
                                                                "--checkpoint", ckpt]
    code, output = _invoke([command, *source, "--boxes", "none", "--out", str(tmp_path / "out"), "--device", "cpu",
                            "--no-progress"])
    assert code == 1, output
    assert "--boxes none" in output and "object model (ddl-objects-cpu)" in output and "needs boxes" in output
    assert "leave --boxes out" in output and "Traceback" not in output and "No such file" not in output
    assert not (tmp_path / "cache").exists()  # refused before any video was probed or boxes were made


def test_a_frame_model_is_told_it_reads_no_boxes(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    ckpt = str(runs["ddl-tiny-cpu"])
    common = ["--boxes", "none", "--device", "cpu", "--loader", "torch", "--no-progress"]
    code, output = _invoke(["eval", "--checkpoint", ckpt, "--out", str(tmp_path / "eval"), *common])
    assert code == 0, output
    assert "frame model (ddl-tiny-cpu)" in output and "reads no boxes" in output and "micro AUC" in output
    code, output = _invoke(["score", str(runs["root"] / "testing" / "frames" / "01"), "--checkpoint", ckpt,
                            "--out", str(tmp_path / "score"), *common])
    assert code == 0, output
    assert "reads no boxes" in output and (tmp_path / "score" / "scores.csv").is_file()
