"""benchmarks/gpu_check.sh end to end as a dry run on the CPU: a packed synthetic dataset, tiny presets, short
timings; every part runs and writes its JSON, and the gpu-marked tests are reported skipped with their reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import invoke, read_csv

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


@pytest.mark.av
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.pack import pack_dataset
    from vadgpu.data.synth import make_synthetic_dataset

    synth = make_synthetic_dataset(tmp_path / "synth", seed=0, train_videos=2, test_videos=2, frames=30,
                                   frame_size=(48, 64), formats=("frames",))
    data = pack_dataset(open_dataset("synthetic", synth), tmp_path / "data", progress=False).out
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "TRAIN_PRESET": "ddl-tiny-cpu",
           "BENCH_PRESETS": "ddl-tiny-cpu", "TRAIN_SECONDS": "3", "BENCH_SECONDS": "0.05", "MAX_EPOCHS": "2",
           "BATCH": "4", "SCORE_VIDEOS": "01"}
    done = subprocess.run(["bash", str(SCRIPT), str(data), str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all_ran"], summary
    assert set(summary["parts"]) == {"env", "gpu-tests", "bench-ddl-tiny-cpu", "bench-score", "train", "eval"}
    env_info = json.loads((out / "env.json").read_text())
    assert env_info["cuda_available"] is False and "vadgpu" in env_info
    tests = json.loads((out / "gpu-tests.json").read_text())
    assert tests["counts"]["skipped"] > 10 and tests["counts"]["failed"] == tests["counts"]["error"] == 0
    assert all("CUDA GPU" in t["detail"] for t in tests["tests"] if t["outcome"] == "skipped")
    bench = json.loads((out / "bench-ddl-tiny-cpu.json").read_text())
    assert bench["stages"]["train"]["rate"]["median"] > 0
    score = json.loads((out / "bench-score.json").read_text())  # the shipped ped2-ddl, score and live (PyAV)
    assert list(score["modes"]) == ["score", "live"] and score["settings"]["videos"] == ["01"]
    assert all(m["frames"] == 30 and m["stages"]["network"]["seconds"] > 0 for m in score["modes"].values())
    metrics = json.loads((out / "eval.json").read_text())
    assert 1 <= summary["train_epochs"] <= 2
    # the AUCs it reports are those of its scores.csv (recomputed here), and of the trained model (evaluated again)
    from sklearn.metrics import roc_auc_score

    rows = read_csv(out / "train" / "eval" / "scores.csv")
    assert len(rows) == metrics["totals"]["scored_frames"] == 2 * 30
    labels, scores = [int(r["label"]) for r in rows], [float(r["score"]) for r in rows]
    assert metrics["metrics"]["micro_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    for video in {r["video"] for r in rows}:
        mine = [r for r in rows if r["video"] == video]
        assert metrics["metrics"]["per_video_auc"][video] == pytest.approx(
            roc_auc_score([int(r["label"]) for r in mine], [float(r["score"]) for r in mine]), abs=1e-9)
    code, output = invoke(["eval", "--run", str(out / "train"), "--out", str(tmp_path / "again"), "--device", "cpu",
                           "--loader", "auto", "--no-progress"])  # the script's LOADER default
    assert code == 0, output
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["metrics"]["micro_auc"] == pytest.approx(metrics["metrics"]["micro_auc"], abs=1e-6)


def test_gpu_check_usage_errors(tmp_path):
    wrong = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "missing"), str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "DATA_ROOT" in wrong.stderr and "missing" in wrong.stderr
    usage = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr
