"""The weights shipped with vadgpu (vadgpu/weights): load by name, safely, and score a new video with no training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.cli_helpers import invoke, read_csv
from vadgpu.checkpoint import load_checkpoint
from vadgpu.errors import VadgpuError
from vadgpu.evaluation.tube_location import KEY, LocationStats
from vadgpu.weights import SHIPPED, metrics_file, shipped_weights


# micro / macro AUC (%) of each shipped file on its benchmark, as the README states them
RECORDED = {"ped2-ddl": (90.70, 94.82)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_load_by_name_with_their_record(name):
    path = shipped_weights(name)
    assert path is not None and path.stat().st_size < 10 * 2**20  # weights only, a few MB
    ckpt = load_checkpoint(name)  # weights_only=True inside
    assert ckpt["model_config"]["clips"] == "objects"
    assert LocationStats.from_record(ckpt["train_scores"][KEY], "mse") is not None
    assert all(ckpt["config"][k] is None for k in ("root", "boxes", "out"))  # no path of the machine it came from
    record = json.loads(metrics_file(name).read_text())
    assert record["dataset"]["name"] == "ped2"
    # the record is of these very weights, and holds the numbers the README gives for them
    assert (record["checkpoint"]["epoch"], record["checkpoint"]["step"]) == (ckpt["epoch"], ckpt["step"])
    assert record["checkpoint"]["model_name"] == ckpt["model_name"]
    assert (round(100 * record["metrics"]["micro_auc"], 2), round(100 * record["metrics"]["macro_auc"], 2)) == \
        RECORDED[name]


def test_an_unknown_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(VadgpuError, match="ped2-ddl"):
        load_checkpoint(tmp_path / "no-such.pt")


def test_ped2_ddl_scores_new_videos_right_away(tmp_path, monkeypatch):
    """Trained on Ped2 only, the shipped model ranks the anomalous frames of synthetic test videos (another scene,
    another camera, four kinds of anomaly) above their normal ones, video by video, with no training."""
    from vadgpu.data.synth import make_synthetic_dataset

    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    root = make_synthetic_dataset(tmp_path / "synth", seed=0, train_videos=1, test_videos=4, frames=80,
                                  formats=("frames",))
    aucs = []
    for name in ("01", "02", "03", "04"):
        code, output = invoke(["score", str(root / "testing" / "frames" / name), "--checkpoint", "ped2-ddl",
                               "--out", str(tmp_path / name), "--no-progress"])
        assert code == 0, output
        scores = [float(r["score"]) for r in read_csv(tmp_path / name / "scores.csv")]
        labels = np.load(root / "testing" / "labels" / f"{name}.npy")
        assert 0 < labels.sum() < labels.size
        aucs.append(roc_auc_score(labels, scores))
    assert min(aucs) > 0.55 and np.mean(aucs) > 0.7, aucs  # measured 0.58, 0.85, 1.00, 0.71
