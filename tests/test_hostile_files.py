"""Hostile and damaged files that vadgpu reads (box caches, checkpoints, ONNX metadata): each is one clear
VadgpuError naming the file, never a native crash, a library traceback or a silent use of bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import EXPORT_EXTRA
from conftest import make_box_dataset

from vadgpu.errors import VadgpuError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def box_data(tmp_path_factory):
    """A synthetic dataset (2 train / 2 test videos of 20 frames, 64x48) and its background-subtraction cache of
    both splits: (root, cache path, the cache's arrays)."""
    root, _, cache = make_box_dataset(tmp_path_factory.mktemp("boxes"), seed=1, videos=2)
    with np.load(cache) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert len(arrays["x1"]) > 10
    return root, cache, arrays


def _mutated(tmp_path: Path, arrays: dict, **changes) -> Path:
    out = dict(arrays)
    for key, change in changes.items():
        out[key] = change(out[key].copy()) if callable(change) else change
    path = tmp_path / "mutated.npz"
    np.savez(path, **out)
    return path


def _set(index, value):
    def change(column):
        column[index] = value
        return column
    return change


BAD_CACHES = {
    "nan x1": ({"x1": _set(slice(None), np.nan)}, r"box 0 has x1 nan"),
    "one inf y2": ({"y2": _set(3, np.inf)}, r"box 3 has y2 inf"),
    "negative x1": ({"x1": _set(2, -0.5)}, r"box 2 has x1 -0\.5, outside the frame"),
    "huge y2": ({"y2": _set(1, 1e30)}, r"box 1 has y2 1e\+30, outside the frame"),
    "inverted": ({"x1": _set(4, 0.9), "x2": _set(4, 0.1)}, r"box 4 is inverted \(x1 0\.9 > x2 0\.1\)"),
    "video out of range": ({"video": _set(0, 99)}, r"box 0 names video 99, but the cache lists 4"),
    "negative video": ({"video": _set(5, -1)}, r"box 5 names video -1"),
    "frame past the end": ({"frame": _set(0, 20)}, r"box 0 is in frame 20 of video '01', which has 20"),
    "fractional frame": ({"frame": lambda f: f.astype(np.float32) + 0.5}, r"frame must hold whole numbers"),
    "nan score": ({"score": _set(0, np.nan)}, r"box 0 has score nan"),
    "class out of range": ({"cls": _set(0, 7)}, r"box 0 has class 7, but the cache names 1"),
    "track below -1": ({"track": _set(0, -5)}, r"box 0 has track id -5"),
    "short column": ({"track": lambda t: t[:-1]}, r"the per-box arrays must be 1-D and of one length"),
    "2-D column": ({"x1": lambda x: np.stack([x, x], 1)}, r"the per-box arrays must be 1-D"),
    "text coordinates": ({"x1": lambda x: x.astype(str)}, r"x1 must hold numbers"),
    "negative frame count": ({"video_frames": _set(0, -3)}, r"video '01' has -3 frames"),
    "frame counts too few": ({"video_frames": lambda f: f[:2]}, r"video_frames has 2 entries for 4 videos"),
    "unknown split": ({"video_splits": _set(1, "val")}, r"video '02' is in split 'val', not train or test"),
    "duplicate name": ({"video_names": _set(1, "01")}, r"split train names a video twice"),
    "zero width": ({"video_width": _set(0, 0)}, r"video '01' has video_width 0"),
    "format array": ({"format": np.array([1, 1])}, r"format must be a scalar"),
    "names as numbers": ({"video_names": np.arange(4)}, r"video_names must be a list of texts"),
}


@pytest.mark.parametrize("case", list(BAD_CACHES))
def test_a_damaged_box_cache_is_refused_where_it_is_read(box_data, tmp_path, case):
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.objects.boxes import ObjectBoxes, read_box_cache
    from vadgpu.objects.tubes import FrameBoxes

    root, _, arrays = box_data
    changes, message = BAD_CACHES[case]
    path = _mutated(tmp_path, arrays, **changes)
    with pytest.raises(VadgpuError, match=rf"box cache .*mutated\.npz: {message}"):
        read_box_cache(path)
    prepared = load_prepared(open_dataset("synthetic", root, "frames"), "cpu", cache=tmp_path / "c",
                             progress=False, loader="torch")
    with pytest.raises(VadgpuError, match="mutated.npz"):  # every reader goes through read_box_cache
        FrameBoxes.load(path, list(prepared.test), "test")
    with pytest.raises(VadgpuError, match="mutated.npz"):
        ObjectBoxes.load(path, list(prepared.train), "cpu", 3)


def test_the_intact_cache_reads_as_before(box_data):
    from vadgpu.objects.boxes import read_box_cache

    _, cache, arrays = box_data
    read = read_box_cache(cache)
    for key in arrays:
        np.testing.assert_array_equal(read[key], arrays[key])
        assert read[key].dtype == arrays[key].dtype


def test_eval_with_nan_boxes_is_an_error_not_a_native_crash(box_data, tmp_path):
    root, _, arrays = box_data
    bad = _mutated(tmp_path, arrays, x1=_set(slice(None), np.nan))
    done = subprocess.run([sys.executable, "-m", "vadgpu", "eval", "--checkpoint", "ped2-ddl", "--dataset",
                           "synthetic", "--root", str(root), "--variant", "frames", "--boxes", str(bad), "--out",
                           str(tmp_path / "o"), "--no-progress", "--loader", "torch", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**__import__("os").environ, "VADGPU_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])  # a segfault is -11
    assert "Error: box cache" in done.stderr and "x1 nan" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------------------------------- checkpoints


def _tiny_state(preset: str = "ddl-tiny-cpu", **changes) -> dict:
    import torch

    from vadgpu.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(preset)
    return {"model_name": preset, "model_config": model.config.to_dict(), "model": model.state_dict(), "epoch": 1,
            "step": 1, **changes}


@pytest.fixture(scope="module")
def frames_input(tmp_path_factory):
    """A test frame folder of a small synthetic dataset (what `vadgpu score` reads)."""
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path_factory.mktemp("input") / "synth", seed=5, train_videos=1, test_videos=1,
                                  frames=20, frame_size=(48, 64), formats=("frames",))
    return root / "testing" / "frames" / "01"


def _score(source, model_args, out, *extra):
    from click.testing import CliRunner

    from vadgpu.cli.main import cli

    result = CliRunner().invoke(cli, ["score", str(source), *model_args, "--out", str(out), "--device", "cpu",
                                      "--loader", "torch", "--no-progress", *extra])
    return result.exit_code, result.output, result.exception


def test_nan_weights_are_refused_where_the_checkpoint_is_read(tmp_path, frames_input):
    import torch

    from vadgpu.checkpoint import load_checkpoint, save_checkpoint

    state = _tiny_state()
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    save_checkpoint(tmp_path / "nan.pt", state)
    with pytest.raises(VadgpuError, match=r"nan\.pt: \d+ of its \d+ weight tensors hold NaN or infinite values"):
        load_checkpoint(tmp_path / "nan.pt")
    code, output, exc = _score(frames_input, ["--checkpoint", str(tmp_path / "nan.pt")], tmp_path / "o")
    assert code == 1 and "hold NaN or infinite values" in output and isinstance(exc, SystemExit), output
    assert not (tmp_path / "o").exists()  # no all-NaN scores.csv


def test_an_onnx_model_that_gives_nan_scores_is_an_error(tmp_path, frames_input):
    pytest.importorskip("onnxruntime", reason=EXPORT_EXTRA)
    onnx = pytest.importorskip("onnx", reason=EXPORT_EXTRA)
    from onnx import numpy_helper

    from vadgpu.checkpoint import save_checkpoint
    from vadgpu.export import export_model

    save_checkpoint(tmp_path / "model.pt", _tiny_state())
    export_model(tmp_path / "model.pt", "onnx", tmp_path / "model.onnx")
    proto = onnx.load(str(tmp_path / "model.onnx"))
    for init in proto.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), np.nan), init.name))
    onnx.save(proto, str(tmp_path / "nan.onnx"))
    code, output, _ = _score(frames_input, ["--model", str(tmp_path / "nan.onnx")], tmp_path / "o")
    assert code == 1 and "nan.onnx gives NaN scores" in output, output


def test_a_checkpoint_that_would_unpack_to_gigabytes_is_refused_unread(tmp_path, monkeypatch):
    import zipfile

    import torch

    from vadgpu.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "small.pt", _tiny_state())
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(tmp_path / "small.pt") as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        with out.open("small/data/999", "w", force_zip64=True) as big:  # 256 MiB of zeros, deflated to ~250 kB
            block = bytes(1 << 20)
            for _ in range(256):
                big.write(block)
    assert bomb.stat().st_size < 2 << 20
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran on the bomb"))
    with pytest.raises(VadgpuError, match=r"bomb\.pt: its [\d.]+ MiB would unpack to 25\d MiB .* refused"):
        load_checkpoint(bomb)


def test_a_box_cache_that_would_unpack_to_gigabytes_is_refused(box_data, tmp_path):
    import zipfile

    from vadgpu.objects.boxes import read_box_cache

    _, cache, _ = box_data
    bomb = tmp_path / "boxes.npz"
    with zipfile.ZipFile(cache) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        with out.open("padding.npy", "w", force_zip64=True) as big:
            block = bytes(1 << 20)
            for _ in range(200):
                big.write(block)
    with pytest.raises(VadgpuError, match=r"box cache .*boxes\.npz: its .* would unpack to 20\d MiB"):
        read_box_cache(bomb)


@pytest.mark.parametrize("change, message", [
    ({"size": [100000, 100000]}, r"model option size=\(100000, 100000\) .*must be two integers \(H, W\) in "
                                 r"\[1, 4096\]"),
    ({"temporal": 10**6}, r"model option temporal=1000000 .*must be an integer in \[1, 256\]"),
    ({"max_skip": 10**6}, r"model option max_skip=1000000"),
    ({"noise_sigma": float("nan")}, r"model option noise_sigma=nan"),
])
def test_a_model_config_out_of_bounds_is_refused_before_any_memory_is_taken(tmp_path, frames_input, change,
                                                                            message):
    from vadgpu.checkpoint import save_checkpoint

    state = _tiny_state()
    state["model_config"] = {**state["model_config"], **change}
    save_checkpoint(tmp_path / "big.pt", state)
    code, output, exc = _score(frames_input, ["--checkpoint", str(tmp_path / "big.pt")], tmp_path / "o")
    assert code == 1 and isinstance(exc, SystemExit), output
    import re

    assert re.search(message, output), output


def test_torchs_advice_to_load_unsafely_is_not_shown(tmp_path):
    import os

    import torch

    from vadgpu.checkpoint import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(VadgpuError) as caught:
        load_checkpoint(tmp_path / "evil.pt")
    text = caught.value.format_message()
    assert "cannot be read" in text and "could run code" in text and "posix.getcwd" in text
    assert "weights_only" not in text and "trusted source" not in text


@pytest.mark.parametrize("mutate, message", [
    (lambda s: {**s, "train_scores": {"mse": [[0.1, float("nan")]]}}, r"train_scores\.mse\[0\] is not a list of "
                                                                       "finite scores"),
    (lambda s: {**s, "train_scores": {"mse": "abc"}}, r"train_scores\.mse must be a list of per-video scores"),
    (lambda s: {**s, "train_scores": [1, 2]}, r"train_scores is a list, not a mapping"),
    (lambda s: {**s, "train_scores": {"names": ["a", "b"], "mse": [[0.1]]}}, r"train_scores\.mse has 1 videos but "
                                                                             "names lists 2"),
    (lambda s: {**s, "train_scores": {"tube_location": {"grid": [6, 4], "kind": "mse", "mean": [0.0],
                                                         "std": [1.0], "count": [1]}}},
     r"tube_location\.mean must hold 24 finite numbers"),
    (lambda s: {**s, "config": {"root": 5}}, r"its config's root is 5, not text"),
    (lambda s: {**s, "model": {**s["model"], "extra": 3}}, r"its weights hold int under extra, not a tensor"),
])
def test_a_checkpoints_stored_scores_and_config_are_checked_where_it_is_read(tmp_path, mutate, message):
    import torch

    from vadgpu.checkpoint import load_checkpoint

    torch.save(mutate(_tiny_state()), tmp_path / "odd.pt")
    with pytest.raises(VadgpuError, match=rf"checkpoint .*odd\.pt.*{message}"):
        load_checkpoint(tmp_path / "odd.pt")


# -------------------------------------------------------------------------------------------------- ONNX metadata


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    """An ONNX export of ddl-tiny-cpu with training scores: (path, its metadata)."""
    pytest.importorskip("onnxruntime", reason=EXPORT_EXTRA)
    pytest.importorskip("onnx", reason=EXPORT_EXTRA)
    import torch

    from vadgpu.checkpoint import save_checkpoint
    from vadgpu.export import export_model

    base = tmp_path_factory.mktemp("onnx")
    scores = {"names": ["01"], "dataset": "synthetic", "root": "/x", "variant": None,
              **{k: [torch.linspace(0.01, 0.05, 20, dtype=torch.float64)] for k in ("patch-max", "psnr", "mse")}}
    save_checkpoint(base / "model.pt", _tiny_state(train_scores=scores))
    result = export_model(base / "model.pt", "onnx", base / "model.onnx")
    return base / "model.onnx", result.metadata


def _with_metadata(path: Path, target: Path, metadata) -> Path:
    import json

    import onnx

    proto = onnx.load(str(path))
    for entry in proto.metadata_props:
        if entry.key == "vadgpu":
            entry.value = metadata if isinstance(metadata, str) else json.dumps(metadata)
    onnx.save(proto, str(target))
    return target


ONNX_CASES = {
    "size disagrees": (lambda m: {**m, "model_config": {**m["model_config"], "size": [64, 64]}},
                       r"its metadata says input \(N, 1, 3, 64, 64\) but the graph's input clips is "),
    "T disagrees": (lambda m: {**m, "model_config": {**m["model_config"], "temporal": 5}},
                    r"its metadata says input \(N, 1, 5, 32, 32\)"),
    "channels disagree": (lambda m: {**m, "model_config": {**m["model_config"], "channels": 3}},
                          r"its metadata says input \(N, 3, 3, 32, 32\)"),
    "scores are text": (lambda m: {**m, "train_scores": {**m["train_scores"], "mse": "oops"}},
                        r"train_scores\.mse must be a list of per-video scores"),
    "a score is null": (lambda m: {**m, "train_scores": {**m["train_scores"], "psnr": [[0.1, None]]}},
                        r"train_scores\.psnr\[0\] is not a list of finite scores"),
    "scores a number": (lambda m: {**m, "train_scores": 7}, r"train_scores is a int, not a mapping"),
    "config a list": (lambda m: {**m, "model_config": [1, 2]}, r"its vadgpu metadata holds no model_config mapping"),
    "config unknown key": (lambda m: {**m, "model_config": {**m["model_config"], "bogus": 1}}, r"its metadata's "),
    "not json": (lambda m: "{not json", r"its vadgpu metadata is not JSON"),
    "json list": (lambda m: [1, 2, 3], r"its vadgpu metadata holds no model_config mapping"),
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_metadata_is_checked_against_the_graph(onnx_export, tmp_path, case):
    from vadgpu.export import OnnxModel

    path, metadata = onnx_export
    mutate, message = ONNX_CASES[case]
    changed = mutate(dict(metadata))
    bad = _with_metadata(path, tmp_path / "bad.onnx", changed)
    with pytest.raises(VadgpuError, match=rf"--model .*bad\.onnx: {message}"):
        OnnxModel(bad)


def test_score_with_bad_onnx_metadata_is_one_error_line(onnx_export, tmp_path, frames_input):
    path, metadata = onnx_export
    bad = _with_metadata(path, tmp_path / "bad.onnx", {**metadata, "model_config": {**metadata["model_config"],
                                                                                    "size": [16, 16]}})
    code, output, exc = _score(frames_input, ["--model", str(bad)], tmp_path / "o", "--norm", "train")
    assert code == 1 and isinstance(exc, SystemExit) and "does not describe this graph" in output, output


# ---------------------------------------------------------------------------------------------------- label files

# A 296-byte mask .mat (volLabel, 3 x 1 x 4 int64, with one byte of its header changed) that the fuzz test found:
# scipy 1.17's loadmat dies of a segmentation fault on it.
SCIPY_CRASHER = (
    "TUFUTEFCIDUuMCBNQVQtZmlsZSBQbGF0Zm9ybTogcG9zaXgsIENyZWF0ZWQgb246IE1vbiBEZWMgIDcgMTc6MDc6NTEgMjAyNgAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABSU0OAAAAoAAAAAYAAAAIAAAADgAAAAAAAAAFAAAADAAAAAMA"
    "AAABAAAABAAAAAAAAAABAAAACAAAAHZvbExhYmVsFgAAAGAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAEAAAAAAAAAAQAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAAA=")


def test_a_mat_label_file_that_crashes_scipy_is_one_clear_error(tmp_path):
    import base64

    import scipy.io

    from vadgpu.data.labels import read_mask_mat, read_mat_intervals

    bad = tmp_path / "01_label.mat"
    bad.write_bytes(base64.b64decode(SCIPY_CRASHER))
    done = subprocess.run([sys.executable, "-c", "import scipy.io, sys\ntry:\n    scipy.io.loadmat(sys.argv[1])\n"
                           "except Exception:\n    pass\n", str(bad)], capture_output=True, timeout=120)
    if done.returncode >= 0:
        pytest.skip("this scipy reads the file without crashing; nothing to isolate it from")
    for reader in (read_mask_mat, read_mat_intervals):
        with pytest.raises(VadgpuError, match=r"label file .*01_label\.mat is damaged: the MATLAB file reader "
                                              r"\(scipy\) crashed \(signal 11\)"):
            reader(bad)
    good = tmp_path / "02_label.mat"
    scipy.io.savemat(good, {"volLabel": np.stack([np.zeros((4, 6)), np.ones((4, 6))], axis=-1)})
    np.testing.assert_array_equal(read_mask_mat(good), [0, 1])  # read in the child, the same labels


@pytest.mark.parametrize("content, message", [
    ({"frames": 10**12, "intervals": []}, r"intervals need a positive integer \"frames\""),
    ({"labels": [0, [1, 0], 1]}, r"expected a flat list of 0/1 per frame"),
])
def test_json_labels_that_would_take_memory_or_nest_are_errors(tmp_path, content, message):
    import json

    from vadgpu.data.labels import read_json_labels

    path = tmp_path / "clip.json"
    path.write_text(json.dumps(content))
    with pytest.raises(VadgpuError, match=message):
        read_json_labels(path)
