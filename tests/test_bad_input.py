"""Bad input, one test each: a clear VadgpuError that names the file or option (no traceback, no silent loss)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import orphan_temporary, read_only_folder

from vadgpu.checkpoint import load_checkpoint
from vadgpu.cli.main import cli
from vadgpu.data.catalog import open_dataset
from vadgpu.data.labels import read_json_labels
from vadgpu.data.prepare import INPUT_DATASET, cache_dir_for, prepare_dataset
from vadgpu.data.synth import encode_video, make_synthetic_dataset
from vadgpu.data.types import Dataset, Video
from vadgpu.errors import VadgpuError

FRAMES = 40


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("bad") / "synth", train_videos=1, test_videos=1,
                                  frames=24, frame_size=(48, 64))


def _generic(tmp_path: Path, synth_root: Path, name: str, data: bytes | None = None) -> Path:
    """A generic dataset: training/NAME (the given bytes) and a testing frame folder."""
    root = tmp_path / "generic"
    (root / "training").mkdir(parents=True)
    if data is not None:
        (root / "training" / name).write_bytes(data)
    shutil.copytree(synth_root / "testing/frames/01", root / "testing" / "clip")
    return root


def _encoded(tmp_path: Path, name: str, fmt: str, codec: str) -> bytes:
    frames = np.random.default_rng(0).integers(0, 255, (FRAMES, 48, 64, 3), dtype=np.uint8)
    path = tmp_path / name
    encode_video(frames, path, fmt, codec, "yuv420p")
    return path.read_bytes()


# ------------------------------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("name, fmt, codec", [("cut.webm", "webm", "libvpx-vp9"), ("cut.mkv", "matroska", "mpeg4")])
def test_truncated_container_without_a_frame_count_is_an_error(synth_root, tmp_path, name, fmt, codec):
    data = _encoded(tmp_path, name, fmt, codec)
    whole = _generic(tmp_path / "whole", synth_root, name, data)
    result = prepare_dataset(open_dataset("generic", whole), "cpu", cache=tmp_path / "c1", progress=False)
    assert result.train[0].num_frames == FRAMES  # the intact file passes
    cut = _generic(tmp_path / "cut", synth_root, name, data[: len(data) // 3])
    with pytest.raises(VadgpuError, match=rf"{name}: the container states 1.60 s of video but the \d+ frames that "
                                          "decode end at .* truncated"):
        prepare_dataset(open_dataset("generic", cut), "cpu", cache=tmp_path / "c2", progress=False)


def test_truncated_mpeg_ps_is_a_loud_warning_with_the_numbers(synth_root, tmp_path, caplog):
    data = _encoded(tmp_path, "cut.mpg", "mpeg", "mpeg2video")
    root = _generic(tmp_path, synth_root, "cut.mpg", data[: len(data) // 3])
    with caplog.at_level(logging.WARNING, logger="vadgpu"):
        prepare_dataset(open_dataset("generic", root), "cpu", cache=tmp_path / "cache", progress=False)
    warned = [r.getMessage() for r in caplog.records if "cut.mpg" in r.getMessage()]
    assert warned and "may be truncated or damaged" in warned[0] and "frames decoded" in warned[0]


@pytest.mark.dali
def test_corrupt_jpg_in_a_frame_folder_is_named_by_prepare_and_by_the_loader(synth_root, tmp_path):
    from vadgpu.pipelines.loader import ClipSpec, make_loader

    root = _generic(tmp_path, synth_root, "none")  # training: the frame folder below only
    shutil.copytree(synth_root / "training/frames/01", root / "training" / "walk")
    bad = root / "training" / "walk" / "010.jpg"
    intact = bad.read_bytes()
    bad.write_bytes(intact[: len(intact) // 2])  # cut: OpenCV alone would decode it, gray-filled, with a warning
    with pytest.raises(VadgpuError, match=r"frame .*walk/010\.jpg is a truncated JPEG"):
        prepare_dataset(open_dataset("generic", root), "cpu", cache=tmp_path / "cache", progress=False)
    bad.write_bytes(intact)
    prepared = prepare_dataset(open_dataset("generic", root), "cpu", cache=tmp_path / "cache", progress=False)
    bad.write_bytes(b"\xff\xd8\xff" + os.urandom(200) + b"\xff\xd9")  # damaged after prepare checked it
    loader = make_loader(prepared.train, ClipSpec(temporal=3, size=(32, 32), channels=1), batch_size=4,
                         device="cpu", train=False)
    with pytest.raises(VadgpuError, match=r"could not decode frame .*walk/010\.jpg"):
        for _ in loader:
            pass


# ---------------------------------------------------------------------------------------------------- the cache


def test_copied_cache_keeps_and_reads_its_own_transcodes(synth_root, tmp_path):
    dataset = open_dataset("synthetic", synth_root, "mp4")  # H.264: transcoded for the CPU backend
    first = prepare_dataset(dataset, "cpu", cache=tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # the original is gone: the copy must stand alone
    copy = prepare_dataset(dataset, "cpu", cache=tmp_path / "b", progress=False)
    assert copy.transcoded_now == 0 and copy.transcoded == first.transcoded > 0
    assert all(v.decode_path.is_file() and str(tmp_path / "b") in str(v.decode_path) for v in copy.videos)


def test_orphaned_transcode_temporary_is_removed_by_the_next_prepare(synth_root, tmp_path):
    dataset = open_dataset("synthetic", synth_root, "mp4")
    first = prepare_dataset(dataset, "cpu", cache=tmp_path, progress=False)
    folder = first.train[0].decode_path.parent
    orphan = orphan_temporary(folder, "02-abc.avi")  # a transcode killed by SIGTERM
    prepare_dataset(dataset, "cpu", cache=tmp_path, progress=False)
    assert not orphan.exists() and first.train[0].decode_path.is_file()


def test_read_only_cache_that_needs_a_manifest_rewrite_is_one_clear_error(synth_root, tmp_path):
    root = tmp_path / "synth"
    shutil.copytree(synth_root, root)
    dataset = open_dataset("synthetic", root)  # MJPEG: nothing to transcode
    first = prepare_dataset(dataset, "cpu", cache=tmp_path / "cache", progress=False)
    os.utime(root / "training/videos/01.avi")  # touched: the manifest entry must be redone
    with read_only_folder(first.manifest.parent):
        with pytest.raises(VadgpuError, match=r"cannot write .*manifest\.json.*the cache folder .* is not writable; "
                                              "pick another with --cache or VADGPU_CACHE"):
            prepare_dataset(open_dataset("synthetic", root), "cpu", cache=tmp_path / "cache", progress=False)


def test_score_input_beside_the_cache_is_fine_and_inside_a_frame_input_is_explained(tmp_path, monkeypatch):
    video = Video("clip", tmp_path / "clip.mp4")
    single = Dataset(INPUT_DATASET, tmp_path, train=(), test=(video,))
    assert tmp_path in cache_dir_for(single, "cpu", tmp_path / "cache").parents  # beside the input: allowed
    frames = tmp_path / "frames"
    folder_input = Dataset(INPUT_DATASET, tmp_path, train=(), test=(Video("frames", frames, (frames / "0.jpg",)),))
    with pytest.raises(VadgpuError, match=r"lies inside the input frame folder .*frames.*VADGPU_CACHE"):
        cache_dir_for(folder_input, "cpu", frames / "cache")


# --------------------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("content, message", [
    ({"frames": True, "intervals": [[0, 1]]}, r"intervals need a positive integer \"frames\".*not True"),
    ({"frames": 10, "intervals": [[2.5, 4]]}, r"interval \[2\.5, 4\] must hold whole frame numbers"),
    ({"frames": 10, "intervals": [[1, 2, 3]]}, r"\"intervals\" must be a list of \[first, last\] pairs"),
])
def test_json_labels_with_wrong_types_are_errors(tmp_path, content, message):
    path = tmp_path / "clip.json"
    path.write_text(json.dumps(content))
    with pytest.raises(VadgpuError, match=rf"label file .*clip\.json: {message}"):
        read_json_labels(path)


def test_label_mismatch_names_the_label_file(synth_root, tmp_path):
    root = _generic(tmp_path, synth_root, "walk.avi", (synth_root / "training/videos/01.avi").read_bytes())
    (root / "testing" / "labels").mkdir()
    np.save(root / "testing" / "labels" / "clip.npy", np.zeros(5, np.uint8))
    with pytest.raises(VadgpuError, match=r"labels for video clip \(.*testing/labels/clip\.npy\) have 5 frames"):
        open_dataset("generic", root)


# ------------------------------------------------------------------------------------------ options and configs


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "--lr nan: must be a number > 0"),
    (["--lr", "inf"], "--lr inf: must be a number > 0"),
])
def test_non_finite_flags_are_errors(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["train", "--dataset", "synthetic", "--root", str(tmp_path), "--out",
                                      str(tmp_path / "run"), *args])
    assert result.exit_code == 1 and message in result.output and isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("values, message", [
    ({"batch_size": [1]}, "batch_size must be a whole number, not [1]"),
    ({"epochs": 2.5}, "epochs must be a whole number or empty (null), not 2.5"),
    ({"lr": "fast"}, "lr must be a number, not 'fast'"),
    ({"amp": "yes"}, "amp must be true or false or empty (null), not 'yes'"),
    ({"size": ["a", 64]}, "size must be [height, width] in whole pixels"),
    ({"out": 5}, "out must be a folder path, not 5"),
])
def test_yaml_config_with_wrong_types_names_the_file_and_key(tmp_path, values, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"dataset": "synthetic", "root": str(tmp_path), "out": "run", **values}))
    result = CliRunner().invoke(cli, ["train", "--config", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"--config {path}" in result.output and message in result.output


def test_a_key_given_twice_in_a_yaml_config_is_an_error(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("dataset: synthetic\nlr: 0.1\nepochs: 2\nlr: 0.2\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(path), "--print-config"])
    assert result.exit_code == 1 and "the key 'lr' is given twice" in result.output and "line 4" in result.output


@pytest.mark.parametrize("args, message", [
    (["--preset", ""], "--preset '': name a preset"),
    (["--lr", "nan"], "--lr nan: must be a number > 0"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
])
def test_print_config_prints_only_a_config_training_would_accept(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["train", "--dataset", "synthetic", "--root", str(tmp_path), "--out",
                                      str(tmp_path / "run"), "--device", "cpu", *args, "--print-config"])
    assert result.exit_code == 1 and message in result.output, result.output
    result = CliRunner().invoke(cli, ["train", "--dataset", "synthetic", "--root", str(tmp_path), "--out",
                                      str(tmp_path / "run"), "--device", "cpu", *args])
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_yaml_number_written_as_text_is_read_as_a_number(tmp_path):
    from vadgpu.engine.config import load_config_file

    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nepochs: 3\n")  # YAML reads 1e-3 (no dot) as a string
    config = load_config_file(path)
    assert config.lr == 1e-3 and config.epochs == 3


# ---------------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("state, message", [
    ([1, 2, 3], "holds a list, not a mapping"),
    ({"model_name": "x", "model_config": [1], "model": {}}, "its model_config is a list, not a mapping"),
    ({"model_name": "x", "model_config": {}, "model": 3}, "its model is a int, not a mapping"),
])
def test_checkpoint_of_the_wrong_shape_is_named(tmp_path, state, message):
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(VadgpuError, match=rf"checkpoint .*odd\.pt .*{message}"):
        load_checkpoint(path)


def test_disk_full_while_saving_a_checkpoint_is_one_clear_error(tmp_path):
    script = ("import resource, signal, sys, torch\nfrom vadgpu.checkpoint import save_checkpoint\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # a write past the limit fails, as on a full disk
              "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
              "save_checkpoint(sys.argv[1], {'model': {'w': torch.zeros(1 << 20)}})\n")
    target = tmp_path / "last.pt"
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback (most recent" in done.stderr  # raised: VadgpuError, not a crash
    assert f"VadgpuError: cannot write checkpoint {target} (is the disk full?" in done.stderr
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
