"""Per-frame anomaly scores from a centre frame and its reconstruction.

Three scores, all "higher = more anomalous", computed on the device in one batched pass:

    patch-max  DDL's score (the default): the squared error is averaged over square patches laid on two grids, the
               second offset by half a patch in both directions, and the frame's score is the largest patch mean.
               A small anomaly (one cyclist in a crowd) moves the maximum of a patch mean much more than the mean of
               the whole frame. DDL uses 16x16 patches (offset 8) at 256x256; the patch side here scales with the
               frame: `patch_size_for(h, w)` = 16 * min(h, w) / 256, rounded to an even number, at least 2
               (64x64 -> 4x4 patches offset by 2; 240x360 -> 16x16 offset by 8).
    psnr       the negated PSNR of the whole frame, -10 log10(1 / MSE) (pixel range [0, 1]), so that a worse
               reconstruction gives a higher score.
    mse        the mean squared error of the whole frame (or object tube): the object mode's default, where a
               tube is already the small region the anomaly lies in (patch-max over a 32x32 tube scored lower
               on the Ped2 development videos; docs/results/ped2.md, object mode).
    mixed      the dual-path code's mix of the two error views: w * patch-max + (1 - w) * global MSE, with
               w = MIX_WEIGHT (0.5) unless the caller passes another weight.

Patch-max's grid is vadgpu's two offset grids unless the caller asks for `grid="single"`: one grid of `stride`
(default: the patch, i.e. non-overlapping), as the dual-path authors' scoring lays it (avg_pool2d with stride =
patch on Ped2 and Avenue, stride 1 on ShanghaiTech); `patch` sets the side in pixels (default: `patch_size_for`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vadgpu.errors import VadgpuError

SCORE_KINDS = ("patch-max", "psnr", "mixed", "mse")
DEFAULT_SCORE = "patch-max"
OBJECT_SCORE = "mse"  # the default for object tubes
MIX_WEIGHT = 0.5
PATCH_GRIDS = ("offset", "single")  # two grids, the second offset by half a patch; or one grid of a given stride
_PSNR_EPS = 1e-10  # a perfect reconstruction would make PSNR infinite; clamp the MSE instead


def patch_size_for(height: int, width: int) -> int:
    """DDL's 16-pixel patch scaled from 256 pixels to the shorter side of the frame, even, at least 2."""
    side = 16 * min(height, width) / 256
    return max(2, 2 * round(side / 2))


def error_map(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared error averaged over channels: (N, C, H, W) x 2 -> (N, 1, H, W)."""
    if target.shape != recon.shape or target.dim() != 4:
        raise VadgpuError(
            f"scores: target {tuple(target.shape)} and reconstruction {tuple(recon.shape)} must both be (N, C, H, W)"
        )
    return (target.float() - recon.float()).pow(2).mean(dim=1, keepdim=True)  # (N, 1, H, W)


def patch_max(errors: torch.Tensor, patch: int | None = None, grid: str = "offset",
              stride: int | None = None) -> torch.Tensor:
    """Largest mean error over patches: (N, 1, H, W) -> (N,). `grid="offset"`: two grids of stride `patch`, the
    second offset by patch // 2; `"single"`: one grid of stride `stride` (default `patch`)."""
    height, width = errors.shape[-2:]
    patch = patch or patch_size_for(height, width)
    if patch > min(height, width):
        raise VadgpuError(f"scores: patch size {patch} is larger than the {height}x{width} frame")
    if grid not in PATCH_GRIDS:
        raise VadgpuError(f"scores: patch grid {grid!r} is not one of {', '.join(PATCH_GRIDS)}")
    if grid == "single":
        step = stride or patch
        if step < 1:
            raise VadgpuError(f"scores: patch stride {step} must be at least 1")
        return F.avg_pool2d(errors, patch, stride=step).flatten(1).amax(dim=1)  # (N,)
    half = patch // 2
    grid = F.avg_pool2d(errors, patch, stride=patch)  # (N, 1, H // p, W // p)
    best = grid.flatten(1).amax(dim=1)
    shifted = errors[..., half:, half:]
    if min(shifted.shape[-2:]) >= patch:
        best = torch.maximum(best, F.avg_pool2d(shifted, patch, stride=patch).flatten(1).amax(dim=1))
    return best  # (N,)


def negated_psnr(errors: torch.Tensor) -> torch.Tensor:
    """-PSNR of each frame from its per-pixel squared errors (pixel range [0, 1]): (N, 1, H, W) -> (N,)."""
    mse = errors.flatten(1).mean(dim=1).clamp_min(_PSNR_EPS)
    return 10.0 * torch.log10(mse)  # == -(10 log10(1 / mse))


def frame_scores(
    target: torch.Tensor, recon: torch.Tensor, kind: str = DEFAULT_SCORE, mix_weight: float = MIX_WEIGHT, **grid
) -> torch.Tensor:
    """Score every frame of a batch: (N, C, H, W) target and reconstruction -> (N,) float32, on their device.
    `grid`: patch-max's patch, grid and stride (see `patch_max`)."""
    return scores_from_errors(error_map(target, recon), kind, mix_weight, **grid)


def scores_from_errors(errors: torch.Tensor, kind: str = DEFAULT_SCORE, mix_weight: float = MIX_WEIGHT,
                       patch: int | None = None, grid: str = "offset", stride: int | None = None) -> torch.Tensor:
    """The score `kind` of each frame from its error map (N, 1, H, W) -> (N,); see the module docstring."""
    check_score_kind(kind)
    if kind == "patch-max":
        return patch_max(errors, patch, grid, stride)
    if kind == "psnr":
        return negated_psnr(errors)
    if kind == "mse":
        return errors.flatten(1).mean(dim=1)
    if not 0.0 <= mix_weight <= 1.0 or math.isnan(mix_weight):
        raise VadgpuError(f"--mix-weight {mix_weight} must lie in [0, 1]")
    return mix_weight * patch_max(errors, patch, grid, stride) + (1.0 - mix_weight) * errors.flatten(1).mean(dim=1)


def check_score_kind(kind: str) -> None:
    if kind not in SCORE_KINDS:
        raise VadgpuError(f"--score {kind!r} is not a score (choose from {', '.join(SCORE_KINDS)})")
