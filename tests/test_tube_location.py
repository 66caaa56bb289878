"""Location-normalised tube scores (scoring/location.py): statistics by grid cell against numpy, the
shrinkage toward the whole frame, storage round trips, the protocol defaults they bring, and the frame max."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadgpu.errors import VadgpuError
from vadgpu.scoring.tubes import TubeScorer, frame_maxima
from vadgpu.scoring.protocol import Protocol
from vadgpu.scoring.location import KEY, LocationStats, cells, fit_from_records
from vadgpu.models.registry import build_model
from vadgpu.objects.tubes import FrameBoxes


def _box(cx: float, cy: float, half: float = 0.02) -> list[float]:
    return [cx - half, cy - half, cx + half, cy + half]


def test_cells_are_row_major_over_the_grid_and_clamped():
    boxes = torch.tensor([_box(0.05, 0.05), _box(0.95, 0.05), _box(0.05, 0.95), _box(0.5, 0.6), [0.9, 0.9, 1.0, 1.0]])
    assert cells(boxes, (4, 2)).tolist() == [0, 3, 4, 6, 7]


def test_fit_matches_numpy_per_cell_with_shrinkage():
    rng = np.random.default_rng(0)
    left = [_box(0.1, 0.5)] * 30
    right = [_box(0.9, 0.5)] * 3
    boxes = torch.tensor(left + right, dtype=torch.float32)
    scores = np.concatenate([rng.uniform(0.001, 0.002, 30), rng.uniform(0.01, 0.02, 3)])
    stats = LocationStats.fit(boxes, torch.from_numpy(scores), "mse", grid=(2, 1), shrink=5.0)
    logs = np.log(scores)
    mu, var = logs.mean(), logs.var()
    for cell, part in ((0, logs[:30]), (1, logs[30:])):
        mean = (part.sum() + 5 * mu) / (part.size + 5)
        second = ((part ** 2).sum() + 5 * (var + mu ** 2)) / (part.size + 5)
        assert float(stats.mean[cell]) == pytest.approx(mean)
        assert float(stats.std[cell]) == pytest.approx(np.sqrt(second - mean ** 2))
    assert stats.count.tolist() == [30, 3]
    # the same raw error is unusual on the left (small errors there) and ordinary on the right
    probe = torch.tensor([_box(0.1, 0.5), _box(0.9, 0.5)])
    z = stats.apply(probe, torch.tensor([0.012, 0.012], dtype=torch.float64))
    assert z[0] > 3 and abs(float(z[1])) < 1.5


def test_an_empty_cell_takes_the_whole_frame_statistics_and_psnr_is_not_logged():
    boxes = torch.tensor([_box(0.1, 0.5), _box(0.15, 0.5), _box(0.2, 0.4)])
    scores = torch.tensor([-30.0, -28.0, -25.0], dtype=torch.float64)  # negated PSNR: already a log scale
    stats = LocationStats.fit(boxes, scores, "psnr", grid=(2, 1))
    assert float(stats.mean[1]) == pytest.approx(float(scores.mean()))
    assert float(stats.std[1]) == pytest.approx(float(scores.std(unbiased=False)))


def test_constant_or_missing_training_scores_are_clear_errors():
    boxes = torch.tensor([_box(0.1, 0.5)] * 4)
    with pytest.raises(VadgpuError, match="std is 0"):
        LocationStats.fit(boxes, torch.full((4,), 0.5), "mse", (6, 4))
    with pytest.raises(VadgpuError, match="training tubes"):
        fit_from_records([], "mse", (6, 4))


def test_record_round_trip_and_kind_check():
    stats = LocationStats.fit(torch.tensor([_box(0.1, 0.1), _box(0.8, 0.8), _box(0.5, 0.5)]),
                              torch.tensor([0.1, 0.2, 0.4]), "mse", (6, 4))
    record = stats.to_record()
    again = LocationStats.from_record(record, "mse")
    assert torch.equal(again.mean, stats.mean) and again.grid == stats.grid
    as_json = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in record.items()}
    assert torch.allclose(LocationStats.from_record(as_json, "mse").std, stats.std)
    assert LocationStats.from_record(record, "psnr") is None and LocationStats.from_record(None, "mse") is None
    with pytest.raises(VadgpuError, match="grid"):
        LocationStats.from_record({**record, "grid": [3, 3]}, "mse")
    assert KEY == "tube_location"


def test_protocol_defaults_depend_on_the_model():
    objects, frames = build_model("ddl-objects-cpu").config, build_model("ddl-tiny-cpu").config
    chosen = Protocol(score=None).for_model(objects)  # None: the model's score, as the CLI leaves it
    assert (chosen.score, chosen.norm, chosen.tube_norm) == ("mse", "none", "location")
    chosen = Protocol(score=None).for_model(frames)
    assert (chosen.score, chosen.norm, chosen.tube_norm) == ("patch-max", "video", "none")
    assert Protocol(norm="video", tube_norm="none").for_model(objects).norm == "video"
    with pytest.raises(VadgpuError, match="frame model"):
        Protocol(tube_norm="location").for_model(frames)
    with pytest.raises(VadgpuError, match="tube-norm"):
        Protocol(tube_norm="grid")


class MeanModel(torch.nn.Module):
    """Predicts 0 everywhere: a tube's mse is the mean square of its centre frame."""

    def reconstruct(self, tubes):
        target = tubes[:, :, tubes.shape[2] // 2]
        return target, torch.zeros_like(target)


def test_scorer_takes_the_max_of_normalised_tubes_and_frame_maxima_agree():
    clips = torch.zeros(2, 1, 3, 40, 40)
    clips[:, :, :, :20, :20] = 1.0  # top-left quarter: a raw error of 1 there
    clips[:, :, :, 20:, 20:] = 0.1  # bottom-right quarter: a raw error of 0.01
    boxes = FrameBoxes(np.array([0, 0, 0]), np.array([0, 0, 1]),
                       np.array([[0.0, 0.0, 0.25, 0.25], [0.75, 0.75, 1.0, 1.0], [0.75, 0.75, 1.0, 1.0]]), [2])
    # training: errors near 1 are normal at the top left, errors near 1e-4 at the bottom right
    train_boxes = torch.tensor([_box(0.1, 0.1)] * 20 + [_box(0.9, 0.9)] * 20)
    train_scores = torch.cat([torch.linspace(0.9, 1.1, 20), torch.linspace(1e-4, 2e-4, 20)]).double()
    location = LocationStats.fit(train_boxes, train_scores, "mse", grid=(2, 2), shrink=1.0)
    scorer = TubeScorer(boxes, window=10, size=10, score="mse", mix_weight=0.5, location=location)
    best = scorer(MeanModel(), clips, torch.tensor([0, 0]), torch.tensor([0, 1]))
    video, frame, box, raw, score = scorer.records[0]
    assert frame.tolist() == [0, 0, 1]
    assert raw[:2] == pytest.approx([1.0, 0.01])  # raw: the top-left tube is the worst of frame 0 ...
    assert score[1] > score[0]  # ... normalised by place, the bottom-right one is
    expected = location.apply(torch.from_numpy(box), torch.from_numpy(raw).double()).numpy()
    assert score == pytest.approx(expected)
    assert best.tolist() == pytest.approx([score[1], score[2]])
    assert frame_maxima(video, frame, score, [2])[0] == pytest.approx(best.double().numpy())
    assert frame_maxima(video, frame, raw, [3])[0].tolist() == pytest.approx([1.0, 0.01, -np.inf])
