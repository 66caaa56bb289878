"""The perturbation functions: argument checks, random parameters, then the torch or CuPy implementation.

    skip_frames(window, skips, temporal)                         -> clips
    shuffle_motion(clips, generator)                             -> clips
    gaussian_noise(clips, sigma, generator)                      -> clips
    paste_patches(clips, boxes, valid, patches, generator)       -> (clips, mask)
    ddl_blend(clips, boxes, valid, logit, generator)             -> (x_a, mask)

Clips are (N, C, T, H, W) float in [0, 1]; boxes (N, T, 4) normalised xyxy with valid (N,) bool; patches
(P, C, h, w) in [0, 1]; masks (N, 1, T, H, W) float, 1 where pixels changed. Every function takes
`backend="auto" | "torch" | "cupy"` (KERNEL_BACKENDS): auto runs the CuPy kernels on CUDA tensors and torch
otherwise.

The random parameters are drawn here, in torch, from `generator` (which must live on the clips' device), and
handed to either backend as tensors: CuPy and torch see the same numbers, give the same result, and no value is
read back to the host. Inputs are never modified. The checks (`check_clips`, `check_generator`, `check_boxes`,
`skip_window_max`) are public: the policy runs them once per batch.
"""

from __future__ import annotations

import torch

from vadgpu.errors import VadgpuError
from vadgpu.kernels import params, torch_ops

KERNEL_BACKENDS = ("auto", "torch", "cupy")


def resolve_backend(backend: str, tensor: torch.Tensor) -> str:
    """'torch' or 'cupy' for `tensor`: auto picks CuPy on CUDA tensors, torch otherwise."""
    if backend not in KERNEL_BACKENDS:
        raise VadgpuError(f"backend={backend!r} is not one of {', '.join(KERNEL_BACKENDS)}")
    if backend == "auto":
        return "cupy" if tensor.is_cuda else "torch"
    if backend == "cupy" and not tensor.is_cuda:
        raise VadgpuError(
            f"backend='cupy' runs CUDA kernels, but the clips are on {tensor.device}; "
            f"use backend='torch' or 'auto' for CPU tensors"
        )
    return backend


def _implementation(backend: str, tensor: torch.Tensor):
    if resolve_backend(backend, tensor) == "cupy":
        from vadgpu.kernels import cupy_ops  # imported only when used: CuPy is heavy and needs CUDA

        return cupy_ops
    return torch_ops


def check_clips(name: str, clips: torch.Tensor) -> None:
    """`clips` (called `name` in the message) is a float (N, C, T, H, W) tensor."""
    if not isinstance(clips, torch.Tensor) or clips.ndim != 5:
        got = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise VadgpuError(f"{name} must be a (N, C, T, H, W) tensor, got {got}")
    if not clips.is_floating_point():
        raise VadgpuError(f"{name} must be a float tensor with values in [0, 1], got {clips.dtype}")


def check_generator(generator: torch.Generator, device: torch.device) -> None:
    """`generator` is a torch.Generator on `device` (the clips' device)."""
    if not isinstance(generator, torch.Generator):
        raise VadgpuError(f"generator must be a torch.Generator on {device}, got {type(generator).__name__}")
    if generator.device.type != device.type or (device.type == "cuda" and generator.device.index != device.index):
        raise VadgpuError(
            f"generator is on {generator.device} but the clips are on {device}: random parameters are drawn on "
            f"the clips' device (torch.Generator(device=clips.device))"
        )


def check_boxes(clips: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor) -> None:
    """boxes (N, T, 4) float and valid (N,) bool, on the clips' device."""
    n, _, t = clips.shape[:3]
    if not isinstance(boxes, torch.Tensor) or tuple(boxes.shape) != (n, t, 4) or not boxes.is_floating_point():
        got = (tuple(boxes.shape), boxes.dtype) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise VadgpuError(f"boxes must be a float (N, T, 4) = ({n}, {t}, 4) tensor of normalised xyxy, got {got}")
    if not isinstance(valid, torch.Tensor) or tuple(valid.shape) != (n,) or valid.dtype != torch.bool:
        got = (tuple(valid.shape), valid.dtype) if isinstance(valid, torch.Tensor) else type(valid).__name__
        raise VadgpuError(f"valid must be a bool (N,) = ({n},) tensor, got {got}")
    for name, tensor in (("boxes", boxes), ("valid", valid)):
        if tensor.device != clips.device:
            raise VadgpuError(f"{name} is on {tensor.device} but the clips are on {clips.device}")


def skip_window_max(window: torch.Tensor, temporal: int) -> int:
    """The max_skip a skip window of `temporal`-frame clips was decoded for (its frames = max_skip * (T - 1) + 1)."""
    # The pipeline's window holds max_skip * (T - 1) + 1 frames (docs/architecture.md, ClipBatch.window).
    if temporal < 2:
        raise VadgpuError(f"frame skipping needs clips of at least 2 frames, got temporal={temporal}")
    frames = window.shape[2]
    if frames < temporal or (frames - 1) % (temporal - 1):
        raise VadgpuError(
            f"window has {frames} frames; for temporal={temporal} it must hold max_skip * (T - 1) + 1 frames "
            f"(ClipSpec.max_skip >= the largest skip)"
        )
    return (frames - 1) // (temporal - 1)


def skip_frames(window: torch.Tensor, skips: torch.Tensor, temporal: int, *, backend: str = "auto") -> torch.Tensor:
    """Clips whose T frames are skips[n] apart around the window's centre frame.

    window (N, C, max_skip * (T - 1) + 1, H, W) from ClipBatch.window, skips (N,) int64 in [1, max_skip]
    -> (N, C, T, H, W). Skips are checked on CPU; on CUDA a check would need a host sync, so out-of-range skips
    are clamped to the window there.
    """
    check_clips("window", window)
    max_skip = skip_window_max(window, temporal)
    if not isinstance(skips, torch.Tensor) or tuple(skips.shape) != (window.shape[0],) or skips.is_floating_point():
        raise VadgpuError(f"skips must be an integer (N,) = ({window.shape[0]},) tensor")
    if skips.device.type == "cpu" and skips.numel() and (int(skips.min()) < 1 or int(skips.max()) > max_skip):
        raise VadgpuError(f"skips must lie in [1, {max_skip}] (the window's max_skip), got {skips.tolist()}")
    index = params.skip_index(skips.to(device=window.device, dtype=torch.int64), temporal, window.shape[2])
    return _implementation(backend, window).gather_frames(window, index)


def shuffle_motion(clips: torch.Tensor, generator: torch.Generator, *, backend: str = "auto",
                   one_permutation: bool = False) -> torch.Tensor:
    """Reorder each clip's frames by a random permutation in which no two neighbouring positions hold
    consecutive frames (|p[i+1] - p[i]| != 1). Needs T >= 4 (shorter clips have no such permutation).
    `one_permutation`: the same permutation for every clip (the dual-path authors' one draw per batch)."""
    check_clips("clips", clips)
    check_generator(generator, clips.device)
    n, t = clips.shape[0], clips.shape[2]
    if one_permutation:
        perms = params.draw_permutations(1, t, generator, clips.device).expand(n, t).contiguous()  # (N, T)
    else:
        perms = params.draw_permutations(n, t, generator, clips.device)  # (N, T)
    return _implementation(backend, clips).gather_frames(clips, perms)


def gaussian_noise(
    clips: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator, *, backend: str = "auto"
) -> torch.Tensor:
    """clamp(clips + sigma * z, 0, 1), z ~ N(0, 1); sigma a float or a per-sample (N,) tensor."""
    check_clips("clips", clips)
    check_generator(generator, clips.device)
    n = clips.shape[0]
    if isinstance(sigma, torch.Tensor):
        if tuple(sigma.shape) != (n,):
            raise VadgpuError(f"sigma must be a float or an (N,) = ({n},) tensor, got shape {tuple(sigma.shape)}")
        sigma = sigma.to(device=clips.device, dtype=clips.dtype)
    else:
        if not sigma >= 0:
            raise VadgpuError(f"sigma must be >= 0, got {sigma}")
        sigma = torch.full((n,), float(sigma), device=clips.device, dtype=clips.dtype)
    noise = params.draw_gaussian(clips, generator)
    return _implementation(backend, clips).add_gaussian_noise(clips, noise, sigma)


def paste_patches(
    clips: torch.Tensor,
    boxes: torch.Tensor,
    valid: torch.Tensor,
    patches: torch.Tensor,
    generator: torch.Generator,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste one random bank patch per sample into a random sub-box of its object's box in every frame.

    The patch is resized bilinearly into the sub-box and blended with a radial weight (centre fully patch,
    border fully frame). Samples with valid=False are returned unchanged. Returns (clips, mask (N, 1, T, H, W)).
    """
    check_clips("clips", clips)
    check_generator(generator, clips.device)
    check_boxes(clips, boxes, valid)
    if not isinstance(patches, torch.Tensor) or patches.ndim != 4 or patches.shape[0] < 1:
        got = tuple(patches.shape) if isinstance(patches, torch.Tensor) else type(patches).__name__
        raise VadgpuError(f"patches must be a non-empty (P, C, h, w) tensor, got {got}")
    if patches.shape[1] != clips.shape[1] or patches.device != clips.device or patches.dtype != clips.dtype:
        raise VadgpuError(
            f"patches {tuple(patches.shape)} {patches.dtype} on {patches.device} do not match the clips "
            f"(C={clips.shape[1]}, {clips.dtype} on {clips.device}); load the bank with the clips' channels"
        )
    index, subbox = params.draw_patch_params(clips.shape[0], patches.shape[0], generator, clips.device)
    return _implementation(backend, clips).paste_patches(clips, boxes.to(clips.dtype), valid, patches, index, subbox)


def ddl_blend(
    clips: torch.Tensor,
    boxes: torch.Tensor,
    valid: torch.Tensor,
    logit: torch.Tensor,
    generator: torch.Generator,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDL's pseudo-anomaly: X_A = (1 - M) X + M ((1 - w) X + w A), A ~ U(0, 1), w = sigmoid(logit).

    M is the box mask of the sample's tracked object in each frame (zero for valid=False). Differentiable in
    `logit` (a one-element tensor, usually the model's `anomaly_logit`). Returns (x_a, mask (N, 1, T, H, W)).
    """
    check_clips("clips", clips)
    check_generator(generator, clips.device)
    check_boxes(clips, boxes, valid)
    if not isinstance(logit, torch.Tensor) or logit.numel() != 1 or logit.device != clips.device:
        raise VadgpuError(f"logit must be a one-element tensor on {clips.device} (the learnable DDL logit)")
    noise = params.draw_uniform(clips, generator)
    return _implementation(backend, clips).ddl_blend(clips, boxes.to(clips.dtype), valid, noise, logit)
