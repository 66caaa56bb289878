"""Scores, protocol, metrics and plots on hand-made numbers with known answers (no model, no data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadgpu.errors import VadgpuError
from vadgpu.evaluation.metrics import equal_error_rate, frame_metrics, roc_auc
from vadgpu.evaluation.plots import anomalous_intervals, plot_roc, plot_score_curve
from vadgpu.evaluation.report import format_table
from vadgpu.scoring.protocol import Protocol, TrainStats, apply_protocol, fit_train_stats, kept_frames
from vadgpu.scoring.protocol import normalise_scores, smooth_scores
from vadgpu.scoring.kinds import error_map, frame_scores, patch_max, patch_size_for

# ---------------------------------------------------------------- metrics


def test_perfect_and_inverted_scores():
    labels = np.array([0, 0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.0, 0.9, 0.8, 0.3, 0.7])
    assert roc_auc(labels, scores) == 1.0
    assert equal_error_rate(labels, scores)[0] == 0.0
    assert roc_auc(labels, -scores) == 0.0
    assert equal_error_rate(labels, -scores)[0] == 1.0
    m = frame_metrics({"a": (labels, scores)})
    assert (m.micro_auc, m.eer, m.average_precision) == (1.0, 0.0, 1.0)


def test_hand_case_auc_eer_ap():
    # Pairs (anomalous, normal): (0.35, 0.1) ok, (0.35, 0.4) wrong, (0.8, *) ok -> AUC 3/4.
    # ROC points (fpr, tpr): (0,0) (0,.5) (.5,.5) (.5,1) (1,1) -> FPR = FNR = 0.5 at threshold 0.4.
    # Ranked: 0.8(+) 0.4(-) 0.35(+) 0.1(-): AP = 0.5 * 1 + 0.5 * 2/3.
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    eer, threshold = equal_error_rate(labels, scores)
    assert eer == pytest.approx(0.5) and threshold == pytest.approx(0.4)
    assert frame_metrics({"v": (labels, scores)}).average_precision == pytest.approx(5 / 6)


def test_eer_interpolates_between_roc_points():
    # A tie between a normal and an anomalous frame makes a diagonal ROC segment (0, 1/2) -> (1/2, 1); FPR = FNR
    # halfway along it, at 1/4, which is no ROC point: the interpolation is what gives it.
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    eer, threshold = equal_error_rate(labels, scores)
    assert eer == pytest.approx(0.25) and threshold == pytest.approx(0.5)


def test_macro_auc_excludes_single_class_videos():
    videos = {
        "good": (np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])),  # AUC 1
        "half": (np.array([0, 1, 0, 1]), np.array([0.5, 0.4, 0.3, 0.6])),  # pairs: (.4>.5 no, .4>.3 yes, .6 yes x2) 3/4
        "normal-only": (np.array([0, 0, 0]), np.array([0.9, 0.1, 0.5])),
    }
    m = frame_metrics(videos)
    assert m.per_video_auc == {"good": 1.0, "half": 0.75, "normal-only": None}
    assert m.excluded_videos == ["normal-only"]
    assert m.macro_auc == pytest.approx(0.875)
    assert m.frames == 11 and m.anomalous_frames == 4
    pooled_labels = np.concatenate([v[0] for v in videos.values()])
    pooled_scores = np.concatenate([v[1] for v in videos.values()])
    assert m.micro_auc == pytest.approx(roc_auc(pooled_labels, pooled_scores))
    assert m.micro_auc != pytest.approx(m.macro_auc)  # pooling ranks across videos: a different number
    table = format_table(m, {"good": 4, "half": 4, "normal-only": 3})
    assert "excludes single-class videos: normal-only" in table and "87.50" in table
    assert table.splitlines()[-1].split() == ["normal-only", "3", "one", "class"]


def test_metrics_reject_bad_input():
    with pytest.raises(VadgpuError, match="every one of the 3 test frames is normal"):
        frame_metrics({"a": (np.zeros(3), np.arange(3.0))})
    with pytest.raises(VadgpuError, match="video a: 3 labels but 2 scores"):
        frame_metrics({"a": (np.array([0, 1, 0]), np.arange(2.0))})
    with pytest.raises(VadgpuError, match="NaN"):
        frame_metrics({"a": (np.array([0, 1]), np.array([0.0, np.nan]))})
    with pytest.raises(VadgpuError, match="0 \\(normal\\) or 1"):
        frame_metrics({"a": (np.array([0, 2]), np.array([0.0, 1.0]))})
    assert roc_auc(np.ones(4), np.arange(4.0)) is None


# ---------------------------------------------------------------- protocol


def test_median_and_gaussian_smoothing_on_hand_sequences():
    spike = np.array([0, 0, 0, 9, 0, 0, 0], dtype=float)
    p = Protocol(smooth="median", window=3, norm="none")
    assert smooth_scores(spike, p).tolist() == [0] * 7  # a one-frame spike is removed by a 3-window median
    step = np.array([1, 1, 1, 5, 5, 5], dtype=float)
    assert smooth_scores(step, p).tolist() == step.tolist()  # edges kept: a median keeps steps
    ramp = np.array([3, 1, 2, 4], dtype=float)
    # nearest-mode edges: [3] 3 1 2 4 [4] -> medians 3, 2, 2, 4
    assert smooth_scores(ramp, p).tolist() == [3, 2, 2, 4]
    g = Protocol(smooth="gaussian", sigma=1.0, norm="none")
    wide = np.zeros(11)
    wide[5] = 9.0  # 5 frames from each end: the 4-sigma kernel stays inside, so the mass is conserved
    out = smooth_scores(wide, g)
    assert out.sum() == pytest.approx(9.0) and out.argmax() == 5 and out[5] < 9 and out[4] == pytest.approx(out[6])
    assert smooth_scores(spike, Protocol(smooth="none")).tolist() == spike.tolist()


def test_normalisation_per_video_and_from_training_statistics():
    x = np.array([2.0, 4.0, 3.0, 6.0])
    assert normalise_scores(x, Protocol(norm="video")).tolist() == [0.0, 0.5, 0.25, 1.0]
    assert normalise_scores(np.full(4, 7.0), Protocol(norm="video")).tolist() == [0.0] * 4
    stats = TrainStats(mean=2.0, std=2.0, frames=10)
    assert normalise_scores(x, Protocol(norm="train"), stats).tolist() == [0.0, 1.0, 0.5, 2.0]
    with pytest.raises(VadgpuError, match="training-set statistics"):
        normalise_scores(x, Protocol(norm="train"))
    p = Protocol(norm="train", smooth="none")
    fitted = fit_train_stats([np.array([1.0, 3.0]), np.array([1.0, 3.0])], p)
    assert (fitted.mean, fitted.std, fitted.frames) == (2.0, 1.0, 4)
    with pytest.raises(VadgpuError, match="std is 0"):
        fit_train_stats([np.ones(5)], p)
    # Smooth, then min-max: the final per-video scores span [0, 1].
    out = apply_protocol(np.array([0, 5, 1, 2, 8, 3, 9.0]), Protocol(window=3))
    assert out.min() == 0.0 and out.max() == 1.0


def test_edge_frames_and_option_validation():
    assert kept_frames(10, 5, drop_edges=False) == slice(0, 10)
    assert kept_frames(10, 5, drop_edges=True) == slice(2, 8)
    assert kept_frames(10, 4, drop_edges=True) == slice(2, 8)
    with pytest.raises(VadgpuError, match="none left"):
        kept_frames(4, 5, drop_edges=True)
    with pytest.raises(VadgpuError, match="--window 4"):
        Protocol(window=4)
    with pytest.raises(VadgpuError, match="--norm 'zscore'"):
        Protocol(norm="zscore")
    with pytest.raises(VadgpuError, match="--score 'ssim'"):
        Protocol(score="ssim")
    with pytest.raises(VadgpuError, match="--smooth"):
        Protocol(smooth="mean")


# ---------------------------------------------------------------- scores


def test_patch_size_scales_with_resolution():
    assert patch_size_for(256, 256) == 16
    assert patch_size_for(240, 360) == 16
    assert patch_size_for(64, 64) == 4
    assert patch_size_for(48, 64) == 4  # 3 -> nearest even
    assert patch_size_for(16, 16) == 2


def test_patch_max_finds_a_small_error_on_either_grid():
    target = torch.zeros(2, 1, 32, 32)
    recon = torch.zeros(2, 1, 32, 32)
    recon[0, :, 0:8, 0:8] = 1.0  # aligned with the first 8x8 grid: one full patch
    recon[1, :, 4:12, 4:12] = 1.0  # straddles four patches of the first grid, aligned with the offset grid
    errors = error_map(target, recon)
    assert errors.shape == (2, 1, 32, 32)
    assert patch_max(errors, patch=8).tolist() == [1.0, 1.0]
    first_grid_only = torch.nn.functional.avg_pool2d(errors, 8).flatten(1).amax(1)
    assert first_grid_only.tolist() == [1.0, 0.25]  # why the second grid exists
    # The global MSE of the same frames is 64 / 1024: patch-max sees a small anomaly the mean dilutes.
    mse = errors.flatten(1).mean(1)
    assert mse.tolist() == [1 / 16, 1 / 16]
    mixed = frame_scores(target, recon, "mixed", mix_weight=0.25)
    assert mixed.tolist() == pytest.approx([0.25 + 0.75 / 16] * 2)


def test_psnr_is_negated_and_handles_perfect_reconstruction():
    target = torch.full((3, 3, 8, 8), 0.5)
    recon = target.clone()
    recon[1] += 0.1  # MSE 0.01 -> PSNR 20 dB
    recon[2] += 0.2  # MSE 0.04 -> PSNR ~13.98 dB
    s = frame_scores(target, recon, "psnr")
    assert s[1].item() == pytest.approx(-20.0, abs=1e-4)
    assert torch.isfinite(s).all() and s[0] < s[1] < s[2]  # worse reconstruction -> higher score
    with pytest.raises(VadgpuError, match="must both be"):
        frame_scores(target, recon[:, :, :4])


@pytest.mark.gpu
def test_scores_on_cuda_match_cpu():
    gen = torch.Generator().manual_seed(0)
    target, recon = torch.rand(4, 3, 64, 64, generator=gen), torch.rand(4, 3, 64, 64, generator=gen)
    for kind in ("patch-max", "psnr", "mixed"):
        cpu = frame_scores(target, recon, kind)
        cuda = frame_scores(target.cuda(), recon.cuda(), kind)
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), cpu)


# ---------------------------------------------------------------- plots


def test_plots_are_valid_pngs_of_sensible_size(tmp_path):
    from PIL import Image

    labels = np.array([0] * 10 + [1] * 5 + [0] * 5 + [1] * 3)
    assert anomalous_intervals(labels) == [(10, 15), (20, 23)]
    scores = np.linspace(0, 1, labels.size)
    curve = plot_score_curve(tmp_path / "v.png", np.arange(labels.size), scores, labels, title="v")
    roc = plot_roc(tmp_path / "roc.png", labels, scores, auc=0.5, eer=0.4)
    for path, size in ((curve, (800, 300)), (roc, (500, 500))):
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size == size
            pixels = np.asarray(img.convert("RGB"))
            assert pixels.std() > 10  # not a blank image
    # Only the PNGs remain: the atomic write leaves no temporary files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roc.png", "v.png"]
