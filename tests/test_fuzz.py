"""Fuzzing what vadgpu reads from files: random and mutated box caches, label files, checkpoints and ONNX metadata.

Every case must end in a VadgpuError (one clear message) or in a correct result, checked here: anything else (a
library's exception, a native crash, which takes the test process down with it) fails. The cases are seeded
(VADGPU_FUZZ_SEED changes the seed, VADGPU_FUZZ_CASES scales the counts) and each group stops at its count or
its time budget, whichever comes first, having run at least a minimum of cases.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import EXPORT_EXTRA
from conftest import make_box_dataset

from vadgpu.errors import VadgpuError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEED = int(os.environ.get("VADGPU_FUZZ_SEED", "0"))
SCALE = float(os.environ.get("VADGPU_FUZZ_CASES", "1"))
BUDGET_S = 15.0 * max(SCALE, 1.0)  # per group; the counts below take a few seconds each on a loaded 2-core CPU
NASTY = [float("nan"), float("inf"), -float("inf"), -1, 0, 1, 2, 3, 7, -(2**31), 2**31, 2**62, 1e30, -1e-30, 0.5,
         True, False, "", "x", None, [], {}, [1, 2], {"a": 1}]


class Outcomes:
    """Counts what the cases ended in; `run` takes one case and lets only VadgpuError through."""

    def __init__(self, name: str, cases: int, minimum: int):
        self.name, self.cases, self.minimum = name, max(1, int(cases * SCALE)), minimum
        self.errors = self.results = 0
        self.messages: set[str] = set()
        self.started = time.monotonic()

    def __iter__(self):
        for case in range(self.cases):
            if case >= self.minimum and time.monotonic() - self.started > BUDGET_S:
                break
            yield case

    def attempt(self, case) -> None:
        """Run `case()`: it returns (a correct result, which it checked) or raises VadgpuError; nothing else."""
        try:
            case()
        except VadgpuError as exc:
            self.error(exc)
        else:
            self.results += 1

    def error(self, exc: VadgpuError) -> None:
        message = exc.format_message()
        assert message and "Traceback" not in message
        self.errors += 1
        self.messages.add(message.split(":")[0][:60])

    def done(self) -> str:
        total = self.errors + self.results
        assert total >= self.minimum, f"{self.name}: only {total} cases ran"
        assert self.errors and self.results, f"{self.name}: {self.errors} errors, {self.results} results"
        return f"{self.name}: {total} cases, {self.errors} errors, {self.results} correct results, " \
               f"{time.monotonic() - self.started:.1f} s"


def _nasty(rng: np.random.Generator):
    return NASTY[rng.integers(len(NASTY))]


def _random_json(rng: np.random.Generator, depth: int = 0):
    kind = rng.integers(7 if depth < 3 else 4)
    if kind == 0:
        return _nasty(rng)
    if kind == 1:
        return int(rng.integers(-5, 50))
    if kind == 2:
        return float(rng.normal())
    if kind == 3:
        return str(rng.choice(["labels", "frames", "intervals", "mse", "a"]))
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.integers(0, 6))]
    if kind == 5:
        return [int(v) for v in rng.integers(0, 2, rng.integers(1, 30))]
    keys = ["labels", "frames", "intervals", "names", "x"]
    return {str(rng.choice(keys)): _random_json(rng, depth + 1) for _ in range(rng.integers(0, 4))}


def _mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip some bytes, or cut the file, or both."""
    data = bytearray(data)
    if rng.random() < 0.5 and len(data) > 8:
        for index in rng.integers(0, len(data), rng.integers(1, 8)):
            data[index] = int(rng.integers(0, 256))
    if rng.random() < 0.5:
        data = data[: int(rng.integers(0, len(data) + 1))]
    return bytes(data)


# ---------------------------------------------------------------------------------------------------- box caches


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    """A synthetic dataset prepared for the torch loader, and its box cache of both splits."""
    from vadgpu.data.prepare import load_prepared

    base = tmp_path_factory.mktemp("fuzz-boxes")
    _, data, cache = make_box_dataset(base, seed=2, videos=1)
    prepared = load_prepared(data, "cpu", cache=base / "cache", progress=False, loader="torch")
    with np.load(cache) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return cache, arrays, list(prepared.train), list(prepared.test)


def _mutate_arrays(arrays: dict, rng: np.random.Generator) -> dict:
    out = dict(arrays)
    for _ in range(rng.integers(1, 4)):
        key = str(rng.choice(sorted(out))) if out else "x1"
        value = out.get(key, np.zeros(3))
        kind = rng.integers(8)
        if kind == 0 and value.size:  # one or a few entries become a nasty value
            nasty = _nasty(rng)
            try:
                value = value.copy()
                value.reshape(-1)[rng.integers(0, value.size, rng.integers(1, 4))] = nasty
            except (TypeError, ValueError, OverflowError):
                value = np.array([nasty] * max(1, value.size), dtype=object)
        elif kind == 1:
            out.pop(key, None)
            continue
        elif kind == 2:
            dtype = rng.choice(["float32", "float64", "int64", "int8", "uint8", "bool", "U3", "float16"])
            try:
                value = value.astype(dtype)
            except (ValueError, TypeError, OverflowError):
                value = np.array(["?"])
        elif kind == 3:
            value = value[: rng.integers(0, max(1, value.size))] if value.ndim else value.reshape(1)
        elif kind == 4:
            value = np.stack([value, value]) if value.ndim else value.reshape(1, 1)
        elif kind == 5:
            value = rng.normal(0, 10, rng.integers(0, 5, rng.integers(0, 3))).astype(
                rng.choice(["float32", "int32"]))
        elif kind == 6 and value.ndim:
            value = rng.permutation(value)
        else:
            value = np.concatenate([value.reshape(-1)] * 2) if value.ndim else value
        out[key] = value
    return out


def _check_tables(path, train, test) -> None:
    """A cache read_box_cache accepted must work everywhere boxes go: tubes cut with roi_align (a NaN box crashed
    it natively), the training tables, every value in range."""
    from vadgpu.objects.boxes import ObjectBoxes
    from vadgpu.objects.tubes import FrameBoxes, crop_tubes, tube_windows

    frames = FrameBoxes.load(path, test, "test")
    assert np.isfinite(frames.boxes).all() and (frames.boxes >= 0).all() and (frames.boxes <= 1).all()
    video = np.zeros(test[0].num_frames, np.int64)
    owner, picked = frames.select(video, np.arange(test[0].num_frames))
    if len(owner):
        windows = tube_windows(torch.from_numpy(picked), (48, 64), 16)
        tubes = crop_tubes(torch.rand(test[0].num_frames, 1, 3, 48, 64), torch.from_numpy(owner), windows, 8)
        assert tubes.shape == (len(owner), 1, 3, 8, 8) and torch.isfinite(tubes).all()
    table = ObjectBoxes.load(path, train, "cpu", 3)
    sampled, valid = table.sample(torch.zeros(8, dtype=torch.int64), torch.arange(8), torch.Generator())
    assert sampled.shape == (8, 3, 4) and torch.isfinite(sampled).all() and valid.dtype == torch.bool


def test_fuzzed_box_caches_give_clear_errors_or_valid_tables(boxes, tmp_path):
    from vadgpu.objects.boxes import read_box_cache

    cache, arrays, train, test = boxes
    rng = np.random.default_rng(SEED)
    outcomes = Outcomes("box caches", 150, 60)
    raw = cache.read_bytes()
    for case in outcomes:
        path = tmp_path / f"case{case % 4}.npz"
        form = rng.integers(10)
        if form == 0:
            path.write_bytes(_mutate_bytes(raw, rng))
        elif form == 1:
            path.write_bytes(rng.bytes(int(rng.integers(0, 400))))
        else:
            np.savez(path, **_mutate_arrays(arrays, rng)) if rng.random() < 0.5 else \
                np.savez_compressed(path, **_mutate_arrays(arrays, rng))
        outcomes.attempt(lambda: (read_box_cache(path), _check_tables(path, train, test)))
    print(outcomes.done())


# ---------------------------------------------------------------------------------------------------- label files


def _label_file(tmp_path: Path, case: int, rng: np.random.Generator) -> tuple[Path, str]:
    """A random or mutated label file and the reader it is for: json, npy, ucsd (.m), intervals (.mat gt) or
    masks (.mat volLabel)."""
    import scipy.io

    kind = str(rng.choice(["json", "npy", "ucsd", "intervals", "masks"]))
    if kind == "json":
        path = tmp_path / f"l{case % 4}.json"
        choice = rng.integers(4)
        if choice == 0:
            value = {"frames": _nasty(rng) if rng.random() < 0.5 else int(rng.integers(1, 40)),
                     "intervals": [[_nasty(rng) if rng.random() < 0.3 else int(rng.integers(-2, 45)),
                                    int(rng.integers(-2, 45))] for _ in range(rng.integers(0, 4))]}
        elif choice == 1:
            value = {"labels": [int(v) for v in rng.integers(0, 2, rng.integers(1, 20))] + [_nasty(rng)] *
                     int(rng.integers(0, 2))}
        else:
            value = _random_json(rng)
        text = json.dumps(value) if rng.random() < 0.9 else json.dumps(value)[: int(rng.integers(0, 20))]
        path.write_text(text)
    elif kind == "npy":
        path = tmp_path / f"l{case % 4}.npy"
        shape = tuple(int(s) for s in rng.integers(0, 6, rng.integers(0, 3)))
        dtype = str(rng.choice(["uint8", "int64", "float32", "bool", "U2", "complex64"]))
        array = rng.integers(0, 3 if rng.random() < 0.3 else 2, shape).astype(dtype)
        buffer = io.BytesIO()
        np.save(buffer, array if rng.random() < 0.9 else np.array([None, 1], dtype=object), allow_pickle=True)
        data = buffer.getvalue()
        path.write_bytes(data if rng.random() < 0.8 else _mutate_bytes(data, rng))
    elif kind == "ucsd":
        path = tmp_path / f"l{case % 4}.m"
        parts = [str(rng.choice(["12:40", "1:5", "a:b", "5", "-3:4", "7:2", "", "99999999999999999999:1"]))
                 for _ in range(rng.integers(0, 4))]
        lines = [f"TestVideoFile{{end+1}}.gt_frame = [{', '.join(parts)}];" for _ in range(rng.integers(0, 3))]
        path.write_text("\n".join(lines + ["% comment", "junk = [1:2];"]))
    else:
        path = tmp_path / f"l{case % 4}.mat"
        if kind == "intervals":
            cell = np.empty(int(rng.integers(0, 4)), dtype=object)
            entries = [np.array([[1, 5], [3, 9]]), np.array([[float("nan")], [2.0]]), np.zeros((3, 3)),
                       np.array(["ab"]), np.array([[1e30], [2]]), np.array([[4], [2]]), np.zeros((0, 0)),
                       np.array([[2.5], [3]]), np.array([[-4], [2]])]
            for i in range(cell.size):
                cell[i] = entries[int(rng.integers(len(entries)))]
            contents = {"gt": cell} if rng.random() < 0.9 else {"other": cell, "more": 1}
        else:
            masks = rng.integers(0, 2, tuple(int(s) for s in rng.integers(0, 5, rng.integers(1, 4))))
            contents = {"volLabel": masks}
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, contents)
        data = buffer.getvalue()
        path.write_bytes(data if rng.random() < 0.8 else _mutate_bytes(data, rng))
    return path, kind


def test_fuzzed_label_files_give_clear_errors_or_frame_labels(tmp_path):
    from vadgpu.data.labels import (intervals_to_labels, read_label_file, read_mat_intervals,
                                    read_ucsd_m_intervals)

    rng = np.random.default_rng(SEED + 1)
    outcomes = Outcomes("label files", 200, 80)

    def check(path: Path, kind: str, frames: int) -> None:
        if kind in ("ucsd", "intervals"):
            videos = (read_ucsd_m_intervals if kind == "ucsd" else read_mat_intervals)(path)
            assert isinstance(videos, list) and videos
            for intervals in videos:
                assert all(isinstance(a, int) and isinstance(b, int) for a, b in intervals)
                assert intervals_to_labels(intervals, frames, path).dtype == np.uint8
        else:
            labels = read_label_file(path)
            assert labels.ndim == 1 and labels.size > 0 and labels.dtype == np.uint8
            assert set(np.unique(labels).tolist()) <= {0, 1}

    for case in outcomes:
        path, kind = _label_file(tmp_path, case, rng)
        outcomes.attempt(lambda: check(path, kind, int(rng.integers(1, 50))))
    print(outcomes.done())


# ---------------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def states():
    """Valid weights-file states of three tiny presets, training scores and a training config included."""
    from vadgpu.models.registry import build_model

    out = []
    for preset in ("ddl-tiny-cpu", "dualpath-tiny-cpu", "ddl-objects-cpu"):
        torch.manual_seed(0)
        model = build_model(preset, **({"window": 48} if preset == "ddl-objects-cpu" else {}))  # as trained
        scores = {"names": ["01", "02"], "dataset": "synthetic", "root": "/data", "variant": None,
                  **{k: [torch.rand(12, dtype=torch.float64), torch.rand(9, dtype=torch.float64)]
                     for k in ("patch-max", "psnr", "mse", "mse-location")},
                  "tube_location": {"kind": "mse", "grid": [6, 4], "mean": torch.zeros(24, dtype=torch.float64),
                                    "std": torch.ones(24, dtype=torch.float64),
                                    "count": torch.ones(24, dtype=torch.int64)}}
        out.append({"model_name": preset, "model_config": model.config.to_dict(), "model": model.state_dict(),
                    "epoch": 1, "step": 4, "train_scores": scores,
                    "config": {"dataset": "synthetic", "root": "/data", "variant": None, "boxes": None}})
    return out


def _mutate_state(state: dict, rng: np.random.Generator):
    import copy

    state = copy.deepcopy(state)
    for _ in range(rng.integers(1, 3)):
        target = str(rng.choice(["model_config", "model", "train_scores", "config", "top"]))
        if target == "top":
            key = str(rng.choice(["model_name", "model_config", "model", "epoch", "train_scores", "config"]))
            if rng.random() < 0.5:
                state.pop(key, None)
            else:
                state[key] = _nasty(rng)
            continue
        part = state.get(target)
        if not isinstance(part, dict) or not part:
            state[target] = _nasty(rng)
            continue
        key = str(rng.choice(sorted(part)))
        choice = rng.integers(5)
        if target == "model" and isinstance(part[key], torch.Tensor):
            tensor = part[key]
            if choice == 0:
                part[key] = torch.zeros(tuple(int(s) + 1 for s in tensor.shape))
            elif choice == 1 and tensor.is_floating_point() and tensor.numel():
                broken = tensor.clone()
                broken.reshape(-1)[0] = float("nan") if broken.is_contiguous() else broken.flatten()[0]
                part[key] = broken if broken.is_contiguous() else torch.full_like(tensor, float("nan"))
            elif choice == 2:
                part[key] = tensor.to(torch.int32)
            elif choice == 3:
                part.pop(key)
            else:
                part[key] = _nasty(rng)
        elif target == "train_scores" and choice < 2 and isinstance(part[key], list) and part[key]:
            part[key][0] = _nasty(rng) if choice == 0 else torch.full((3,), float("nan"))
        elif choice == 4:
            part.pop(key)
        else:
            part[key] = _nasty(rng) if rng.random() < 0.8 else _random_json(rng)
    return state


def _check_stats(stored: dict | None, config) -> None:
    """Stored training scores that were accepted give finite statistics for every score kind."""
    from vadgpu.scoring.protocol import Protocol
    from vadgpu.scoring.train_scores import frame_stats, raw_train_scores

    for score in ("patch-max", "psnr", "mse"):
        protocol = Protocol(score=score, norm="train").for_model(config)
        scores = raw_train_scores(stored, protocol) if stored else None
        stats = frame_stats(scores, protocol, config.temporal, stored.get("names") or [], "fuzz") if scores else None
        assert stats is None or (math.isfinite(stats.mean) and math.isfinite(stats.std))


def _check_model(ckpt: dict) -> None:
    """A checkpoint load_checkpoint accepted must build, score finitely, and give training statistics."""
    from vadgpu.models.registry import model_from_checkpoint
    from vadgpu.scoring.calibration import stored_calibration

    model = model_from_checkpoint(ckpt).eval()
    cfg = model.config
    clips = torch.rand(2, cfg.channels, cfg.temporal, *cfg.size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        target, recon = model.reconstruct(clips)
    assert recon.shape == target.shape == (2, cfg.channels, *cfg.size) and torch.isfinite(recon).all()
    stored = ckpt.get("train_scores")
    _check_stats(stored, cfg)
    if cfg.clips == "objects":  # the calibration record (or an older file's location statistics) reads cleanly
        calibration = stored_calibration(ckpt)
        assert calibration is None or bool(torch.isfinite(calibration.location.mean).all())


def test_fuzzed_checkpoints_give_clear_errors_or_working_models(states, tmp_path):
    from vadgpu.checkpoint import load_checkpoint

    rng = np.random.default_rng(SEED + 2)
    outcomes = Outcomes("checkpoints", 120, 50)
    for case in outcomes:
        path = tmp_path / f"c{case % 4}.pt"
        state = states[case % len(states)]
        form = rng.integers(8)
        if form == 0:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            path.write_bytes(_mutate_bytes(buffer.getvalue(), rng))
        elif form == 1:
            path.write_bytes(rng.bytes(int(rng.integers(0, 300))))
        elif form == 2:
            torch.save(state, path)  # intact: a correct result expected
        else:
            torch.save(_mutate_state(state, rng), path)
        outcomes.attempt(lambda: _check_model(load_checkpoint(path)))
    print(outcomes.done())


# -------------------------------------------------------------------------------------------------- ONNX metadata


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, states):
    pytest.importorskip("onnxruntime", reason=EXPORT_EXTRA)
    pytest.importorskip("onnx", reason=EXPORT_EXTRA)
    from vadgpu.checkpoint import save_checkpoint
    from vadgpu.export import export_model

    base = tmp_path_factory.mktemp("fuzz-onnx")
    save_checkpoint(base / "model.pt", states[0])
    result = export_model(base / "model.pt", "onnx", base / "model.onnx")
    return base / "model.onnx", result.metadata


def _mutate_json(value, rng: np.random.Generator, depth: int = 0):
    if isinstance(value, dict) and value and rng.random() < 0.8:
        value = dict(value)
        key = str(rng.choice(sorted(value)))
        choice = rng.integers(4)
        if choice == 0:
            value.pop(key)
        elif choice == 1 and depth < 4:
            value[key] = _mutate_json(value[key], rng, depth + 1)
        else:
            value[key] = _nasty(rng) if rng.random() < 0.7 else _random_json(rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        value = list(value)
        index = int(rng.integers(len(value)))
        value[index] = _mutate_json(value[index], rng, depth + 1) if depth < 4 else _nasty(rng)
        return value
    return _nasty(rng) if rng.random() < 0.7 else _random_json(rng)


def test_fuzzed_onnx_metadata_gives_clear_errors_or_a_matching_model(onnx_file, tmp_path):
    import onnx
    import onnxruntime as ort

    from vadgpu.export import OnnxModel
    from vadgpu.model_checks import read_onnx_metadata

    path, metadata = onnx_file
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED + 3)
    outcomes = Outcomes("ONNX metadata", 150, 60)

    def check(text: str, whole_file: bool) -> None:
        if whole_file:  # now and then through a whole file, as `vadgpu score --model` reads it
            proto = onnx.load(str(path))
            for entry in proto.metadata_props:
                entry.value = text if entry.key == "vadgpu" else entry.value
            onnx.save(proto, str(tmp_path / "m.onnx"))
            model = OnnxModel(tmp_path / "m.onnx")
            config, stored = model.config, model.train_scores
        else:
            _, config, stored = read_onnx_metadata(path, session, text)
        assert [config.channels, config.temporal, *config.size] == session.get_inputs()[0].shape[1:]
        _check_stats(stored, config)

    for case in outcomes:
        form = rng.integers(10)
        if form == 0:
            text = json.dumps(metadata)[: int(rng.integers(0, 400))]
        elif form == 1:
            text = "[" * int(rng.integers(1, 100_000)) if rng.random() < 0.3 else rng.bytes(50).decode("latin-1")
        elif form == 2:
            text = json.dumps(metadata)  # intact
        else:
            text = json.dumps(_mutate_json(metadata, rng))
        outcomes.attempt(lambda: check(text, whole_file=case % 10 == 9))
    print(outcomes.done())


def test_the_fuzz_helpers_mutate(boxes):
    """The mutations change what they are given (a fuzz that mutates nothing would pass whatever vadgpu does)."""
    _, arrays, _, _ = boxes
    rng = np.random.default_rng(0)
    changed = sum(any(k not in m or m[k].shape != v.shape or m[k].dtype != v.dtype
                      or not np.array_equal(m[k], v) for k, v in arrays.items()) or set(m) != set(arrays)
                  for m in (_mutate_arrays(arrays, rng) for _ in range(50)))
    assert changed >= 45
    assert zipfile.is_zipfile(io.BytesIO(_mutate_bytes(b"PK\x05\x06" + bytes(18), rng))) in (True, False)
