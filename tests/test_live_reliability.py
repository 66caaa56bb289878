"""Live scoring and video outputs when things go wrong: every open event is written whatever ends scoring (SIGINT,
SIGTERM, a stream error, a frame-size change), a finite stream ends, time never goes back, and a video output on
a full disk or a read-only folder is one clear error."""

from __future__ import annotations

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
from conftest import read_only_folder

from cli_helpers import read_csv
from clip_media import write_ts
from stream_server import StreamServer
from vadgpu.checkpoint import save_checkpoint
from vadgpu.cli.main import cli
from vadgpu.models.registry import build_model

av = pytest.importorskip("av", reason="live scoring reads streams with PyAV")
pytestmark = pytest.mark.av
REPO = Path(__file__).resolve().parents[1]
FRAMES = 40


def _ts(path: Path, frames: int, height: int = 48, width: int = 64, seed: int = 0) -> Path:
    """An H.264 MPEG-TS of moving noise blocks (distinct frames), 25 fps."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return write_ts(path, (np.roll(base, 2 * i, axis=1) for i in range(frames)))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """ddl-tiny-cpu and ddl-objects-cpu weights with random values, an MPEG-TS of FRAMES frames, and an MPEG-TS
    whose frame size changes half-way."""
    base = tmp_path_factory.mktemp("live")
    paths = {}
    for preset in ("ddl-tiny-cpu", "ddl-objects-cpu"):
        torch.manual_seed(0)
        model = build_model(preset, **({"window": 48} if preset == "ddl-objects-cpu" else {}))  # as trained
        paths[preset] = save_checkpoint(base / f"{preset}.pt", {
            "model_name": preset, "model_config": model.config.to_dict(), "model": model.state_dict(), "epoch": 1,
            "step": 1})
    paths["ts"] = _ts(base / "clip.ts", FRAMES)
    paths["long"] = _ts(base / "long.ts", 150)  # more than the stdin probe reads (32 kB) before the first frame
    first, second = _ts(base / "a.ts", 12, 48, 64), _ts(base / "b.ts", 12, 64, 96, seed=1)
    paths["resized"] = base / "resized.ts"
    paths["resized"].write_bytes(first.read_bytes() + second.read_bytes())
    return paths


def _command(model: Path, source: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vadgpu", "score", source, "--checkpoint", str(model), "--out", str(out),
            "--device", "cpu", "--norm", "none", "--threshold", "-1e9", *extra]  # every frame alarms: one open event


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------- the open event is kept


@pytest.mark.parametrize("signum, code, reason", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_a_signal_with_an_alarm_open_writes_the_event_and_exits_128_plus_it(live, tmp_path, signum, code, reason):
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(live["ddl-tiny-cpu"], "-", out), stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO)
    data = live["long"].read_bytes()
    proc.stdin.write(data[:-2048])  # all but the end, and the pipe stays open: the stream goes on
    proc.stdin.flush()
    deadline = time.time() + 120
    while time.time() < deadline and (not (out / "scores.csv").exists() or len(read_csv(out / "scores.csv")) < 3):
        time.sleep(0.2)
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr.decode()
    events, rows = _events(out), read_csv(out / "scores.csv")
    assert len(events) == 1 and events[0]["ended_by"] == reason and events[0]["frames"] == len(rows) >= 3


@pytest.fixture
def server(live):
    server = StreamServer(live["ts"].parent)
    yield server
    server.close()


def test_a_stream_that_fails_for_good_writes_the_open_event(live, server, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(_command(live["ddl-tiny-cpu"], f"{server.url}/cut/clip.ts", out, "--retries", "0"),
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 1 and "Error: stream" in done.stderr and "Traceback" not in done.stderr, done.stderr
    events, rows = _events(out), read_csv(out / "scores.csv")
    assert len(events) == 1 and events[0]["ended_by"].startswith("error: stream")
    assert events[0]["frames"] == len(rows) > 0


def test_a_frame_size_change_writes_the_open_event(live, tmp_path):
    out = tmp_path / "out"
    with open(live["resized"], "rb") as stdin:
        done = subprocess.run(_command(live["ddl-objects-cpu"], "-", out, "--tube-norm", "none"), stdin=stdin,
                              capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 1 and "frame size changed from 64x48 to 96x64" in done.stderr, done.stderr
    events = _events(out)
    assert len(events) == 1 and "frame size changed" in events[0]["ended_by"] and events[0]["frames"] >= 8


def test_live_scoring_with_nan_weights_is_refused(live, tmp_path):
    state = torch.load(live["ddl-tiny-cpu"], weights_only=True)
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    save_checkpoint(tmp_path / "nan.pt", state)
    result = CliRunner().invoke(cli, ["score", str(live["ts"]), "--live", "--checkpoint", str(tmp_path / "nan.pt"),
                                      "--out", str(tmp_path / "o"), "--norm", "none", "--threshold", "1"])
    assert result.exit_code == 1 and "NaN or infinite values" in result.output, result.output


# ------------------------------------------------------------------------------------------ finite streams end


@pytest.mark.parametrize("path, frames", [("whole", FRAMES), ("half", None)])
def test_a_finite_http_stream_ends_instead_of_being_scored_again_and_again(live, server, tmp_path, path, frames):
    out = tmp_path / "out"
    done = subprocess.run(_command(live["ddl-tiny-cpu"], f"{server.url}/{path}/clip.ts", out, "--retry-delay", "0.1",
                                   "--drop-frames", "never"),  # a file served over HTTP: every frame
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "started again from its first frame" in done.stderr
    rows = read_csv(out / "scores.csv")
    assert [int(r["frame"]) for r in rows] == list(range(len(rows)))
    assert len(rows) == frames if frames else 0 < len(rows) < FRAMES  # every frame once, the decoder drained
    assert len(_events(out)) == 1


def test_time_goes_on_when_a_looped_stream_restarts_its_timestamps(live, tmp_path):
    looped = tmp_path / "looped.ts"
    looped.write_bytes(live["ts"].read_bytes() * 3)  # timestamps restart twice
    result = CliRunner().invoke(cli, ["score", str(looped), "--live", "--checkpoint", str(live["ddl-tiny-cpu"]),
                                      "--out", str(tmp_path / "o"), "--norm", "none", "--threshold", "-1e9"])
    assert result.exit_code == 0, result.output
    times = np.array([float(r["time"]) for r in read_csv(tmp_path / "o" / "scores.csv")])
    assert times.size == 3 * FRAMES and (np.diff(times) > 0).all()
    np.testing.assert_allclose(times, np.arange(3 * FRAMES) * 0.04, atol=1e-3)
    (event,) = _events(tmp_path / "o")
    assert event["end_time"] == pytest.approx((3 * FRAMES - 1) * 0.04, abs=1e-3)


# ------------------------------------------------------------------------------------- video outputs, bad disks


_FULL_DISK = ("import resource, runpy, signal, sys\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "limit = int(sys.argv[1])\nresource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
              "sys.argv = ['vadgpu'] + sys.argv[2:]\nrunpy.run_module('vadgpu', run_name='__main__')\n")


def test_video_out_on_a_full_disk_is_an_error_not_wrote(live, tmp_path):
    """A write past RLIMIT_FSIZE fails as on a full disk (EFBIG); the 40-frame annotated video needs more."""
    video, out = tmp_path / "annotated.mp4", tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, "6000", *_command(live["ddl-tiny-cpu"], str(live["ts"]),
                                                                              out, "--live", "--video-out",
                                                                              str(video))[3:]],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Error: cannot write --video-out {video}: File too large" in done.stderr
    assert "Traceback" not in done.stderr and f"wrote {video}" not in done.stdout
    assert len(_events(out)) == 1  # the alarm still reached events.jsonl


def test_video_out_in_a_read_only_folder_is_one_clear_error(live, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only_folder(locked):
        for target in (locked / "v.mp4", locked / "sub" / "v.mp4"):
            result = CliRunner().invoke(cli, ["score", str(live["ts"]), "--live", "--checkpoint",
                                              str(live["ddl-tiny-cpu"]), "--out", str(tmp_path / "o"),
                                              "--video-out", str(target), "--norm", "none", "--threshold", "1"])
            assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
            assert f"cannot write --video-out {target}" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.dali  # the torch loader's DataLoader workers share memory through files the size limit also stops
def test_heatmap_on_a_full_disk_is_an_error_and_leaves_no_temporary(live, tmp_path):
    from vadgpu.data.synth import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "synth", seed=1, train_videos=1, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("avi",))
    out = tmp_path / "scored"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, "30000", "score", str(root / "testing/videos/01.avi"),
                           "--checkpoint", str(live["ddl-tiny-cpu"]), "--out", str(out), "--heatmap-mp4",
                           "--device", "cpu", "--loader", "dali", "--no-progress"],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "VADGPU_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Error: cannot write the heatmap video" in done.stderr and "File too large" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() or not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_stream_video_out_is_tagged_and_playable(live, tmp_path):
    from vadgpu.outputs import written_by_vadgpu

    result = CliRunner().invoke(cli, ["score", str(live["ts"]), "--live", "--checkpoint", str(live["ddl-tiny-cpu"]),
                                      "--out", str(tmp_path / "o"), "--video-out", str(tmp_path / "v.mp4"),
                                      "--norm", "none", "--threshold", "1"])
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
    assert written_by_vadgpu(tmp_path / "v.mp4")
