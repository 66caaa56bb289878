"""The dual-path model as its authors' later code trains and scores it: the loss terms against values
worked out by hand, split routing and D_n's BatchNorm, the pseudo-anomaly options, the presets and their training
settings, the cosine-epochs schedule, and the `dualpath-authors` protocol on toy curves and in a short run."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vadgpu import kernels
from vadgpu.errors import VadgpuError
from vadgpu.evaluation.authors_protocol import authors_protocol, named_protocol
from vadgpu.scoring.protocol import apply_protocol, scored_frames
from vadgpu.scoring.kinds import scores_from_errors
from vadgpu.models import build_model
from vadgpu.models.base import zscore_frames
from vadgpu.models.dualpath_authors import (AuthorsLossWeights, authors_losses, negative_kl, pooled_channels,
                                            signed_mse)
from vadgpu.models.presets import AUTHORS_TRAINING
from vadgpu.models.registry import preset_config

AUTHORS_PRESETS = ("dualpath-ped2-authors", "dualpath-avenue-authors", "dualpath-shanghaitech-authors",
                   "dualpath-ped2-authors-cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- loss terms, by hand


def test_signed_mse_weighs_each_pseudo_sample_one_nth():
    own = torch.tensor([1.0, 2.0, 4.0])
    assert signed_mse(own, torch.tensor([0.0, 1.0, 0.0])).item() == pytest.approx((1 - 2 + 4) / 3)


def test_pooled_channels_mean_over_routed_samples_and_positions():
    features = torch.tensor([[[1.0, 3.0], [0.0, 2.0]], [[5.0, 7.0], [4.0, 4.0]]]).view(2, 2, 1, 1, 2)  # (N, D, ...)
    assert pooled_channels(features).tolist() == [4.0, 2.5]  # (2 + 6) / 2, (1 + 4) / 2
    assert pooled_channels(features, torch.tensor([0.0, 1.0])).tolist() == [6.0, 4.0]
    assert pooled_channels(features, torch.zeros(2)).tolist() == [0.0, 0.0]


def test_negative_kl_is_minus_kl_of_pseudo_from_normal():
    normal, pseudo = torch.tensor([0.0, 0.0]), torch.tensor([math.log(3.0), 0.0])  # softmax: [.5, .5], [.75, .25]
    by_hand = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert negative_kl(normal, pseudo).item() == pytest.approx(-by_hand, rel=1e-6)
    assert negative_kl(pseudo, pseudo).item() == pytest.approx(0.0, abs=1e-7)


def test_authors_losses_total_and_the_both_groups_gate():
    own, pseudo, entropy = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([3.0, 6.0, 0.0])
    reads = (torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))  # feas = -mean(1, 2) = -1.5
    stages = (torch.tensor([0.0, 0.0]), torch.tensor([math.log(3.0), 0.0]))
    kl = -(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    kl_reads = -sum(p * math.log(p / n) for p, n in zip(torch.softmax(reads[1], 0).tolist(),
                                                         torch.softmax(reads[0], 0).tolist()))
    w = AuthorsLossWeights(feas=0.1, kl_fea=0.2, kl_out3=0.3, entropy=0.5)
    out = authors_losses(own, pseudo, entropy, reads, stages, 1.0, w)
    assert out["signed_mse"].item() == pytest.approx(1.0)
    assert out["feas"].item() == pytest.approx(-1.5)
    assert out["kl_fea"].item() == pytest.approx(kl_reads, rel=1e-6)
    assert out["kl_out3"].item() == pytest.approx(kl, rel=1e-6)
    assert out["entropy"].item() == pytest.approx(3.0)
    assert out["recon_normal"].item() == pytest.approx(2.5)  # (1 + 4) / 2, for the logs
    total = 1.0 + 0.1 * -1.5 + 0.2 * kl_reads + 0.3 * kl + 0.5 * 3.0
    assert out["loss"].item() == pytest.approx(total, rel=1e-6)
    alone = authors_losses(own, pseudo, entropy, reads, stages, 0.0, w)  # one group only: no pair terms
    assert alone["feas"].item() == alone["kl_fea"].item() == alone["kl_out3"].item() == 0.0
    assert alone["loss"].item() == pytest.approx(1.0 + 0.5 * 3.0)


def test_zscore_frames_each_frame_on_its_own():
    clips = torch.rand(2, 3, 4, 8, 8) * torch.arange(1, 5).view(1, 1, 4, 1, 1)
    z = zscore_frames(clips)
    assert torch.allclose(z.mean(dim=(1, 3, 4)), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(z.std(dim=(1, 3, 4), correction=0), torch.ones(2, 4), atol=1e-4)
    assert torch.equal(zscore_frames(torch.full((1, 1, 2, 4, 4), 0.5)), torch.zeros(1, 1, 2, 4, 4))


# ---------------------------------------------------------------- routing


def _anomalies(clips: torch.Tensor, kind: list[int]):
    return SimpleNamespace(clips=clips, kind=torch.tensor(kind), mask=None)


@pytest.mark.parametrize("routing", ["split", "masked"])
def test_split_routing_keeps_pseudo_samples_out_of_d_n_batchnorm(routing):
    """With the encoder in eval mode a sample's features do not depend on its batch-mates, so D_n's running
    statistics after a step on (two normal + one pseudo) equal those after the two normal ones alone exactly when
    the pseudo sample never reached D_n."""
    torch.manual_seed(0)
    model = build_model("dualpath-tiny-cpu", loss_terms="authors", routing=routing).train()
    model.encoder.eval()
    normal = torch.rand(2, 1, 4, 32, 32)
    pseudo = torch.rand(1, 1, 4, 32, 32) * 3  # far from the normal clips: its statistics would show
    with_pseudo, alone = copy.deepcopy(model), copy.deepcopy(model)
    with_pseudo.training_losses(None, _anomalies(torch.cat([normal, pseudo]), [0, 0, 3]))
    alone.training_losses(None, _anomalies(normal, [0, 0]))
    bn = [name for name, _ in model.decoder_normal.named_buffers() if name.endswith("running_mean")]
    stats = [(dict(with_pseudo.decoder_normal.named_buffers())[n], dict(alone.decoder_normal.named_buffers())[n])
             for n in bn]
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in stats)
    assert same == (routing == "split")
    if routing == "split":  # the pseudo sample went to D_p instead
        pseudo_stats = dict(with_pseudo.decoder_pseudo.named_buffers())[bn[0]]
        assert not torch.equal(pseudo_stats, dict(alone.decoder_pseudo.named_buffers())[bn[0]])


def test_split_routing_leaves_an_unused_path_without_gradients():
    model = build_model("dualpath-tiny-cpu", loss_terms="authors", routing="split").train()
    clips = torch.rand(2, 1, 4, 32, 32)
    losses = model.training_losses(clips, _anomalies(clips, [0, 0]))
    losses["loss"].backward()
    assert all(p.grad is None for p in model.decoder_pseudo.parameters())  # Adam then leaves D_p alone
    assert all(p.grad is None for p in model.memory_pseudo.parameters())
    assert all(p.grad is not None for p in model.decoder_normal.parameters())
    assert losses["feas"].item() == 0.0


def test_bad_combinations_are_clear_errors():
    with pytest.raises(VadgpuError, match="routing='split'.*loss_terms='authors'"):
        build_model("dualpath-tiny-cpu", routing="split")
    with pytest.raises(VadgpuError, match="output='linear'"):
        build_model("dualpath-tiny-cpu", input_norm="zscore")
    with pytest.raises(VadgpuError, match="input_norm='zscore' \\(ddl\\).*only 'unit'"):
        build_model("ddl-tiny-cpu", input_norm="zscore")
    with pytest.raises(VadgpuError, match="skip_source='later'"):
        build_model("dualpath-tiny-cpu", skip_source="later")
    with pytest.raises(VadgpuError, match="loss_terms.*MNAD"):
        build_model("dualpath-tiny-cpu", loss_terms="authors", memory_mode="mnad")


# ---------------------------------------------------------------- pseudo-anomaly options


def _window_batch(n: int = 6, t: int = 4, max_skip: int = 2):
    g = torch.Generator().manual_seed(1)
    window = torch.rand(n, 1, max_skip * (t - 1) + 1, 8, 8, generator=g)
    centre = max_skip * (t // 2)
    clips = window[:, :, centre - t // 2: centre - t // 2 + t]
    return SimpleNamespace(clips=clips.contiguous(), window=window)


def test_one_source_and_one_permutation_per_batch():
    batch = _window_batch()
    policy = kernels.PseudoAnomalyPolicy(1.0, ["skip", "shuffle", "noise"], skips=(2,), kind_draw="batch",
                                         shuffle_draw="batch")
    for seed in range(6):
        kind = policy(batch, None, None, None, torch.Generator().manual_seed(seed)).kind
        assert kind.unique().numel() == 1
    shuffled = kernels.shuffle_motion(batch.clips, torch.Generator().manual_seed(0), one_permutation=True)

    def order(i: int) -> list[int]:  # which input frame each output frame of sample i is
        return [next(j for j in range(4) if torch.equal(shuffled[i, :, f], batch.clips[i, :, j])) for f in range(4)]

    assert all(order(i) == order(0) for i in range(6)) and order(0) != [0, 1, 2, 3]


def test_skip_clips_from_another_clip_of_the_batch():
    batch = _window_batch(n=3)
    own = kernels.PseudoAnomalyPolicy(1.0, ["skip"], skips=(2,))
    other = kernels.PseudoAnomalyPolicy(1.0, ["skip"], skips=(2,), skip_source="other")
    a = own(batch, None, None, None, torch.Generator().manual_seed(0)).clips
    b = other(batch, None, None, None, torch.Generator().manual_seed(0)).clips
    assert torch.equal(b, a.roll(1, dims=0))  # sample i's skip clip is sample i - 1's


def test_noise_in_z_units_clamped_to_minus_one_one():
    clips = torch.randn(2, 1, 4, 8, 8) * 2
    policy = kernels.PseudoAnomalyPolicy(1.0, ["noise"], sigma=0.81, value_range=(-1.0, 1.0))
    out = policy(clips, None, None, None, torch.Generator().manual_seed(5)).clips
    g = torch.Generator().manual_seed(5)
    torch.rand(2, generator=g), torch.rand(2, generator=g)  # the policy's per-sample draws come first
    z = torch.randn(clips.shape, generator=g)
    assert torch.allclose(out, (clips + 0.81 * z).clamp(-1, 1), atol=1e-5)
    assert out.min() >= -1 and out.max() <= 1


# ---------------------------------------------------------------- presets and training settings


@pytest.mark.parametrize("preset", AUTHORS_PRESETS)
def test_authors_presets_build_with_the_authors_settings(preset):
    with torch.device("meta"):
        model = build_model(preset)
    c = model.config
    assert (c.input_norm, c.output, c.routing, c.loss_terms) == ("zscore", "linear", "split", "authors")
    assert (c.pseudo_kind_draw, c.shuffle_draw, c.skip_source, c.skips, c.noise_sigma) == \
        ("batch", "batch", "other", (2,), 0.81)
    assert c.shrink == 0.0025 and c.skip_concat == (True, False, False) and c.temporal in (8, 16)
    geometry = {"dualpath-ped2-authors": ((128, 128), 1, 16, 500, 0.02),
                "dualpath-avenue-authors": ((192, 192), 3, 16, 500, 0.01),
                "dualpath-shanghaitech-authors": ((256, 256), 3, 24, 1000, 0.01),
                "dualpath-ped2-authors-cpu": (preset_config("dualpath-ped2-cpu").size, 1, 6, 100, 0.02)}[preset]
    assert (c.size, c.channels, c.features, c.memory_items, c.pseudo_p) == geometry


def test_default_presets_keep_vadgpu_form():
    for preset in ("dualpath-ped2", "dualpath-ped2-cpu", "dualpath-tiny-cpu"):
        c = preset_config(preset)
        assert (c.input_norm, c.output, c.routing, c.loss_terms) == ("unit", "sigmoid", "masked", "vadgpu")
        assert (c.pseudo_kind_draw, c.shuffle_draw, c.skip_source, c.pseudo_p) == ("sample", "sample", "same", 0.25)


def test_authors_training_settings_are_valid_train_options_and_schedule():
    from vadgpu.engine.components import _lr_lambda
    from vadgpu.engine.config import TrainConfig, train_config_from_dict

    for preset, settings in AUTHORS_TRAINING.items():
        config = train_config_from_dict({**settings, "dataset": "ped2", "root": ".", "out": "x", "preset": preset,
                                         "model": "dualpath"}, preset)
        config.validate()
        assert (config.batch_size, config.schedule, config.lr_floor, config.amp_dtype) == \
            (2, "cosine-epochs", 0.1, "fp16")
    from vadgpu.engine.components import _authors_training_notice

    notice = _authors_training_notice("dualpath-ped2-authors", TrainConfig(batch_size=2))
    assert notice and "--lr 0.0001" in notice[0] and "--batch-size" not in notice[0]
    assert _authors_training_notice("dualpath-ped2-cpu", TrainConfig()) == []
    lam = _lr_lambda("cosine-epochs", total_steps=100, steps_per_epoch=5, floor=0.1, decay_epochs=10)
    assert [lam(0), lam(4), lam(25), lam(50), lam(99)] == pytest.approx([1.0, 1.0, 0.55, 0.1, 0.1])
    with pytest.raises(VadgpuError, match="--lr-floor"):
        TrainConfig(dataset="d", root=".", out="x", lr_floor=0.1).validate()  # only with cosine-epochs


# ---------------------------------------------------------------- the authors' protocol


def test_authors_protocol_fields_per_dataset():
    ped2 = authors_protocol("ped2", (128, 128))
    assert (ped2.score, ped2.mix_weight, ped2.patch_size, ped2.patch_grid, ped2.patch_stride) == \
        ("mixed", pytest.approx(0.6), 8, "single", None)
    assert (ped2.norm, ped2.smooth, ped2.sigma, ped2.order, ped2.full_clips) == \
        ("video", "gaussian", 32.0, "normalise-first", True)
    avenue, sht = authors_protocol("avenue", (192, 192)), authors_protocol("shanghaitech", (256, 256))
    assert (avenue.patch_size, avenue.sigma, avenue.mix_weight) == (32, 20.0, pytest.approx(0.6))
    assert (sht.patch_size, sht.patch_stride, sht.sigma, sht.mix_weight) == (16, 1, 10.0, 1.0)
    small = authors_protocol("synthetic", (64, 64))
    assert (small.patch_size, small.numbers) == (4, "ped2")  # Ped2's numbers, the patch scaled 128 -> 64
    objects = preset_config("dualpath-objects-cpu")
    with pytest.raises(VadgpuError, match="object model"):
        named_protocol("dualpath-authors", "ped2", objects)


def test_authors_score_on_one_grid_against_hand_values():
    errors = torch.zeros(1, 1, 8, 8)
    errors[..., 2:6, 2:6] = 1.0  # a 4x4 block astride the non-overlapping 4x4 grid
    ped2 = authors_protocol("ped2", (64, 64))  # patch 4, stride 4, 0.6 / 0.4
    # one grid: each 4x4 patch holds 4 ones -> 0.25; global MSE 16 / 64 = 0.25
    assert scores_from_errors(errors, ped2.score, ped2.mix_weight, **ped2.grid()).item() == pytest.approx(0.25)
    # vadgpu's offset grid finds the whole block: 0.6 * 1 + 0.4 * 0.25
    assert scores_from_errors(errors, "mixed", 0.6, patch=4).item() == pytest.approx(0.7)
    sht = authors_protocol("shanghaitech", (64, 64))  # patch 4, stride 1, no global MSE
    assert scores_from_errors(errors, sht.score, sht.mix_weight, **sht.grid()).item() == pytest.approx(1.0)


def test_authors_protocol_on_a_toy_curve():
    """Frames with whole clips only (T = 4: 2 dropped at the start, 1 at the end), min-max, then a gaussian; sigma
    0.25 here so the kernel has one neighbour each side with weight e^-8 (truncate 4 -> radius 1)."""
    protocol = replace(authors_protocol("ped2", (128, 128)), sigma=0.25)
    raw = np.array([5.0, 5.0, 1.0, 3.0, 2.0, 9.0])
    keep = scored_frames(raw.size, 4, protocol)
    assert (keep.start, keep.stop) == (2, 5)
    v = np.array([0.0, 1.0, 0.5])  # min-max of [1, 3, 2]
    w1 = math.exp(-8.0) / (1 + 2 * math.exp(-8.0))
    w0 = 1 - 2 * w1
    padded = np.concatenate([v[:1], v, v[-1:]])  # mode nearest
    expected = w0 * v + w1 * (padded[:-2] + padded[2:])
    got = apply_protocol(raw[keep], protocol)
    assert got == pytest.approx(expected, abs=1e-12)
    # vadgpu's order (smooth, then min-max) stretches the smoothed curve back to [0, 1]: a different result
    other = apply_protocol(raw[keep], replace(protocol, order="smooth-first"))
    assert other.min() == 0.0 and other.max() == 1.0 and not np.allclose(other, got)


def test_tiny_authors_form_trains_and_evaluates_with_the_authors_protocol(synth, tmp_path, monkeypatch):
    from vadgpu.engine.config import TrainConfig
    from vadgpu.engine.train import fit
    from vadgpu.evaluation.runner import evaluate

    root, boxes, cache = synth
    monkeypatch.setenv("VADGPU_CACHE", str(cache))
    run = tmp_path / "run"
    config = TrainConfig(dataset="synthetic", root=str(root), model="dualpath", preset="dualpath-ped2-authors-cpu",
                         out=str(run), batch_size=2, max_steps=3, log_every=1, boxes=str(boxes), device="cpu",
                         workers=1, progress=False, schedule="cosine-epochs", lr_floor=0.1, decay_epochs=1,
                         extra={"pseudo_p": 0.5})
    fit(config)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"signed_mse", "feas", "kl_fea", "kl_out3", "entropy"} <= set(log[-1])
    assert all(math.isfinite(r["loss"]) for r in log)
    result = evaluate(run / "model.pt", protocol="dualpath-authors", device="cpu", out=tmp_path / "eval",
                      progress=False, loader="torch")
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())["protocol"]
    assert (record["name"], record["numbers"], record["patch_size"], record["patch_grid"]) == \
        ("dualpath-authors", "ped2", 4, "single")
    assert record["dropped_frames_per_video_end"] == [4, 3] and record["order"].startswith("edge drop, normal")
    for video in result.videos:
        assert video.frames[0] == 4 and video.frames[-1] == video.num_frames - 4  # T = 8: frames 4 .. len - 4


def test_eval_protocol_option_refuses_scoring_options_it_sets(tmp_path):
    from click.testing import CliRunner

    from vadgpu.cli.main import cli

    result = CliRunner().invoke(cli, ["eval", "--run", str(tmp_path), "--protocol", "dualpath-authors",
                                      "--sigma", "3", "--score", "mixed"])
    assert result.exit_code == 2
    assert "--protocol dualpath-authors sets the scoring itself; leave out --score, --sigma" in result.output
    help_text = CliRunner().invoke(cli, ["eval", "--help"], terminal_width=200).output
    assert "--protocol [vadgpu|dualpath-authors]" in help_text
