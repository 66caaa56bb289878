"""The torch reference of the perturbation kernels (CPU and CUDA).

Every function takes its random parameters explicitly (drawn by `params.py`), so `cupy_ops` can be checked
against it value for value. The float operations follow the order of the CUDA sources in `cuda/` (which are
compiled without FMA contraction) so both round alike. Clips are (N, C, T, H, W); inputs are not modified.
"""

from __future__ import annotations

import math

import torch


def gather_frames(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """out[n, :, t] = source[n, :, index[n, t]]: frame skipping and motion shuffling.

    source (N, C, Ts, H, W), index (N, T) int64 in [0, Ts) -> (N, C, T, H, W).
    """
    n, c, _, h, w = source.shape
    t = index.shape[1]
    return source.gather(2, index[:, None, :, None, None].expand(n, c, t, h, w))


def add_gaussian_noise(clips: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """clamp(clips + sigma[n] * noise, 0, 1); noise like clips, sigma (N,)."""
    return (clips + sigma[:, None, None, None, None] * noise).clamp(0.0, 1.0)


def _pixel_centres(size: int, like: torch.Tensor) -> torch.Tensor:
    # Normalised pixel centres (i + 0.5) / size, in the same float32 steps as the kernel.
    return (torch.arange(size, device=like.device, dtype=torch.float32) + 0.5) / float(size)  # (size,)


def box_mask(boxes: torch.Tensor, valid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """1 where the pixel centre lies in the frame's box [x1, x2) x [y1, y2) and the sample is valid.

    boxes (N, T, 4) normalised xyxy, valid (N,) bool -> (N, 1, T, H, W) float32.
    """
    u = _pixel_centres(width, boxes)[None, None, None, :]  # (1, 1, 1, W)
    v = _pixel_centres(height, boxes)[None, None, :, None]  # (1, 1, H, 1)
    x1, y1, x2, y2 = (boxes[..., k, None, None] for k in range(4))  # (N, T, 1, 1) each
    inside = (u >= x1) & (u < x2) & (v >= y1) & (v < y2) & valid[:, None, None, None]  # (N, T, H, W)
    return inside[:, None].to(torch.float32)


def _bilinear(patches: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Sample patches (N, C, ph, pw) at pixel coordinates px (N, T, 1, W), py (N, T, H, 1) -> (N, C, T, H, W)."""
    n, c, ph, pw = patches.shape
    px = px.clamp(0.0, float(pw - 1))
    py = py.clamp(0.0, float(ph - 1))
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=pw - 1), (y0 + 1).clamp(max=ph - 1)
    flat = patches.reshape(n, c, ph * pw)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = (yi * pw + xi)  # (N, T, H, W)
        shape = index.shape
        picked = flat.gather(2, index.reshape(n, 1, -1).expand(n, c, index[0].numel()))
        return picked.reshape(n, c, *shape[1:])  # (N, C, T, H, W)

    fx, fy = fx[:, None], fy[:, None]  # broadcast over C
    top = (1.0 - fx) * at(y0, x0) + fx * at(y0, x1)
    bottom = (1.0 - fx) * at(y1, x0) + fx * at(y1, x1)
    return (1.0 - fy) * top + fy * bottom


def paste_patches(
    clips: torch.Tensor,
    boxes: torch.Tensor,
    valid: torch.Tensor,
    patches: torch.Tensor,
    patch_index: torch.Tensor,
    subbox: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste patch `patch_index[n]` into a sub-box of every frame's object box with a radial blend.

    clips (N, C, T, H, W); boxes (N, T, 4); valid (N,) bool; patches (P, C, ph, pw); patch_index (N,) int64;
    subbox (N, 4) = (ox, oy, fw, fh) as fractions of the box. The weight is 0.5 * (1 + cos(pi * r)) with r the
    distance from the sub-box centre (1 on the mid-points of its edges): fully the patch at the centre, fully
    the frame on the border. Returns (clips, mask (N, 1, T, H, W): 1 where a pixel changed).
    """
    n, _, t, h, w = clips.shape
    x1, y1, x2, y2 = (boxes[..., k] for k in range(4))  # (N, T) each
    bw, bh = x2 - x1, y2 - y1
    sx1 = x1 + subbox[:, 0, None] * bw
    sy1 = y1 + subbox[:, 1, None] * bh
    sx2 = sx1 + subbox[:, 2, None] * bw
    sy2 = sy1 + subbox[:, 3, None] * bh
    sx1, sx2 = sx1[..., None, None], sx2[..., None, None]  # (N, T, 1, 1)
    sy1, sy2 = sy1[..., None, None], sy2[..., None, None]
    u = _pixel_centres(w, clips)  # (W,)
    v = _pixel_centres(h, clips)[:, None]  # (H, 1)
    in_x = (u >= sx1) & (u < sx2)  # (N, T, 1, W)
    in_y = (v >= sy1) & (v < sy2)  # (N, T, H, 1)
    inside = in_x & in_y & valid[:, None, None, None]  # (N, T, H, W)
    # Local coordinates in [0, 1) inside the sub-box; elsewhere (and for empty sub-boxes) a harmless 0.5.
    a = torch.where(in_x, (u - sx1) / (sx2 - sx1), 0.5)  # (N, T, 1, W)
    b = torch.where(in_y, (v - sy1) / (sy2 - sy1), 0.5)  # (N, T, H, 1)
    da, db = 2.0 * a - 1.0, 2.0 * b - 1.0
    r = torch.sqrt(da * da + db * db)  # (N, T, H, W)
    weight = torch.where(r < 1.0, 0.5 * (1.0 + torch.cos(math.pi * r)), 0.0)
    changed = inside & (weight > 0.0)  # (N, T, H, W)
    value = _bilinear(patches[patch_index], a * float(patches.shape[3]) - 0.5, b * float(patches.shape[2]) - 0.5)
    pasted = clips + weight[:, None] * (value - clips)
    return torch.where(changed[:, None], pasted, clips), changed[:, None].to(torch.float32)


def ddl_blend(
    clips: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, noise: torch.Tensor, logit: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """X_A = (1 - M) X + M ((1 - w) X + w A), computed as X + M (w (A - X)); w = sigmoid(logit).

    Differentiable in `logit` (and in clips). noise A like clips. Returns (x_a, mask M (N, 1, T, H, W)).
    """
    mask = box_mask(boxes, valid, clips.shape[3], clips.shape[4])  # (N, 1, T, H, W)
    weight = torch.sigmoid(logit)
    return clips + mask * (weight * (noise - clips)), mask
