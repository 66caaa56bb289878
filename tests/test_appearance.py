"""Appearance scores of object tubes: pooled detector features per box, the leave-one-video-out kNN bank, the
protocol's checks and `vadgpu eval --appearance` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tiny_darknet

from vadgpu.errors import VadgpuError
from vadgpu.scoring.protocol import Protocol
from vadgpu.scoring.appearance import AppearanceBank
from vadgpu.objects.appearance import DarknetFeatures, network_input_size


def test_network_input_keeps_the_aspect_and_a_multiple_of_32():
    assert network_input_size((240, 360)) == (480, 320)  # Ped2: x 4/3
    assert network_input_size((360, 640)) == (576, 320)
    assert network_input_size((10, 10), short_side=32) == (32, 32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return DarknetFeatures(make_tiny_darknet(tmp_path_factory.mktemp("darknet")))


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 72, 3), dtype=np.uint8) for _ in range(count)]


def test_box_features_are_unit_vectors_in_frame_order_and_independent_of_the_batch(tiny):
    frames = _frames(3)
    boxes = [np.array([[0.1, 0.1, 0.5, 0.6], [0.4, 0.2, 0.9, 0.9]], np.float32), np.zeros((0, 4), np.float32),
             np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)]
    together = tiny(frames, boxes)
    assert together.shape == (3, 16 * 2 * 2)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    alone = np.concatenate([tiny([frames[0]], [boxes[0]]), tiny([frames[2]], [boxes[2]])])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # a box over other pixels gives another vector
    assert not np.allclose(together[0], together[1], atol=1e-3)
    with pytest.raises(VadgpuError, match="2 frames but 1 box lists"):
        tiny(frames[:2], boxes[:1])


def test_missing_files_and_layers_are_clear_errors(tmp_path):
    weights = make_tiny_darknet(tmp_path / "net")
    with pytest.raises(VadgpuError, match="no such file"):
        DarknetFeatures(tmp_path / "absent.weights")
    with pytest.raises(VadgpuError, match="no layer 'leaky_99'"):
        DarknetFeatures(weights, layer="leaky_99")
    (tmp_path / "net" / "tiny.cfg").unlink()
    with pytest.raises(VadgpuError, match=r"tiny\.cfg: no such file"):
        DarknetFeatures(weights)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_bank_scores_an_unseen_look_above_a_training_look():
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(3, 32)))
    train = _unit(np.repeat(centres, 40, axis=0) + 0.05 * rng.normal(size=(120, 32)))
    video = np.tile(np.arange(4), 30)  # every look appears in every training video
    bank = AppearanceBank.fit(train, video)
    seen = _unit(centres + 0.05 * rng.normal(size=(3, 32)))
    unseen = _unit(rng.normal(size=(3, 32)))
    assert bank.score(unseen).min() > bank.score(seen).max()
    # a new sample of a training look lies about as far from the bank as training boxes from other videos do
    assert abs(float(np.mean(bank.score(seen)))) < 3


def test_bank_leaves_each_box_s_own_video_out():
    rng = np.random.default_rng(1)
    looks = _unit(rng.normal(size=(2, 16)))
    # each video holds one look, 20 near-copies of it: within a video every box has a twin a frame away
    boxes = _unit(np.repeat(looks, 20, axis=0) + 1e-3 * rng.normal(size=(40, 16)))
    bank = AppearanceBank.fit(boxes, np.repeat([0, 1], 20))
    between = 1 - float(looks[0] @ looks[1])
    assert bank.mean == pytest.approx(np.log(between), abs=0.05)  # measured against the other video only
    with pytest.raises(VadgpuError, match="at least two training videos"):
        AppearanceBank.fit(boxes, np.zeros(40, np.int64))


def test_protocol_checks_what_appearance_needs():
    from vadgpu.models.registry import model_config_from_dict

    with pytest.raises(VadgpuError, match="--tube-norm location"):
        Protocol(appearance="x.weights", tube_norm="none")
    with pytest.raises(VadgpuError, match="--norm train"):
        Protocol(appearance="x.weights", norm="train")
    with pytest.raises(VadgpuError, match="positive"):
        Protocol(appearance_weight=0.0)
    frames = model_config_from_dict({}, "ddl")
    with pytest.raises(VadgpuError, match="frame model"):
        Protocol(appearance="x.weights").for_model(frames)


def test_eval_with_appearance_end_to_end(object_run, monkeypatch, tmp_path):
    base, root, run, runner, cli = object_run
    monkeypatch.setenv("VADGPU_CACHE", str(base / "cache"))
    weights = make_tiny_darknet(tmp_path / "net")
    outs = []
    for name in ("a1", "a2"):
        outs.append(tmp_path / name)
        result = runner.invoke(cli, ["eval", "--run", str(run), "--no-progress", "--appearance", str(weights),
                                     "--out", str(outs[-1])])
        assert result.exit_code == 0, result.output
    first, second = (json.loads((o / "metrics.json").read_text()) for o in outs)
    assert first["protocol"]["appearance"] == str(weights) and first["protocol"]["appearance_weight"] == 1.0
    record = first["objects"]["appearance"]
    assert record["features"].startswith("darknet:tiny.weights:leaky_9")
    assert record["train_features"]["boxes"] > 0 and not record["train_features"]["cached"]
    assert second["objects"]["appearance"]["test_features"]["cached"]  # computed once per box cache and split
    assert first["metrics"]["micro_auc"] == second["metrics"]["micro_auc"]
    # the appearance term moves the tube scores: they differ from the evaluation without it
    plain = tmp_path / "plain"
    assert runner.invoke(cli, ["eval", "--run", str(run), "--no-progress", "--out", str(plain)]).exit_code == 0
    with_looks = (outs[0] / "objects" / "01.csv").read_text().splitlines()[1:]
    without = (plain / "objects" / "01.csv").read_text().splitlines()[1:]
    assert len(with_looks) == len(without)
    assert sorted(r.split(",")[3] for r in with_looks) == sorted(r.split(",")[3] for r in without)  # raw_score
    assert sorted(r.split(",")[2] for r in with_looks) != sorted(r.split(",")[2] for r in without)  # score
