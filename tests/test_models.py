"""Models: every registered preset (shapes, gradients, state_dict round trip, no host sync), the DDL losses and the
memory addressing against hand-computed values, configs and checkpoints, and a short training with falling loss."""

from __future__ import annotations

import io
import math

import pytest
import torch

from vadgpu.errors import VadgpuError
from vadgpu.models import (
    DualPathConfig,
    MemoryBank,
    build_model,
    list_presets,
    model_from_checkpoint,
    preset_config,
)
from vadgpu.models.base import model_input
from vadgpu.models.ddl_loss import distinction_loss, reconstruction_loss
from vadgpu.models.memory import hard_shrink

from vadgpu import kernels

# Test sizes: the architecture of each preset at 16x16 (the paper presets would not fit a CPU test at all).
SMALL = {
    "ddl-paper": {"size": (16, 16), "width": 2},
    "dualpath-ped2": {"size": (16, 16), "temporal": 4, "features": 2, "memory_items": 8},
    "dualpath-avenue": {"size": (16, 16), "temporal": 4, "features": 2, "memory_items": 8},
    "dualpath-shanghaitech": {"size": (16, 16), "temporal": 4, "features": 2, "memory_items": 8},
    "ddl-ped2-cpu": {"size": (16, 16)},
    "ddl-tiny-cpu": {"size": (16, 16)},
    "dualpath-tiny-cpu": {"size": (16, 16)},
    "dualpath-ped2-cpu": {"size": (16, 16), "temporal": 4},
    **{f"dualpath-{name}-authors": {"size": (16, 16), "temporal": 4, "features": 2, "memory_items": 8}
       for name in ("ped2", "avenue", "shanghaitech")},
    "dualpath-ped2-authors-cpu": {"size": (16, 16), "temporal": 4},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model(preset: str, **overrides):
    return build_model(preset, **{**SMALL.get(preset, {}), **overrides})


def make_anomalies(model, clips: torch.Tensor, seed: int = 0) -> kernels.PseudoAnomalies:
    """Samples 0 .. N/2-1 pseudo-anomalous, the rest normal, made by the real kernels.

    DDL models get kernels.ddl_blend in an object box with their learned `anomaly_logit` (so its gradient flows
    through the clips), dual-path models Gaussian noise over the whole clip.
    """
    n, _, t = clips.shape[:3]
    g = torch.Generator().manual_seed(10_000 + seed)  # a stream apart from the clips' (batch_for uses `seed`)
    valid = torch.arange(n) < n // 2
    if hasattr(model, "anomaly_logit"):
        boxes = torch.tensor([0.2, 0.25, 0.7, 0.8]).expand(n, t, 4).contiguous()
        x_a, mask = kernels.ddl_blend(clips, boxes, valid, model.anomaly_logit, g)
        return kernels.PseudoAnomalies(clips=x_a, kind=torch.where(valid, kernels.KIND_DDL, 0), mask=mask)
    chosen = valid.view(n, 1, 1, 1, 1)
    x_a = torch.where(chosen, kernels.gaussian_noise(clips, 0.2, g), clips)
    mask = chosen.float().expand(n, 1, *clips.shape[2:])
    return kernels.PseudoAnomalies(clips=x_a, kind=torch.where(valid, kernels.KIND_NOISE, 0), mask=mask)


def moving_square_clips(config, n: int = 4, seed: int = 0) -> torch.Tensor:
    """A bright square moving right over a textured background: learnable, not constant."""
    g = torch.Generator().manual_seed(seed)
    h, w = config.size
    t = config.temporal
    background = 0.3 + 0.2 * torch.rand(1, config.channels, 1, h, w, generator=g)
    clips = background.repeat(n, 1, t, 1, 1).clone()
    side = max(h // 4, 2)
    for i in range(n):
        y0 = (i * 5) % (h - side)
        for f in range(t):
            x0 = (2 * f + 3 * i) % (w - side)
            clips[i, :, f, y0 : y0 + side, x0 : x0 + side] = 0.9
    return clips


class TrainingLosses(torch.nn.Module):
    """What DDP wraps in these tests: a module whose `forward` is the model's training_losses (DDP hooks only
    `forward`; the engine wraps its TrainingObjective the same way)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, clips, anomalies):
        return self.model.training_losses(clips, anomalies)


def batch_for(model, n: int = 2, seed: int = 0) -> torch.Tensor:
    c = model.config
    return torch.rand(n, c.channels, c.temporal, *c.size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- registry


def test_required_presets_are_registered():
    required = {"ddl-paper", "dualpath-ped2", "dualpath-avenue", "dualpath-shanghaitech", "ddl-tiny-cpu",
                "dualpath-tiny-cpu", "ddl-ped2-cpu", "dualpath-ped2-cpu"}
    assert required <= set(list_presets())
    paper = preset_config("ddl-paper")
    assert (paper.size, paper.channels, paper.temporal, paper.width) == ((256, 256), 3, 3, 64)
    ped2 = preset_config("dualpath-ped2")
    assert (ped2.size, ped2.channels, ped2.features, ped2.memory_items, ped2.temporal) == ((128, 128), 1, 16, 500, 16)
    assert preset_config("dualpath-ped2-cpu").temporal < 16
    assert preset_config("ddl-ped2-cpu").temporal == 3


@pytest.mark.parametrize("preset", list_presets())
def test_preset_pseudo_settings_build_a_kernels_policy(preset):
    c = preset_config(preset)
    policy = kernels.PseudoAnomalyPolicy(c.pseudo_p, c.pseudo_kinds, c.pseudo_weights, c.noise_sigma, c.skips)
    assert policy.p == c.pseudo_p


def test_bad_names_and_options_are_clear_errors():
    with pytest.raises(VadgpuError, match="unknown model preset 'nope'"):
        build_model("nope")
    with pytest.raises(VadgpuError, match=r"\['depth'\] do not exist"):
        build_model("ddl-tiny-cpu", depth=3)
    with pytest.raises(VadgpuError, match="size.*multiples of 16"):
        build_model("ddl-tiny-cpu", size=(40, 32))
    with pytest.raises(VadgpuError, match="pseudo_kinds"):
        build_model("dualpath-tiny-cpu", pseudo_kinds=("blur",))
    with pytest.raises(VadgpuError, match="max_skip"):
        build_model("dualpath-tiny-cpu", max_skip=2, skips=(2, 4))
    with pytest.raises(VadgpuError, match="distinction"):
        build_model("ddl-tiny-cpu", distinction="ratio")
    with pytest.raises(VadgpuError, match=r"width='8x' \(ddl\): expected int"):
        build_model("ddl-tiny-cpu", width="8x")
    assert preset_config("ddl-tiny-cpu", lambda_dist=1).lambda_dist == 1.0  # YAML ints are fine for floats
    model = build_model("ddl-tiny-cpu")
    with pytest.raises(VadgpuError, match=r"expects clips .*\(N, 1, 3, 32, 32\)"):
        model.reconstruct(torch.rand(2, 1, 4, 32, 32))


def test_config_dict_round_trip_is_plain_and_exact():
    config = preset_config("dualpath-tiny-cpu", memory_mode="mnad")
    data = config.to_dict()
    assert data["architecture"] == "dualpath"
    assert all(isinstance(v, (int, float, str, bool, list, type(None))) for v in data.values())
    assert DualPathConfig.from_dict(data) == config
    with pytest.raises(VadgpuError, match="architecture 'ddl'"):
        DualPathConfig.from_dict({**data, "architecture": "ddl"})


# ---------------------------------------------------------------- every preset

@pytest.mark.parametrize("preset", list_presets())
def test_shapes_and_backward_reach_every_parameter(preset):
    torch.manual_seed(0)
    model = small_model(preset).train()
    clips = batch_for(model)
    losses = model.training_losses(clips, make_anomalies(model, clips))
    assert "loss" in losses
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    losses["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, f"{name} has a zero gradient"
    model.eval()
    with torch.no_grad():
        target, recon = model.reconstruct(clips)
    c = model.config
    assert target.shape == recon.shape == (2, c.channels, *c.size)
    assert torch.equal(target, model_input(c, clips)[:, :, c.temporal // 2])
    if getattr(c, "output", "sigmoid") == "sigmoid":
        assert recon.min() >= 0 and recon.max() <= 1


@pytest.mark.parametrize("preset,extra", [("ddl-tiny-cpu", {}), ("dualpath-tiny-cpu", {}),
                                          ("dualpath-tiny-cpu", {"memory_mode": "mnad"})])
def test_checkpoint_round_trip_gives_identical_outputs(preset, extra):
    torch.manual_seed(1)
    model = small_model(preset, **extra).train()
    clips = batch_for(model, n=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.training_losses(clips, make_anomalies(model, clips))["loss"].backward()
    opt.step()  # trained weights, moved BN statistics (and an updated MNAD memory)
    buffer = io.BytesIO()
    torch.save({"model_name": preset, "model_config": model.config.to_dict(), "model": model.state_dict()}, buffer)
    buffer.seek(0)
    restored = model_from_checkpoint(torch.load(buffer, weights_only=True))
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(model.reconstruct(clips)[1], restored.reconstruct(clips)[1])
    assert restored.config == model.config


def test_checkpoint_with_wrong_weights_is_a_clear_error():
    model = small_model("ddl-tiny-cpu")
    other = small_model("ddl-tiny-cpu", width=2)
    ckpt = {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(), "model": other.state_dict()}
    with pytest.raises(VadgpuError, match="do not fit model 'ddl-tiny-cpu'"):
        model_from_checkpoint(ckpt)
    with pytest.raises(VadgpuError, match="lacks model_config"):
        model_from_checkpoint({"model_name": "ddl-tiny-cpu"})


@pytest.fixture
def forbid_host_sync(monkeypatch):
    """Any Tensor -> host conversion raises, and so does `nonzero` (its output size comes from the device: a sync
    on CUDA that the CPU never shows): the code under test must stay on the device."""

    def refuse(*args, **kwargs):
        raise AssertionError("host synchronisation inside the model")

    for name in ("item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    monkeypatch.setattr(torch, "nonzero", refuse)


# The variants whose training step must not synchronise, on the CPU (forbid_host_sync) and on CUDA alike.
NO_SYNC_VARIANTS = [("ddl-tiny-cpu", {}), ("ddl-tiny-cpu", {"distinction": "pixel"}), ("dualpath-tiny-cpu", {}),
                    ("dualpath-tiny-cpu", {"memory_mode": "mnad"}), ("dualpath-tiny-cpu", {"pseudo_recon": "clean"}),
                    ("dualpath-tiny-cpu", {"loss_terms": "authors"})]
# The dual-path authors' routing reads its group sizes on the host (dualpath.py: one sync per step, documented).
SPLIT_ROUTING = {"loss_terms": "authors", "routing": "split"}


@pytest.mark.parametrize("preset,extra", NO_SYNC_VARIANTS)
def test_no_host_sync_in_training_losses_and_reconstruct(preset, extra, request):
    model = small_model(preset, **extra).train()
    clips = batch_for(model, n=4)
    anomalies = make_anomalies(model, clips)
    request.getfixturevalue("forbid_host_sync")
    losses = model.training_losses(clips, anomalies)
    losses["loss"].backward()
    model.eval()
    with torch.no_grad():
        model.reconstruct(clips)


def test_the_split_routing_is_the_one_documented_sync(request):
    """routing="split" syncs once per training step (nonzero) and not at all when scoring: the check above
    would see a sync added to any other variant the same way."""
    model = small_model("dualpath-tiny-cpu", **SPLIT_ROUTING).train()
    clips = batch_for(model, n=4)
    anomalies = make_anomalies(model, clips)
    request.getfixturevalue("forbid_host_sync")
    with pytest.raises(AssertionError, match="host synchronisation"):
        model.training_losses(clips, anomalies)
    model.eval()
    with torch.no_grad():
        model.reconstruct(clips)


# ---------------------------------------------------------------- DDL loss and model


def test_distinction_loss_matches_hand_computed_values():
    # one sample, gray 1x3 frame, mask on the first two pixels
    clean = torch.tensor([0.2, 0.4, 0.6]).view(1, 1, 1, 3)
    perturbed = torch.tensor([0.8, 0.1, 0.6]).view(1, 1, 1, 3)
    recon = torch.tensor([0.3, 0.3, 0.0]).view(1, 1, 1, 3)
    mask = torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3)
    eps = 1e-6
    # pixel form: mean over masked pixels of (|x - f| + eps) / (|x_a - f| + eps)
    pixel = ((0.1 + eps) / (0.5 + eps) + (0.1 + eps) / (0.2 + eps)) / 2
    assert distinction_loss(clean, perturbed, recon, mask, "pixel", eps).item() == pytest.approx(pixel, rel=1e-5)
    # region form: ratio of the masked L2 norms
    region = (math.sqrt(0.1**2 + 0.1**2) + eps) / (math.sqrt(0.5**2 + 0.2**2) + eps)
    assert distinction_loss(clean, perturbed, recon, mask, "region", eps).item() == pytest.approx(region, rel=1e-5)
    # RGB: the per-pixel error is the channel L2 norm / sqrt(C)
    rgb = clean.expand(1, 3, 1, 3)
    assert reconstruction_loss(rgb, recon.expand(1, 3, 1, 3)).item() == pytest.approx((0.1 + 0.1 + 0.6) / 3, rel=1e-5)
    # empty mask: no distinction term
    for form in ("pixel", "region"):
        assert distinction_loss(clean, perturbed, recon, torch.zeros_like(mask), form).item() == 0.0


def concat_shuffle_block(block, x: torch.Tensor) -> torch.Tensor:
    """A MultiKernelBlock as its layers read: the branches concatenated, BN + ReLU, the 2x2 rearrangement, the
    1x1 mix (what its branch-by-branch forward computes)."""
    import torch.nn.functional as F

    y = torch.cat([branch(x) for branch in block.branches], dim=1)
    y = F.relu(block.norm(y))
    y = F.pixel_shuffle(y, 2) if block.decode else F.pixel_unshuffle(y, 2)
    return block.out_norm(block.mix(y))


@pytest.mark.parametrize("decode", [False, True])
@pytest.mark.parametrize("side", [2, 8])  # a 2x2 map is smaller than the 5x5 and 7x7 kernels' reach
def test_multikernel_block_equals_its_concat_shuffle_form(decode, side):
    """The block as training computes it, branch by branch, gives its layers' function: the same output, gradients
    and BatchNorm running statistics to float rounding; evaluation runs the layers as they read, with the running
    statistics training kept; a block with its mix transposed differs."""
    import copy

    from vadgpu.models.blocks import MultiKernelBlock
    from vadgpu.models.base import channels_last_convolutions

    torch.manual_seed(0)
    block = MultiKernelBlock(8, 4, decode=decode, last=decode)
    channels_last_convolutions(block)
    reference = copy.deepcopy(block)
    x = torch.rand(6, 8, side, side).contiguous(memory_format=torch.channels_last)
    out, want = block(x), concat_shuffle_block(reference, x)
    assert out.shape == want.shape and float((out - want).detach().abs().max()) < 1e-5
    grad = torch.randn_like(out)
    out.backward(grad)
    want.backward(grad)
    for (name, a), b in zip(block.named_parameters(), reference.parameters()):
        assert float((a.grad - b.grad).abs().max()) < 1e-4 * max(1.0, float(b.grad.abs().max())), name
    for (name, a), b in zip(block.named_buffers(), reference.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name
    assert int(block.norm.num_batches_tracked) == 1
    block.eval(), reference.eval()
    with torch.no_grad():
        assert float((block(x) - concat_shuffle_block(reference, x)).abs().max()) < 1e-5
        block.mix.weight.copy_(block.mix.weight.flip(1))
        assert float((block(x) - concat_shuffle_block(reference, x)).abs().max()) > 1e-3


def test_ddl_batch_without_pseudo_anomalies_is_reconstruction_only():
    model = small_model("ddl-tiny-cpu").train()
    clips = batch_for(model, n=2)
    normal = kernels.PseudoAnomalies(clips=clips, kind=torch.zeros(2, dtype=torch.int64),
                             mask=torch.zeros(2, 1, *clips.shape[2:]))
    losses = model.training_losses(clips, normal)
    assert losses["distinction"].item() == 0.0
    assert losses["loss"].item() == pytest.approx(losses["recon"].item(), rel=1e-6)
    assert losses["anomaly_weight"].item() == 0.5  # sigmoid(0) at start


def test_ddl_anomaly_logit_learns_through_the_perturbed_clips():
    model = small_model("ddl-tiny-cpu").train()
    clips = batch_for(model, n=2)
    model.training_losses(clips, make_anomalies(model, clips))["loss"].backward()
    assert model.anomaly_logit.grad is not None and model.anomaly_logit.grad.abs() > 0


def test_ddl_fixed_blend_weight_stays_half_through_training_ddp_and_checkpoints(tmp_path):
    """The ablation's fixed weight: w = 0.5 is not trained (not in the optimiser, no gradient, no DDP hook), the
    rest trains as usual, and a checkpoint restores the same frozen model."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    assert small_model("ddl-tiny-cpu").anomaly_logit.requires_grad  # the default stays the learned weight
    with pytest.raises(VadgpuError, match="blend_weight"):
        small_model("ddl-tiny-cpu", blend_weight="constant")
    torch.manual_seed(2)
    model = small_model("ddl-tiny-cpu", blend_weight="fixed").train()
    assert not model.anomaly_logit.requires_grad
    trainable = [p for p in model.parameters() if p.requires_grad]  # what engine.components hands to Adam
    assert all(p is not model.anomaly_logit for p in trainable)
    opt = torch.optim.Adam(trainable, lr=1e-2)
    before = [p.detach().clone() for p in trainable]
    # DDP (one gloo rank, find_unused_parameters=False as in the engine) must accept the frozen parameter
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(TrainingLosses(model), find_unused_parameters=False)
        for step in range(2):
            clips = batch_for(model, n=4, seed=step)
            losses = ddp(clips, make_anomalies(model, clips, seed=step))
            assert losses["distinction"].item() > 0  # the blend was applied
            opt.zero_grad()
            losses["loss"].backward()
            opt.step()
    finally:
        dist.destroy_process_group()
    assert model.anomaly_logit.grad is None and model.anomaly_logit.item() == 0.0
    assert losses["anomaly_weight"].item() == 0.5
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, trainable) if b.grad is not None)
    buffer = io.BytesIO()
    torch.save({"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(), "model": model.state_dict()},
               buffer)
    buffer.seek(0)
    restored = model_from_checkpoint(torch.load(buffer, weights_only=True))
    assert restored.config.blend_weight == "fixed" and not restored.anomaly_logit.requires_grad
    model.eval(), restored.eval()
    with torch.no_grad():
        clips = batch_for(model, n=2, seed=9)
        assert torch.equal(model.reconstruct(clips)[1], restored.reconstruct(clips)[1])


# ---------------------------------------------------------------- memory


def test_memory_addressing_matches_hand_computed_values():
    memory = MemoryBank(items=3, dim=3, shrink=0.0025)
    with torch.no_grad():
        memory.items.copy_(torch.eye(3))
    probs = torch.tensor([0.7, 0.299, 0.001])
    query = torch.log(probs).view(1, 3, 1)  # (N=1, D=3, L=1): logits z M^T = log probs -> softmax = probs
    out = memory(query)
    # 0.001 < 0.0025 is shrunk to zero; the rest keep their value and are renormalised to sum 1
    expected = torch.tensor([0.7, 0.299, 0.0]) / 0.999
    assert torch.allclose(out.attention.view(3), expected, atol=1e-6)
    assert torch.allclose(out.read.view(3), expected, atol=1e-6)  # read = w M, M = identity
    entropy = -(expected[:2] * expected[:2].log()).sum()
    assert out.entropy.item() == pytest.approx(entropy.item(), rel=1e-5)
    assert hard_shrink(torch.tensor([0.001, 0.5]), 0.0025).tolist() == pytest.approx([0.0, 0.5])


def test_memory_rows_sum_to_one_and_keep_the_query_shape():
    memory = MemoryBank(items=50, dim=8, shrink=0.02)
    query = torch.randn(2, 8, 2, 3, 3)  # (N, D, T, H, W)
    out = memory(query)
    assert out.read.shape == query.shape
    assert out.attention.shape == (2, 18, 50)
    assert torch.allclose(out.attention.sum(-1), torch.ones(2, 18), atol=1e-6)
    assert (out.attention == 0).any()  # shrinkage zeroed the weights under the threshold
    assert out.attention[out.attention > 0].min() >= 0.02  # what survives was above it (renormalising only grows)


def test_mnad_memory_updates_only_when_training_and_stays_unit_norm():
    torch.manual_seed(0)
    memory = MemoryBank(items=6, dim=4, mode="mnad", shrink=0.0)
    before = memory.items.clone()
    query = torch.randn(3, 4, 5)
    memory.eval()
    memory(query)
    assert torch.equal(memory.items, before)
    memory.train()
    out = memory(query, weight=torch.tensor([1.0, 0.0, 1.0]))
    assert not torch.equal(memory.items, before)
    assert torch.allclose(memory.items.norm(dim=1), torch.ones(6), atol=1e-5)
    assert (out.compactness > 0).all() and out.separateness.shape == (3,)
    updated = memory.items.clone()
    memory(query, weight=torch.zeros(3))  # no sample routed to this memory: nothing moves
    assert torch.allclose(memory.items, updated, atol=1e-6)


def test_dualpath_pseudo_decoder_starts_as_a_copy_of_the_normal_decoder():
    model = small_model("dualpath-tiny-cpu")
    normal, pseudo = model.decoder_normal.state_dict(), model.decoder_pseudo.state_dict()
    assert normal.keys() == pseudo.keys()
    assert all(torch.equal(normal[k], pseudo[k]) for k in normal)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(model.decoder_normal.parameters(),
                                                            model.decoder_pseudo.parameters()))


@pytest.mark.parametrize("pseudo", [False, True])
def test_dualpath_routes_normal_samples_to_d_n_and_pseudo_ones_to_d_p(pseudo):
    model = small_model("dualpath-tiny-cpu").train()
    clips = batch_for(model, n=3)
    kind = torch.full((3,), kernels.KIND_NOISE if pseudo else 0)
    x_a = kernels.gaussian_noise(clips, 0.2, torch.Generator().manual_seed(3)) if pseudo else clips
    anomalies = kernels.PseudoAnomalies(clips=x_a, kind=kind, mask=torch.ones(3, 1, *clips.shape[2:]))
    losses = model.training_losses(clips, anomalies)
    losses["loss"].backward()
    used, unused = (model.decoder_pseudo, model.decoder_normal) if pseudo else (model.decoder_normal,
                                                                                 model.decoder_pseudo)
    assert all(p.grad.abs().sum() > 0 for p in used.parameters())
    assert all(p.grad.abs().sum() == 0 for p in unused.parameters())
    assert losses["recon_normal" if pseudo else "recon_pseudo"].item() == 0.0


def test_dualpath_inference_uses_only_the_normal_path():
    model = small_model("dualpath-tiny-cpu").eval()
    clips = batch_for(model, n=2)
    with torch.no_grad():
        before = model.reconstruct(clips)[1]
        for p in list(model.decoder_pseudo.parameters()) + list(model.memory_pseudo.parameters()):
            p.add_(1.0)
        assert torch.equal(model.reconstruct(clips)[1], before)
        model.memory_normal.items.add_(1.0)
        assert not torch.equal(model.reconstruct(clips)[1], before)


# ---------------------------------------------------------------- training


def recon_history(model, clips, steps: int) -> list[float]:
    """Adam steps on one batch; the clean reconstruction term after each (the part that must fall)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for step in range(steps):
        losses = model.training_losses(clips, make_anomalies(model, clips, seed=step))
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(losses["recon" if "recon" in losses else "recon_normal"].item())
    return history


@pytest.mark.parametrize("preset", ["ddl-tiny-cpu", "dualpath-tiny-cpu"])
def test_short_training_on_a_synthetic_batch_lowers_the_loss(preset):
    torch.manual_seed(0)
    model = small_model(preset).train()
    clips = moving_square_clips(model.config, n=4)
    history = recon_history(model, clips, steps=15)
    assert sum(history[-3:]) / 3 < 0.7 * history[0], history


@pytest.mark.shared
@pytest.mark.parametrize("preset", ["ddl-tiny-cpu", "dualpath-tiny-cpu"])
def test_real_ped2_clips_train_with_falling_loss(preset, ped2_root):
    import cv2
    import numpy as np

    torch.manual_seed(0)
    model = small_model(preset, size=(32, 32)).train()
    t = model.config.temporal
    frames = sorted((ped2_root / "training" / "frames" / "01").glob("*.jpg"))
    starts = (0, 30, 60, 90)  # four clips from video 01 (120 frames)
    gray = [[cv2.resize(cv2.imread(str(frames[s + i]), cv2.IMREAD_GRAYSCALE), (32, 32), interpolation=cv2.INTER_AREA)
             for i in range(t)] for s in starts]
    clips = torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0).unsqueeze(1)  # (4, 1, T, 32, 32)
    history = recon_history(model, clips, steps=12)
    # the tiny dual-path model (20 memory items) plateaus near 0.75x on these static-background frames
    assert sum(history[-3:]) / 3 < 0.8 * history[0], history


# ---------------------------------------------------------------- CUDA (skipped without a GPU)


@pytest.mark.gpu
@pytest.mark.parametrize("preset,extra", NO_SYNC_VARIANTS + [("dualpath-tiny-cpu", SPLIT_ROUTING)])
def test_cuda_step_has_no_host_sync_and_matches_cpu(preset, extra):
    torch.manual_seed(0)
    model = small_model(preset, **extra).train()
    clips = batch_for(model, n=4)
    anomalies = make_anomalies(model, clips)
    cpu_losses = {k: v.detach() for k, v in model.training_losses(clips, anomalies).items()}
    cuda_model = model.cuda()
    moved = kernels.PseudoAnomalies(clips=anomalies.clips.detach().cuda(), kind=anomalies.kind.cuda(),
                            mask=anomalies.mask.cuda())
    cuda_clips = clips.cuda()  # a blocking copy from the host syncs by design: done before the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        if extra == SPLIT_ROUTING:  # the documented sync (nonzero) must be seen here, and only there
            with pytest.raises(RuntimeError, match="synchroniz"):
                cuda_model.training_losses(cuda_clips, moved)
            torch.cuda.set_sync_debug_mode("default")
        losses = cuda_model.training_losses(cuda_clips, moved)
        losses["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert losses.keys() == cpu_losses.keys()
    for key, value in cpu_losses.items():  # every term, not the total alone
        assert torch.allclose(losses[key].detach().cpu(), value, rtol=1e-3, atol=1e-4), key

