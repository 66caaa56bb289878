"""An object model's geometry and schedule come from the user's training data: `window: auto` sized from the
training boxes (objects/window.py), the location grid from the frame and the window (scoring/location.py), and a
training length in optimiser steps whatever the training split's size (engine/config.py)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from vadgpu.checkpoint import save_checkpoint
from vadgpu.cli.main import cli
from vadgpu.cli.train import resolve_config
from vadgpu.engine.config import (DEFAULT_EPOCHS, TrainConfig, planned_epochs, planned_steps, with_default_length,
                                  write_config)
from vadgpu.errors import VadgpuError
from vadgpu.models.presets import OBJECT_STEPS
from vadgpu.models.registry import build_model
from vadgpu.objects.window import MIN_WINDOW, auto_window, window_for_height
from vadgpu.scoring.location import grid_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------- the rules


def test_window_rule_is_a_ratio_of_the_median_box_height():
    assert window_for_height(31.0, (240, 360)) == 24  # UCSD Ped2's training boxes (background subtraction)
    assert window_for_height(62.0, (480, 720)) == 50  # people twice as tall: twice the window, kept even
    assert window_for_height(79.0, (360, 640)) == 64  # the motion-only synthetic scene
    assert window_for_height(3.0, (240, 360)) == MIN_WINDOW
    assert window_for_height(400.0, (241, 360)) == 240  # at most the shorter side, kept even
    assert all(window_for_height(h, (1080, 1920)) % 2 == 0 for h in np.linspace(10, 300, 59))


@pytest.mark.parametrize("frame_hw, window, grid", [
    ((240, 360), 48, (6, 4)),  # Ped2 with a 48-pixel window: the grid the first object recipes used
    ((240, 360), 24, (12, 8)),  # Ped2 with the window `auto` gives it
    ((480, 720), 96, (6, 4)),  # the same scene at twice the resolution
    ((120, 160), 40, (3, 2)),
    ((1080, 1920), 160, (10, 5)),
    ((1080, 1920), 48, (12, 12)),  # at most MAX_CELLS a side
    ((240, 360), 240, (1, 1)),  # at least one
])
def test_location_grid_follows_the_frame_and_the_window(frame_hw, window, grid):
    assert grid_for(frame_hw, window) == grid


# ------------------------------------------------------------------------------------ window auto on real boxes


@pytest.fixture(scope="module")
def two_scales(tmp_path_factory):
    """The synthetic scene at 120 x 160 and at 240 x 320 (its sprites scale with the frame: objects twice as tall),
    each with its background-subtraction box cache: {height: (prepared training videos, cache path)}."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.data.synth import make_synthetic_dataset
    from vadgpu.objects.default_boxes import ensure_box_cache

    base = tmp_path_factory.mktemp("scales")
    out = {}
    for hw in ((120, 160), (240, 320)):
        root = make_synthetic_dataset(base / f"synth{hw[0]}", seed=1, train_videos=1, test_videos=1, frames=40,
                                      frame_size=hw, formats=("avi",))
        dataset = open_dataset("synthetic", root)
        prepared = load_prepared(dataset, "cpu", cache=base / "cache", progress=False)
        splits = {"train": prepared.train, "test": prepared.test}
        out[hw[0]] = prepared.train, ensure_box_cache(dataset, splits, cache=base / "cache", progress=False,
                                                      echo=lambda _: None)
    return out


def test_objects_twice_as_tall_get_a_window_twice_as_large(two_scales):
    small = auto_window(two_scales[120][1], two_scales[120][0], (120, 160))
    large = auto_window(two_scales[240][1], two_scales[240][0], (240, 320))
    assert small.boxes > 20 and large.boxes > 20
    assert 1.8 <= large.median_height / small.median_height <= 2.2
    assert 1.8 <= large.window / small.window <= 2.2 and small.window % 2 == 0 == large.window % 2


def test_no_training_boxes_is_an_error_that_says_how_to_make_them(two_scales, tmp_path):
    videos, path = two_scales[120]
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    test_ids = np.flatnonzero(arrays["video_splits"] == "test")
    keep = np.isin(arrays["video"], test_ids)
    for key in ("video", "frame", "x1", "y1", "x2", "y2", "score", "cls", "track"):
        arrays[key] = arrays[key][keep]
    empty = tmp_path / "test-boxes-only.npz"
    np.savez_compressed(empty, **arrays)
    with pytest.raises(VadgpuError, match=r"no box in the 1 training video.*vadgpu data boxes.*--boxes.*--window"):
        auto_window(empty, videos, (120, 160), "synthetic")


def test_auto_lands_as_pixels_in_config_yaml_model_pt_and_the_record(object_run):
    base, root, run, runner, cli_ = object_run
    config = yaml.safe_load((run / "config.yaml").read_text())
    state = torch.load(run / "model.pt", weights_only=True)
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared

    train = load_prepared(open_dataset("synthetic", root), "cpu", cache=base / "cache", progress=False).train
    expected = auto_window(config["boxes"], train, (120, 160)).window
    assert isinstance(config["window"], int) and config["window"] == expected
    assert state["model_config"]["window"] == state["config"]["window"] == expected
    record = state["calibration"]
    assert record["window"] == expected and record["location"]["grid"] == list(grid_for((120, 160), expected))


def test_an_explicit_window_wins_over_auto(object_run, tmp_path):
    base, root, run, runner, cli_ = object_run
    path = tmp_path / "c.yaml"
    path.write_text("window: 30\n")
    out = tmp_path / "run"
    result = runner.invoke(cli, ["train", "--dataset", "synthetic", "--root", str(root), "--preset",
                                 "ddl-objects-cpu", "--config", str(path), "--out", str(out), "--max-steps", "1",
                                 "--batch-size", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "tube window auto" not in result.output and "30-pixel window" in result.output
    state = torch.load(out / "model.pt", weights_only=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["window"] == 30 == state["model_config"]["window"]
    assert state["calibration"]["location"]["grid"] == list(grid_for((120, 160), 30))
    # a flag over the file, and the printed config
    flags = resolve_config({"window": 64}, str(path), resume=False)
    assert flags.window == 64
    printed = runner.invoke(cli, ["train", "--preset", "ddl-objects-cpu", "--window", "64", "--print-config"])
    assert printed.exit_code == 0 and yaml.safe_load(printed.output)["window"] == 64, printed.output


def test_auto_is_refused_on_a_frame_model_and_in_a_model_file(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--preset", "ddl-tiny-cpu", "--window", "auto", "--print-config"])
    assert result.exit_code == 1 and "frame model cuts no tubes" in result.output
    result = CliRunner().invoke(cli, ["train", "--preset", "ddl-objects-cpu", "--window", "wide", "--print-config"])
    assert result.exit_code != 0 and "number of pixels" in result.output
    model = build_model("ddl-objects-cpu")  # never trained: its window is still `auto`
    save_checkpoint(tmp_path / "model.pt", {"model_name": "ddl-objects-cpu", "model_config": model.config.to_dict(),
                                            "model": model.state_dict(), "epoch": 0, "step": 0})
    result = CliRunner().invoke(cli, ["export", "--checkpoint", str(tmp_path / "model.pt"), "--format",
                                      "torchscript", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and "tube window 'auto'" in result.output and "not written by" in result.output


# ---------------------------------------------------------------------------------------------- steps, epochs


def test_object_models_default_to_a_fixed_number_of_steps():
    objects, frames = with_default_length(TrainConfig(), "objects"), with_default_length(TrainConfig(), "frames")
    assert (objects.steps, objects.epochs) == (OBJECT_STEPS, None)
    assert (frames.steps, frames.epochs) == (None, DEFAULT_EPOCHS)
    for per_epoch in (5, 29, 155, 1000):  # a tiny training split and a large one train the same steps
        assert planned_steps(objects, per_epoch) == OBJECT_STEPS
        assert planned_epochs(objects, per_epoch) == math.ceil(OBJECT_STEPS / per_epoch)
    assert planned_steps(objects.replace(max_steps=3), 155) == 3
    assert with_default_length(TrainConfig(epochs=2), "objects").steps is None  # an explicit length stays


def test_a_cpu_object_preset_starts_from_its_measured_training_settings(tmp_path):
    import yaml

    def printed(*args):
        result = CliRunner().invoke(cli, ["train", "--preset", "ddl-objects-cpu", *args, "--print-config"])
        assert result.exit_code == 0, result.output
        return yaml.safe_load(result.output)

    config = printed()
    assert (config["batch_size"], config["tubes_per_clip"], config["lr"], config["schedule"]) == (16, 4, 1e-3, "cosine")
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.0005\n")
    assert printed("--config", str(path))["lr"] == 5e-4  # a config file overrides the preset
    assert printed("--config", str(path), "--lr", "0.002")["lr"] == 2e-3  # and a flag the file
    frames = yaml.safe_load(CliRunner().invoke(cli, ["train", "--preset", "ddl-tiny-cpu", "--print-config"]).output)
    assert frames["batch_size"] == TrainConfig().batch_size  # other presets keep the defaults


def test_epochs_and_steps_are_one_choice_the_later_layer_wins(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 100\n")
    assert (resolve_config({"epochs": 2}, str(path), resume=False).epochs,
            resolve_config({"epochs": 2}, str(path), resume=False).steps) == (2, None)
    path.write_text("epochs: 3\n")
    config = resolve_config({"steps": 50}, str(path), resume=False)
    assert (config.epochs, config.steps) == (None, 50)
    with pytest.raises(VadgpuError, match="give one of them"):
        resolve_config({"steps": 50, "epochs": 2}, None, resume=False)
    path.write_text("epochs: 3\nsteps: 50\n")
    with pytest.raises(VadgpuError, match=r"c\.yaml.*give one of them"):
        resolve_config({}, str(path), resume=False)
    # a resumed run: a length given now replaces the saved one, in either unit
    run = tmp_path / "run"
    run.mkdir()
    write_config(TrainConfig(dataset="synthetic", root="r", out=str(run), steps=OBJECT_STEPS), run / "config.yaml")
    resumed = resolve_config({"epochs": 7, "out": str(run)}, None, resume=True)
    assert (resumed.epochs, resumed.steps) == (7, None)
    assert resolve_config({"out": str(run)}, None, resume=True).steps == OBJECT_STEPS


@pytest.fixture(scope="module")
def two_splits(tmp_path_factory):
    """Two synthetic datasets, with 1 and 2 training videos of 40 frames."""
    from vadgpu.data.synth import make_synthetic_dataset

    base = tmp_path_factory.mktemp("splits")
    return {n: make_synthetic_dataset(base / f"synth{n}", seed=n, train_videos=n, test_videos=1, frames=40,
                                      formats=("avi",)) for n in (1, 2)}


STEPS = 13  # more than one epoch of either split, a multiple of neither's steps per epoch
per_split: dict[int, int] = {}  # steps per epoch of each split, as training reported them


@pytest.mark.parametrize("videos", [1, 2])
def test_steps_stop_training_at_exactly_n_with_the_cosine_at_its_floor(two_splits, videos, tmp_path, monkeypatch,
                                                                        caplog):
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    caplog.set_level("INFO", logger="vadgpu")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--dataset", "synthetic", "--root", str(two_splits[videos]),
                                      "--preset", "ddl-tiny-cpu", "--steps", str(STEPS), "--schedule", "cosine",
                                      "--batch-size", "8", "--log-every", "1", "--device", "cpu", "--workers", "1",
                                      "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    said = re.search(r"world size 1, (\d+) steps \((\d+) steps/epoch x (\d+) epochs, the last cut short\)",
                     caplog.text)
    assert said, caplog.text
    steps, per_epoch, epochs = (int(g) for g in said.groups())
    assert steps == STEPS and epochs == math.ceil(STEPS / per_epoch) > 1 and STEPS % per_epoch
    per_split[videos] = per_epoch
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["steps"], summary["epochs"]) == (STEPS, STEPS // per_epoch)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == list(range(1, STEPS + 1))
    assert log[-1]["lr"] == pytest.approx(0.0, abs=1e-12) and all(entry["lr"] > 0 for entry in log[:-1])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["steps"], config["epochs"]) == (STEPS, None)
    if len(per_split) == 2:  # the small split has fewer steps per epoch, and trains as many steps
        assert per_split[1] < per_split[2]
