"""`vadgpu export` (ONNX and TorchScript round trips, the missing extra, scoring with the ONNX file) and live
scoring (`vadgpu score SOURCE`): from a local HTTP server, from stdin, a stream that stops mid-way, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli_helpers import EXPORT_EXTRA, invoke, read_csv
from clip_media import write_ts
from stream_server import StreamServer

from vadgpu.checkpoint import save_checkpoint
from vadgpu.cli.main import cli
from vadgpu.errors import VadgpuError
from vadgpu.models.registry import build_model

av = pytest.importorskip("av", reason="live scoring reads streams with PyAV")
pytestmark = pytest.mark.av  # the whole module: declared, so `-m av` selects it
FRAMES = 30


def _save(path, preset, train_scores=None, **extra):
    torch.manual_seed(0)
    if preset.endswith("objects-cpu"):
        extra.setdefault("window", 48)  # a window in pixels, as training writes it for `auto`
    model = build_model(preset, **extra)
    state = {"model_name": preset, "model_config": model.config.to_dict(), "model": model.state_dict(), "epoch": 1,
             "step": 1, "train_scores": train_scores}
    save_checkpoint(path, state)
    return model


def _write_ts(source: Path, target: Path) -> Path:
    """`source` re-encoded as MPEG-TS (a format that streams without seeking)."""
    with av.open(str(source)) as inp:
        return write_ts(target, (frame.to_ndarray(format="rgb24") for frame in inp.decode(video=0)))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A synthetic test video (H.264 MP4, MJPEG AVI, MPEG-TS) and a ddl-tiny-cpu model.pt with training scores."""
    from vadgpu.data.synth import make_synthetic_dataset

    base = tmp_path_factory.mktemp("live")
    root = make_synthetic_dataset(base / "synth", seed=2, train_videos=1, test_videos=1, frames=FRAMES,
                                  frame_size=(48, 64), formats=("avi", "mp4"))
    rng = np.random.default_rng(0)
    scores = {"names": ["01"], "dataset": "synthetic", "root": str(root), "variant": None,
              **{kind: [torch.from_numpy(rng.normal(0.05, 0.01, FRAMES))] for kind in ("patch-max", "psnr", "mse")}}
    model_pt = base / "run" / "model.pt"
    _save(model_pt, "ddl-tiny-cpu", scores)
    mp4 = root / "testing" / "videos_h264" / "01.mp4"
    ts = _write_ts(mp4, base / "01.ts")
    return {"base": base, "model": model_pt, "mp4": mp4, "avi": root / "testing" / "videos" / "01.avi", "ts": ts}


# ------------------------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("preset", ["ddl-tiny-cpu", "dualpath-tiny-cpu", "ddl-objects-cpu"])
def test_export_round_trips_equal_torch(preset, tmp_path):
    pytest.importorskip("onnxruntime", reason=EXPORT_EXTRA)
    from vadgpu.export import OnnxModel, read_torchscript_metadata

    model = _save(tmp_path / "model.pt", preset).eval()
    cfg = model.config
    clips = torch.rand(5, cfg.channels, cfg.temporal, *cfg.size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.reconstruct(clips)[1].numpy()
    for fmt in ("onnx", "torchscript"):
        out = tmp_path / f"model.{fmt}"
        code, output = invoke(["export", "--checkpoint", str(tmp_path / "model.pt"), "--format", fmt,
                                "--out", str(out)])
        assert code == 0, output
        assert "max abs difference to torch" in output and str(out) in output
        if fmt == "onnx":
            exported = OnnxModel(out)
            assert exported.config == cfg and exported.metadata["input"]["shape"][1:] == [cfg.channels,
                                                                                         cfg.temporal, *cfg.size]
            got = exported.reconstruct(clips)[1].numpy()
        else:
            assert read_torchscript_metadata(out)["model_config"] == cfg.to_dict()
            with pytest.warns(FutureWarning) if torch.__version__ >= "2.9" else contextlib.nullcontext():
                loaded = torch.jit.load(str(out))  # deprecated in favour of torch.export, still supported
            got = loaded(clips).detach().numpy()
        assert got.shape == expected.shape  # a batch of 5: the batch axis is dynamic
        assert np.abs(got - expected).max() <= 1e-4


def test_missing_export_extra_is_one_clear_error(tmp_path, monkeypatch):
    from vadgpu.export import export_model

    _save(tmp_path / "model.pt", "ddl-tiny-cpu")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(VadgpuError, match=r"vadgpu\[export\]"):
        export_model(tmp_path / "model.pt", "onnx", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_score_with_the_onnx_model_equals_the_checkpoint(live, tmp_path):
    pytest.importorskip("onnxruntime", reason=EXPORT_EXTRA)
    onnx_file = tmp_path / "model.onnx"
    assert invoke(["export", "--checkpoint", str(live["model"]), "--out", str(onnx_file)])[0] == 0
    common = [str(live["avi"]), "--device", "cpu", "--no-progress", "--loader", "torch", "--norm", "train"]
    code, output = invoke(["score", *common, "--model", str(onnx_file), "--out", str(tmp_path / "onnx")])
    assert code == 0, output
    code, output = invoke(["score", *common, "--checkpoint", str(live["model"]), "--out", str(tmp_path / "pt")])
    assert code == 0, output
    a, b = read_csv(tmp_path / "onnx" / "scores.csv"), read_csv(tmp_path / "pt" / "scores.csv")
    assert len(a) == len(b) == FRAMES
    np.testing.assert_allclose([float(r["score"]) for r in a], [float(r["score"]) for r in b], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------------- live
def _live(live, source, out, *extra):
    return invoke(["score", str(source), "--checkpoint", str(live["model"]), "--out", str(out), "--device", "cpu",
                    *extra])


def test_live_http_stream_equals_the_file_and_the_offline_scores(live, tmp_path):
    from vadgpu.scoring.protocol import Protocol
    from vadgpu.evaluation.runner import score_input

    server = StreamServer(live["mp4"].parent)
    try:
        code, output = _live(live, f"{server.url}/01.mp4", tmp_path / "http", "--video-out", str(tmp_path / "http.mp4"),
                             "--drop-frames", "never")  # a file served over HTTP: every frame
    finally:
        server.close()
    assert code == 0, output
    assert "frames/s" in output and "clip delay of 1 frame(s)" in output
    code, output = _live(live, live["mp4"], tmp_path / "file", "--live")
    assert code == 0, output
    streamed, filed = read_csv(tmp_path / "http" / "scores.csv"), read_csv(tmp_path / "file" / "scores.csv")
    assert [int(r["frame"]) for r in streamed] == list(range(FRAMES))
    assert streamed == filed  # the same frames, the same causal settings: the same numbers
    # the raw scores agree with the offline loader's within decoding and conversion rounding
    offline = score_input(live["mp4"], live["model"], out=tmp_path / "offline", device="cpu", progress=False,
                          loader="torch", protocol=Protocol(norm="none", smooth="none"))
    np.testing.assert_allclose([float(r["raw_score"]) for r in streamed], offline.video.raw, rtol=0.05)
    with av.open(str(tmp_path / "http.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES


def test_live_scores_follow_the_causal_protocol(live, tmp_path):
    from vadgpu.scoring.protocol import Protocol, trailing_smooth
    from vadgpu.scoring.train_scores import frame_stats, raw_train_scores

    code, output = _live(live, live["avi"], tmp_path / "x", "--live", "--window", "5", "--threshold", "0",
                         "--merge-gap", "0")  # each alarm frame in one event
    assert code == 0, output
    rows = read_csv(tmp_path / "x" / "scores.csv")
    raw = np.array([float(r["raw_score"]) for r in rows])
    protocol = Protocol(window=5)
    stored = torch.load(live["model"], weights_only=True)["train_scores"]
    stats = frame_stats(raw_train_scores(stored, protocol), protocol, 3, stored["names"], "model.pt",
                        smooth=trailing_smooth)
    np.testing.assert_allclose([float(r["score"]) for r in rows], (trailing_smooth(raw, protocol) - stats.mean)
                               / stats.std, rtol=1e-9)
    events = [json.loads(line) for line in (tmp_path / "x" / "events.jsonl").read_text().splitlines()]
    alarms = np.array([int(r["alarm"]) for r in rows])
    assert sum(e["frames"] for e in events) == alarms.sum() > 0 and "ALARM" in output


def test_live_from_stdin(live, tmp_path):
    with open(live["ts"], "rb") as stdin:
        done = subprocess.run([sys.executable, "-m", "vadgpu", "score", "-", "--checkpoint", str(live["model"]),
                               "--out", str(tmp_path / "stdin"), "--device", "cpu"], stdin=stdin,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(read_csv(tmp_path / "stdin" / "scores.csv")) == FRAMES


def test_a_stream_that_stops_midway_is_retried_then_a_clear_error(live, tmp_path):
    server = StreamServer(live["ts"].parent)
    try:
        result = CliRunner().invoke(cli, ["score", f"{server.url}/cut/{live['ts'].name}", "--checkpoint",
                                          str(live["model"]), "--out", str(tmp_path / "cut"), "--device", "cpu",
                                          "--retries", "1", "--retry-delay", "0.1"])
    finally:
        server.close()
    assert result.exit_code == 1
    assert "failed after 1 retries" in result.output and "Server Error" in result.output
    rows = read_csv(tmp_path / "cut" / "scores.csv")
    assert 0 < len(rows) < FRAMES and all(len(r) == 5 and r["score"] for r in rows)


def test_ctrl_c_leaves_complete_jsonl_and_a_playable_video(live, tmp_path):
    out, video = tmp_path / "int", tmp_path / "int.mp4"
    data = live["ts"].read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "vadgpu", "score", "-", "--checkpoint", str(live["model"]),
                             "--out", str(out), "--device", "cpu", "--norm", "none", "--threshold", "-1",
                             "--video-out", str(video)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(data[:-2048])  # all but the end, and the pipe stays open: the stream goes on
    proc.stdin.flush()
    deadline = time.time() + 60
    while time.time() < deadline and (not (out / "scores.csv").exists() or len(read_csv(out / "scores.csv")) < 3):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()  # as an interrupted command exits
    rows = read_csv(out / "scores.csv")
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == 1 and events[0]["ended_by"] == "interrupted"
    assert events[0]["frames"] == len(rows) >= 3
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(rows)
