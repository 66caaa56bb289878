"""Faults: Ctrl-C saves and exits; SIGKILL mid-epoch loses at most the steps since the last checkpoint; --resume
finishes the run with the same weights as an uninterrupted one; no checkpoint is ever seen truncated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vadgpu.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

EPOCHS, BATCH = 2, 4


def _train_cmd(root: Path, boxes: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vadgpu", "train", "--dataset", "synthetic", "--root", str(root), "--model", "ddl",
            "--preset", "ddl-tiny-cpu", "--out", str(out), "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
            "--boxes", str(boxes), "--device", "cpu", "--log-every", "2", "--checkpoint-every", "2", "--workers", "1",
            "--save-period", "1", "--no-progress", *extra]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "VADGPU_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def _all_checkpoints_load(run: Path) -> list[dict]:
    """Every visible .pt loads (temporary files are hidden dot-files and are not checkpoints)."""
    return [load_checkpoint(p) for p in sorted((run / "checkpoints").glob("*.pt"))]


def _run_until(cmd, env, run: Path, until, sig: int, timeout: float = 120.0) -> subprocess.Popen:
    """Start `cmd`, poll checkpoints (each must load) until `until(last)` holds, then send `sig`."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        last = run / "checkpoints" / "last.pt"
        if last.exists():
            state = load_checkpoint(last)  # a reader racing the writer never sees a partial file
            if until(state):
                proc.send_signal(sig)
                break
        time.sleep(0.05)
    proc.wait(timeout=timeout)
    return proc


def test_interrupt_kill_resume_matches_uninterrupted_run(synth, tmp_path):
    root, boxes, cache = synth
    env = _env(cache)
    ref = tmp_path / "ref"
    done = subprocess.run(_train_cmd(root, boxes, ref), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vadgpu eval --run" in done.stdout and "checkpoints/last.pt" in done.stdout
    reference = load_checkpoint(ref / "checkpoints" / "last.pt")
    steps_per_epoch = reference["step"] // EPOCHS
    assert reference["epoch"] == EPOCHS and steps_per_epoch >= 4

    run = tmp_path / "run"
    # 1. Ctrl-C in epoch 1: the loop saves at the next step boundary and exits with 130 and a resume hint.
    proc = _run_until(_train_cmd(root, boxes, run), env, run, lambda s: s["step"] >= 2, signal.SIGINT)
    out = proc.stdout.read()
    assert proc.returncode == 130, out
    assert "--resume" in out and "Traceback" not in out
    interrupted = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 2 <= interrupted["step"] < reference["step"]

    # 2. Resume, then SIGKILL mid-epoch 2 (after a mid-epoch checkpoint): nothing may be left truncated.
    resume = [sys.executable, "-m", "vadgpu", "train", "--out", str(run), "--resume", "--no-progress"]
    proc = _run_until(resume, env, run, lambda s: s["epoch"] == 1 and s["batch_in_epoch"] >= 2, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    states = _all_checkpoints_load(run)
    killed = load_checkpoint(run / "checkpoints" / "last.pt")
    assert killed["epoch"] == 1 and 0 < killed["batch_in_epoch"] < steps_per_epoch, "the kill was not mid-epoch"
    assert any(s["epoch"] == 1 and s["batch_in_epoch"] == 0 for s in states), "epoch-001.pt is missing"

    # 3. Resume again: the run finishes, and the weights equal the uninterrupted run's (RNG, data order restored).
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    final = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (final["epoch"], final["step"]) == (EPOCHS, reference["step"])
    for key, value in reference["model"].items():
        assert torch.equal(value, final["model"][key]), f"{key} differs from the uninterrupted run"
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == reference["step"], "log.jsonl repeats or misses steps"
    assert json.loads((run / "summary.json").read_text())["steps"] == reference["step"]


@pytest.mark.gpu
def test_cuda_resume_continues_the_run(synth, tmp_path):
    """A CUDA run resumes where it stopped and ends where an uninterrupted CUDA run ends (the checkpoint's RNG
    states are host tensors whatever device trained), as the CPU test above shows bit for bit."""
    root, boxes, cache = synth
    run, straight = tmp_path / "run", tmp_path / "straight"
    cuda = ("--device", "cuda", "--no-amp")
    for out, extra in ((run, ("--max-steps", "3")), (straight, ("--max-steps", "6"))):
        done = subprocess.run(_train_cmd(root, boxes, out, *cuda, *extra), env=_env(cache), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")
    assert stopped["step"] == 3
    resumed = subprocess.run(_train_cmd(root, boxes, run, *cuda, "--resume", "--max-steps", "6"),
                             env=_env(cache), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final, reference = (load_checkpoint(p / "checkpoints" / "last.pt") for p in (run, straight))
    assert final["step"] == reference["step"] == 6

    def distance(a: dict, b: dict) -> float:
        return sum(float((a[k].double() - b[k].double()).square().sum()) for k in b if b[k].is_floating_point())

    # CUDA kernels may differ in the last bits from run to run: the resumed weights must be far closer to the
    # uninterrupted run's than the weights it resumed from were
    assert distance(final["model"], reference["model"]) < 1e-3 * distance(stopped["model"], reference["model"])
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6
