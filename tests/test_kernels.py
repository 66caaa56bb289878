"""Pseudo-anomaly kernels on CPU: the torch reference against hand-computed cases, the API's contracts, the policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vadgpu import kernels as K
from vadgpu.errors import VadgpuError
from vadgpu.kernels import params, torch_ops

N, C, T, H, W = 4, 1, 6, 24, 32


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clone_gen(g: torch.Generator) -> torch.Generator:
    copy = torch.Generator()
    copy.set_state(g.get_state())
    return copy


@pytest.fixture
def clips() -> torch.Tensor:
    return torch.rand(N, C, T, H, W, generator=gen(1))


@pytest.fixture
def boxes() -> tuple[torch.Tensor, torch.Tensor]:
    # A box that drifts right over the clip; sample 2 has no object.
    x1 = torch.linspace(0.1, 0.4, T)
    b = torch.stack([x1, torch.full((T,), 0.2), x1 + 0.4, torch.full((T,), 0.9)], dim=1)  # (T, 4)
    return b.expand(N, T, 4).clone(), torch.tensor([True, True, False, True])


def frame_numbered(n: int, frames: int) -> torch.Tensor:
    # Every pixel of frame f holds f, so a gathered clip reads back which frames it took.
    return torch.arange(frames, dtype=torch.float32)[None, None, :, None, None].expand(n, C, frames, 3, 5).clone()


# --- frame skipping --------------------------------------------------------------------------------------------


def test_skip_frames_hand_computed_odd_and_even_t():
    window = frame_numbered(2, 5 * (3 - 1) + 1)  # max_skip 5, T=3: 11 frames, centre at 5
    out = K.skip_frames(window, torch.tensor([2, 3]), 3)
    assert out[:, 0, :, 0, 0].tolist() == [[3, 5, 7], [2, 5, 8]]
    window = frame_numbered(2, 5 * (4 - 1) + 1)  # T=4: 16 frames, centre = 5 * (4 // 2) = 10
    out = K.skip_frames(window, torch.tensor([2, 5]), 4)
    assert out[:, 0, :, 0, 0].tolist() == [[6, 8, 10, 12], [0, 5, 10, 15]]


def test_skip_frames_rejects_bad_window_and_skips():
    with pytest.raises(VadgpuError, match="window has 10 frames"):
        K.skip_frames(frame_numbered(2, 10), torch.tensor([2, 2]), 3)
    with pytest.raises(VadgpuError, match=r"skips must lie in \[1, 5\]"):
        K.skip_frames(frame_numbered(2, 11), torch.tensor([2, 6]), 3)
    with pytest.raises(VadgpuError, match="skips must be an integer"):
        K.skip_frames(frame_numbered(2, 11), torch.tensor([2.0, 3.0]), 3)


# --- motion shuffling ------------------------------------------------------------------------------------------


def test_valid_permutation_counts_match_known_sequence():
    # Permutations of n with no |p[i+1] - p[i]| == 1 (OEIS A002464): 2, 14, 90, 646, 5242 for n = 4..8.
    counts = [params.valid_permutation_table(t, torch.device("cpu")).shape[0] for t in range(4, 9)]
    assert counts == [2, 14, 90, 646, 5242]


@pytest.mark.parametrize("temporal", [4, 5, 8, 9, 16, 33])
def test_shuffle_constraint_over_many_draws(temporal):
    perms = params.draw_permutations(3000, temporal, gen(temporal), torch.device("cpu"))  # (N, T)
    assert torch.equal(perms.sort(dim=1).values, torch.arange(temporal).expand(3000, temporal))
    assert (perms.diff(dim=1).abs() != 1).all()
    assert len({tuple(p) for p in perms.tolist()}) > (1 if temporal == 4 else 10)


def test_shuffle_is_uniform_over_the_table():
    perms = params.draw_permutations(7000, 5, gen(3), torch.device("cpu"))
    counts = torch.unique(perms, dim=0, return_counts=True)[1]
    assert counts.numel() == 14 and counts.min() > 7000 / 14 * 0.75


@pytest.mark.parametrize("temporal", range(4, 21))
def test_designed_fallback_permutations_are_valid(temporal):
    perms = params._designed_permutation(64, temporal, gen(0), torch.device("cpu"))
    assert torch.equal(perms.sort(dim=1).values, torch.arange(temporal).expand(64, temporal))
    assert (perms.diff(dim=1).abs() != 1).all()


def test_shuffle_motion_reorders_frames_of_each_clip():
    clip = frame_numbered(50, 7)
    out = K.shuffle_motion(clip, gen(0))
    order = out[:, 0, :, 0, 0].long()  # (N, T): which source frame went where
    assert (order.diff(dim=1).abs() != 1).all()
    assert torch.equal(out, clip.gather(2, order[:, None, :, None, None].expand_as(clip)))


def test_shuffle_needs_four_frames(clips):
    with pytest.raises(VadgpuError, match="at least 4 frames"):
        K.shuffle_motion(clips[:, :, :3], gen(0))


# --- Gaussian noise --------------------------------------------------------------------------------------------


def test_gaussian_noise_matches_definition_and_clamps(clips):
    g = gen(5)
    z = torch.randn(clips.shape, generator=clone_gen(g))
    out = K.gaussian_noise(clips, 0.3, g)
    assert torch.allclose(out, (clips + 0.3 * z).clamp(0, 1))
    assert out.min() >= 0 and out.max() <= 1 and (out == 1).any() and (out == 0).any()
    per_sample = K.gaussian_noise(clips, torch.tensor([0.0, 0.1, 0.0, 0.2]), gen(6))
    assert torch.equal(per_sample[0], clips[0]) and not torch.equal(per_sample[1], clips[1])
    with pytest.raises(VadgpuError, match="sigma must be >= 0"):
        K.gaussian_noise(clips, -1.0, gen(0))


# --- patches ---------------------------------------------------------------------------------------------------


def test_paste_patches_hand_computed():
    # 4x4 black frame, box = whole frame, sub-box = whole box, a 1x2 patch [0, 1] (dark left, bright right).
    clip = torch.zeros(1, 1, 1, 4, 4)
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    patch = torch.tensor([[[[0.0, 1.0]]]])  # (P, C, ph, pw) = (1, 1, 1, 2)
    out, mask = torch_ops.paste_patches(
        clip, boxes, torch.tensor([True]), patch, torch.tensor([0]), torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    )
    centres = [-0.75, -0.25, 0.25, 0.75]  # 2a - 1 at the pixel centres 0.125 .. 0.875
    # Bilinear with half-pixel centres: x = a * 2 - 0.5 clamped to [0, 1] -> 0, 0.25, 0.75, 1.
    values = [0.0, 0.25, 0.75, 1.0]
    for y in range(4):
        for x in range(4):
            r = math.hypot(centres[x], centres[y])
            weight = 0.5 * (1 + math.cos(math.pi * r)) if r < 1 else 0.0
            assert out[0, 0, 0, y, x].item() == pytest.approx(weight * values[x], abs=1e-6)
            assert mask[0, 0, 0, y, x].item() == (1.0 if weight > 0 else 0.0)
    assert mask[0, 0, 0, 0, 0] == 0 and mask[0, 0, 0, 1, 1] == 1  # corners keep the frame, centre takes the patch


def test_paste_patches_changes_only_inside_boxes(clips, boxes):
    b, valid = boxes
    patches = torch.rand(5, C, 8, 8, generator=gen(2))
    out, mask = K.paste_patches(clips, b, valid, patches, gen(3))
    inside = torch_ops.box_mask(b, valid, H, W)  # (N, 1, T, H, W)
    assert mask.shape == (N, 1, T, H, W) and mask.dtype == torch.float32
    assert (mask <= inside).all(), "changed pixels must lie inside the object's box"
    assert torch.equal(torch.where(mask.bool(), clips, out), clips), "pixels outside the mask untouched"
    assert torch.equal(out[2], clips[2]) and mask[2].sum() == 0, "valid=False sample unchanged"
    assert mask[valid].sum(dim=(1, 2, 3, 4)).min() > 0
    assert (out != clips).sum() > 0.5 * mask.sum()  # almost every masked pixel really changed


def test_paste_patches_rejects_mismatched_bank(clips, boxes):
    with pytest.raises(VadgpuError, match="do not match the clips"):
        K.paste_patches(clips, *boxes, torch.rand(5, 3, 8, 8), gen(0))
    with pytest.raises(VadgpuError, match=r"boxes must be a float \(N, T, 4\)"):
        K.paste_patches(clips, boxes[0][:, :2], boxes[1], torch.rand(5, 1, 8, 8), gen(0))


# --- DDL blend -------------------------------------------------------------------------------------------------


def test_ddl_blend_hand_computed():
    clip = torch.full((1, 1, 1, 4, 4), 0.5)
    noise = torch.arange(16, dtype=torch.float32).reshape(1, 1, 1, 4, 4) / 16
    boxes = torch.tensor([[[0.25, 0.25, 0.75, 0.75]]])  # pixel centres 0.375 and 0.625 in both axes
    out, mask = torch_ops.ddl_blend(clip, boxes, torch.tensor([True]), noise, torch.tensor(0.0))  # w = 0.5
    expected_mask = torch.zeros(4, 4)
    expected_mask[1:3, 1:3] = 1
    assert torch.equal(mask[0, 0, 0], expected_mask)
    expected = torch.where(expected_mask.bool(), 0.5 * 0.5 + 0.5 * noise[0, 0, 0], 0.5)
    assert torch.allclose(out[0, 0, 0], expected)


def test_ddl_gradient_reaches_the_logit(clips, boxes):
    b, valid = boxes
    logit = torch.tensor(0.3, requires_grad=True)
    g = gen(4)
    noise = torch.rand(clips.shape, generator=clone_gen(g))
    out, mask = K.ddl_blend(clips, b, valid, logit, g)
    out.sum().backward()
    w = torch.sigmoid(torch.tensor(0.3))
    expected = (mask * (noise - clips)).sum() * w * (1 - w)
    assert logit.grad is not None and logit.grad.abs() > 0
    assert torch.allclose(logit.grad, expected, rtol=1e-4)
    assert torch.equal(torch.where(mask.bool(), clips, out), clips) and mask[2].sum() == 0

    def double(lg):
        return torch_ops.ddl_blend(clips[:1].double(), b[:1].double(), valid[:1], noise[:1].double(), lg)[0]

    assert torch.autograd.gradcheck(double, (torch.tensor(0.2, dtype=torch.float64, requires_grad=True),))


# --- the API as a whole ----------------------------------------------------------------------------------------


def run_all(x: torch.Tensor, boxes, seed: int) -> dict[str, torch.Tensor]:
    b, valid = boxes
    b = b.to(x.dtype)
    g = gen(seed)
    window = torch.rand(x.shape[0], x.shape[1], 3 * (x.shape[2] - 1) + 1, *x.shape[3:], generator=g, dtype=x.dtype)
    return {
        "skip": K.skip_frames(window, torch.tensor([2, 3, 2, 3]), x.shape[2]),
        "shuffle": K.shuffle_motion(x, g),
        "noise": K.gaussian_noise(x, 0.1, g),
        "patch": K.paste_patches(x, b, valid, torch.rand(3, x.shape[1], 6, 6, generator=g, dtype=x.dtype), g)[0],
        "ddl": K.ddl_blend(x, b, valid, torch.tensor(0.0), g)[0],
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes_kept(clips, boxes, dtype):
    x = clips.to(dtype)
    before = x.clone()
    for name, out in run_all(x, boxes, 0).items():
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device, name
        assert 0 <= out.min() and out.max() <= 1, name
    assert torch.equal(x, before), "inputs are never modified"


def test_deterministic_under_a_seed(clips, boxes):
    first, again, other = run_all(clips, boxes, 7), run_all(clips, boxes, 7), run_all(clips, boxes, 8)
    for name in first:
        assert torch.equal(first[name], again[name]), name
    assert not torch.equal(first["noise"], other["noise"])


def test_dispatcher_backends(clips):
    assert K.resolve_backend("auto", clips) == "torch"
    assert K.resolve_backend("torch", clips) == "torch"
    with pytest.raises(VadgpuError, match="backend='cupy' runs CUDA kernels"):
        K.gaussian_noise(clips, 0.1, gen(0), backend="cupy")
    with pytest.raises(VadgpuError, match="is not one of"):
        K.shuffle_motion(clips, gen(0), backend="triton")


# --- policy ----------------------------------------------------------------------------------------------------


class Batch:
    def __init__(self, clips, window=None):
        self.clips, self.window = clips, window


def big_batch(n: int, temporal: int = 4, seed: int = 0):
    g = gen(seed)
    clips = torch.rand(n, 1, temporal, 8, 8, generator=g)
    window = torch.rand(n, 1, 5 * (temporal - 1) + 1, 8, 8, generator=g)
    valid = torch.rand(n, generator=g) < 0.7
    b = torch.tensor([0.2, 0.2, 0.8, 0.8]).expand(n, temporal, 4).clone()
    return Batch(clips, window), b, valid, torch.rand(4, 1, 5, 5, generator=g)


def test_policy_proportions_kinds_and_masks():
    n = 4000
    batch, b, valid, patches = big_batch(n)
    logit = torch.tensor(0.0, requires_grad=True)
    policy = K.PseudoAnomalyPolicy(0.6, ["skip", "shuffle", "noise", "patch", "ddl"], weights=[1, 1, 1, 2, 2])
    out = policy(batch, b, valid, patches, gen(9), logit=logit)
    kind = out.kind
    assert out.clips.shape == batch.clips.shape and out.mask.shape == (n, 1, 4, 8, 8)
    # Patch/ddl samples without an object fell back to normal, so the perturbed share is p * (3 + 4 * 0.7) / 7.
    expected = 0.6 * (3 + 4 * valid.float().mean().item()) / 7
    assert abs((kind != 0).float().mean().item() - expected) < 0.03
    shares = torch.stack([(kind[valid] == k).float().mean() for k in range(1, 6)])
    assert torch.allclose(shares, 0.6 * torch.tensor([1, 1, 1, 2, 2]) / 7, atol=0.03)
    assert not ((kind == K.KIND_PATCH) | (kind == K.KIND_DDL))[~valid].any()
    normal = kind == 0
    assert torch.equal(out.clips[normal], batch.clips[normal]) and out.mask[normal].sum() == 0
    for k in (K.KIND_SKIP, K.KIND_SHUFFLE, K.KIND_NOISE):
        assert (out.mask[kind == k] == 1).all()
    for k in (K.KIND_PATCH, K.KIND_DDL):
        region = out.mask[kind == k]
        assert 0 < region.mean() < 1 and (region <= torch_ops.box_mask(b, valid, 8, 8)[kind == k]).all()
    out.clips.sum().backward()
    assert logit.grad is not None and logit.grad != 0


def test_policy_p_extremes_and_determinism():
    batch, b, valid, patches = big_batch(300, temporal=5)
    for policy in (K.PseudoAnomalyPolicy(0.0, ["noise", "shuffle"]), K.PseudoAnomalyPolicy(1.0, [], skips=())):
        none = policy(batch, b, valid, patches, gen(0))
        assert (none.kind == 0).all() and torch.equal(none.clips, batch.clips) and none.mask.sum() == 0
    policy = K.PseudoAnomalyPolicy(1.0, ["noise", "shuffle"], weights=[0, 1])
    first = policy(batch, None, None, None, gen(1))
    assert (first.kind == K.KIND_SHUFFLE).all()
    again = policy(batch, None, None, None, gen(1))
    assert torch.equal(first.clips, again.clips) and torch.equal(first.kind, again.kind)


def test_policy_reports_what_is_missing():
    batch, b, valid, patches = big_batch(8, temporal=3)
    with pytest.raises(VadgpuError, match="unknown pseudo-anomaly kind 'blur'"):
        K.PseudoAnomalyPolicy(0.5, ["blur"])
    with pytest.raises(VadgpuError, match="one non-negative number per kind"):
        K.PseudoAnomalyPolicy(0.5, ["noise", "skip"], weights=[1])
    with pytest.raises(VadgpuError, match="p must be in"):
        K.PseudoAnomalyPolicy(1.5, ["noise"])
    with pytest.raises(VadgpuError, match="needs the model's learnable logit"):
        K.PseudoAnomalyPolicy(0.5, ["ddl"])(batch, b, valid, patches, gen(0))
    with pytest.raises(VadgpuError, match="need object boxes and valid"):
        K.PseudoAnomalyPolicy(0.5, ["patch"])(batch, None, None, patches, gen(0))
    with pytest.raises(VadgpuError, match="needs batch.window"):
        K.PseudoAnomalyPolicy(0.5, ["skip"])(Batch(batch.clips), b, valid, patches, gen(0))
    with pytest.raises(VadgpuError, match="exceed the batch window's max_skip=5"):
        K.PseudoAnomalyPolicy(0.5, ["skip"], skips=[2, 7])(batch, b, valid, patches, gen(0))
    with pytest.raises(VadgpuError, match="at least 4 frames"):
        K.PseudoAnomalyPolicy(0.5, ["shuffle"])(batch, b, valid, patches, gen(0))


# --- real Ped2 -------------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_skip_clips_on_real_ped2_move_more_than_normal_clips(ped2_root):
    import cv2

    temporal, max_skip = 3, 5
    files = sorted((ped2_root / "training" / "frames" / "01").glob("*.jpg"))[40 : 40 + max_skip * (temporal - 1) + 1]
    frames = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (64, 48), interpolation=cv2.INTER_AREA)
              for f in files]
    window = torch.from_numpy(np.stack(frames)).float().div(255)[None, None]  # (1, 1, 11, 48, 64)
    window = window.expand(max_skip, 1, *window.shape[2:]).contiguous()
    clips = K.skip_frames(window, torch.arange(1, max_skip + 1), temporal)  # skip 1 = the normal clip
    centre = window[:, :, max_skip * (temporal // 2)]
    assert torch.equal(clips[:, :, temporal // 2], centre)
    motion = (clips[:, :, 0] - clips[:, :, -1]).abs().mean(dim=(1, 2, 3))  # (5,) first vs last frame
    assert (motion.diff() > 0).all(), f"pedestrians move further between frames further apart: {motion.tolist()}"


def test_kernel_benchmark_writes_its_result(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    from click.testing import CliRunner

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernels.py"
    spec = importlib.util.spec_from_file_location("bench_kernels", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "kernels.json"
    args = ["--device", "cpu", "--batch", "2", "--size", "16", "--temporal", "3,4", "--repeats", "1", "--out", str(out)]
    result = CliRunner().invoke(bench.main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = {(r["temporal"], r["kernel"]): r for r in data["results"]}
    assert len(rows) == 2 * len(bench.KERNELS) and data["hardware"]["device"].startswith("cpu")
    assert rows[(3, "shuffle_motion")]["torch_ms"] is None and rows[(4, "shuffle_motion")]["torch_ms"] > 0
    assert all(r["torch_ms"] > 0 for key, r in rows.items() if key != (3, "shuffle_motion"))
