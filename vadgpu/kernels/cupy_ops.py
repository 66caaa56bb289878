"""CuPy CUDA implementation of the perturbation kernels (same signatures as `torch_ops`).

Tensors cross to CuPy through DLPack (zero copy) and every kernel runs on torch's current stream, so the
kernels order correctly with torch's work and nothing waits on the host. Outputs are allocated by torch (its
caching allocator owns them) and filled by the kernels. The sources live in `cuda/*.cu`, compiled by NVRTC with
the options that the CI compile check (`nvrtc.py`) uses.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from vadgpu.errors import VadgpuError
from vadgpu.kernels import nvrtc

# The kernels this module launches, by source file (the CI compile check looks for each of them in the PTX).
KERNELS = {"clip_ops.cu": ("gather_frames", "add_gaussian_noise"), "box_ops.cu": ("paste_patches", "ddl_blend")}
_BLOCK = 256
_MAX_BLOCKS = 65535  # grid-stride loops cover the rest


def _cupy():
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA library errors raised at import
        raise VadgpuError(f"backend='cupy' needs CuPy (pip install cupy-cuda12x, or cupy-cuda13x for CUDA 13): "
                          f"{exc}") from exc
    return cupy


@functools.lru_cache(maxsize=None)
def _module(source: str, device_index: int):
    # One module per (source, device), kept alive here; CuPy also caches the compiled binary on disk.
    cupy = _cupy()
    nvrtc.prepare_runtime_nvrtc()
    code = nvrtc.kernel_sources()[source].read_text(encoding="utf-8")
    with cupy.cuda.Device(device_index):
        return cupy.RawModule(code=code, options=nvrtc.COMPILE_OPTIONS)


@functools.lru_cache(maxsize=None)
def _kernel(source: str, name: str, device_index: int):
    with _cupy().cuda.Device(device_index):
        return _module(source, device_index).get_function(name)


def _launch(source: str, name: str, device: torch.device, work_items: int, args: tuple) -> None:
    """Run kernel `name` of `cuda/<source>` over `work_items` threads on torch's current stream.

    `args` may hold torch tensors (handed over with DLPack) and numpy scalars.
    """
    assert name in KERNELS[source], f"{name} is not listed in cupy_ops.KERNELS[{source!r}]"
    if device.type != "cuda":
        raise VadgpuError(f"backend='cupy' runs on CUDA tensors, got tensors on {device} (use backend='torch')")
    if work_items == 0:
        return
    cupy = _cupy()
    grid = min((work_items + _BLOCK - 1) // _BLOCK, _MAX_BLOCKS)
    with cupy.cuda.Device(device.index):
        kernel = _kernel(source, name, device.index)
        with cupy.cuda.Stream.from_external(torch.cuda.current_stream(device)):
            # Inside the stream context, DLPack exports on the same stream: no event, no copy. A kernel is no
            # autograd node (torch refuses to export a tensor that requires grad): it sees the data only.
            converted = tuple(cupy.from_dlpack(a.detach()) if isinstance(a, torch.Tensor) else a for a in args)
            kernel((grid,), (_BLOCK,), converted)


def _float32(name: str, tensor: torch.Tensor) -> torch.Tensor:
    # The kernels read float32, densely packed; the device is checked by _launch.
    if tensor.dtype != torch.float32:
        raise VadgpuError(f"backend='cupy' kernels take float32; {name} is {tensor.dtype}")
    return tensor.contiguous()


def _i64(value: int) -> np.int64:
    return np.int64(value)


def _i32(value: int) -> np.int32:
    return np.int32(value)


def gather_frames(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """out[n, :, t] = source[n, :, index[n, t]] (see torch_ops.gather_frames)."""
    source = _float32("clips", source)
    index = index.to(device=source.device, dtype=torch.int64).contiguous()
    n, c, ts, h, w = source.shape
    t = index.shape[1]
    out = torch.empty((n, c, t, h, w), device=source.device, dtype=source.dtype)
    total = out.numel()
    _launch("clip_ops.cu", "gather_frames", source.device, total,
            (source, index, out, _i64(total), _i32(c), _i32(ts), _i32(t), _i64(h * w)))
    return out


def add_gaussian_noise(clips: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """clamp(clips + sigma[n] * noise, 0, 1) (see torch_ops.add_gaussian_noise)."""
    clips = _float32("clips", clips)
    noise = _float32("noise", noise)
    sigma = _float32("sigma", sigma)
    out = torch.empty_like(clips)
    total = out.numel()
    _launch("clip_ops.cu", "add_gaussian_noise", clips.device, total,
            (clips, noise, sigma, out, _i64(total), _i64(total // max(clips.shape[0], 1))))
    return out


def paste_patches(
    clips: torch.Tensor,
    boxes: torch.Tensor,
    valid: torch.Tensor,
    patches: torch.Tensor,
    patch_index: torch.Tensor,
    subbox: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused sub-box + bilinear resize + radial blend (see torch_ops.paste_patches)."""
    clips = _float32("clips", clips)
    boxes = _float32("boxes", boxes)
    patches = _float32("patches", patches)
    subbox = _float32("subbox", subbox)
    valid = valid.to(torch.uint8).contiguous()
    patch_index = patch_index.to(torch.int64).contiguous()
    n, c, t, h, w = clips.shape
    out = torch.empty_like(clips)
    mask = torch.empty((n, 1, t, h, w), device=clips.device, dtype=torch.float32)
    pixels = mask.numel()
    _launch("box_ops.cu", "paste_patches", clips.device, pixels,
            (clips, boxes, valid, patches, patch_index, subbox, out, mask, _i64(pixels), _i32(c), _i32(t),
             _i32(h), _i32(w), _i32(patches.shape[2]), _i32(patches.shape[3])))
    return out, mask


class _DdlBlendFunction(torch.autograd.Function):
    """The fused DDL kernel forward; backward in torch: dX_A/dl = M (A - X) w (1 - w), dX_A/dX = 1 - M w."""

    @staticmethod
    def forward(ctx, clips, noise, boxes, valid, logit):
        weight = torch.sigmoid(logit.detach()).to(torch.float32).reshape(1)  # stays on the device
        n, c, t, h, w = clips.shape
        out = torch.empty_like(clips)
        mask = torch.empty((n, 1, t, h, w), device=clips.device, dtype=torch.float32)
        pixels = mask.numel()
        _launch("box_ops.cu", "ddl_blend", clips.device, pixels,
                (clips, noise, boxes, valid, weight, out, mask, _i64(pixels), _i32(c), _i32(t), _i32(h), _i32(w)))
        ctx.save_for_backward(clips, noise, mask, weight)
        ctx.logit_shape = logit.shape
        ctx.mark_non_differentiable(mask)
        return out, mask

    @staticmethod
    def backward(ctx, grad_out, _grad_mask):
        clips, noise, mask, weight = ctx.saved_tensors
        grad_clips = grad_logit = None
        if ctx.needs_input_grad[0]:
            grad_clips = grad_out * (1.0 - mask * weight)
        if ctx.needs_input_grad[4]:
            slope = weight * (1.0 - weight)  # d sigmoid / d l
            grad_logit = ((grad_out * mask * (noise - clips)).sum() * slope).reshape(ctx.logit_shape)
        return grad_clips, None, None, None, grad_logit


def ddl_blend(
    clips: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, noise: torch.Tensor, logit: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused box mask + blend, differentiable in `logit` (see torch_ops.ddl_blend)."""
    clips = _float32("clips", clips)
    noise = _float32("noise", noise)
    boxes = _float32("boxes", boxes)
    return _DdlBlendFunction.apply(clips, noise, boxes, valid.to(torch.uint8).contiguous(), logit)
