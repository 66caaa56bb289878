"""Per-sample random parameters of the perturbations, drawn in torch on the clips' device.

Both backends receive the same parameter tensors, so the CuPy kernels reproduce the torch reference, and
nothing here reads a value back to the host (no `.item()`, no data-dependent shapes): a training step stays
free of host synchronisation. Small constant tables are built once per device and cached.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch

from vadgpu.errors import VadgpuError

# Patch sub-box: width and height are this fraction (or more) of the object's box, placed uniformly inside it.
SUBBOX_MIN_FRACTION = 0.5
# Above this length the table of valid permutations gets too big (T=9: 47622 rows); we sample candidates.
PERMUTATION_TABLE_MAX_T = 8
# Candidates per sample for long clips: a uniform permutation is valid with probability ~0.13 (-> e^-2), so 64
# candidates all fail with probability ~1e-4; those samples use a valid-by-design permutation.
PERMUTATION_CANDIDATES = 64
MIN_SHUFFLE_T = 4


def _uniform_index(n: int, size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    # floor(U * size), clamped because U * size can round up to `size` in float32.
    u = torch.rand(n, generator=generator, device=device)
    return (u * size).long().clamp_(max=size - 1)  # (N,)


def draw_skips(n: int, skips: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """One skip per sample, uniform over `skips`: (N,) int64."""
    pick = _uniform_index(n, len(skips), generator, device)
    out = torch.full((n,), skips[0], dtype=torch.int64, device=device)
    for k, s in enumerate(skips[1:], start=1):
        out = torch.where(pick == k, s, out)  # Python scalars: no host-to-device copy
    return out


def skip_index(skips: torch.Tensor, temporal: int, window_frames: int) -> torch.Tensor:
    """Window frame of every output frame: centre + (t - T//2) * s, (N, T) int64.

    The window holds `max_skip * (T - 1) + 1` frames with the clip's centre at `max_skip * (T // 2)`; a skip
    above max_skip would leave it, so indices are clamped to the window (callers validate skips where they can).
    """
    max_skip = (window_frames - 1) // (temporal - 1) if temporal > 1 else 0
    centre = max_skip * (temporal // 2)
    offsets = torch.arange(temporal, device=skips.device) - temporal // 2  # (T,)
    return (centre + offsets[None, :] * skips[:, None]).clamp_(0, window_frames - 1)  # (N, T)


@functools.lru_cache(maxsize=None)
def _valid_permutations_np(temporal: int) -> np.ndarray:
    perms = np.array(list(itertools.permutations(range(temporal))), dtype=np.int64)  # (T!, T)
    ok = (np.abs(np.diff(perms, axis=1)) != 1).all(axis=1)
    return perms[ok]


@functools.lru_cache(maxsize=None)
def valid_permutation_table(temporal: int, device: torch.device) -> torch.Tensor:
    """All permutations of range(T) with no two consecutive frames side by side (either order): (K, T)."""
    return torch.from_numpy(_valid_permutations_np(temporal)).to(device)


def _designed_permutation(n: int, temporal: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    # Odd frames ascending, then even frames ascending (1 3 5 .. 0 2 4 ..): steps of 2, and the jump from the
    # last odd frame (>= 3) to 0 is >= 3. Reversal and v -> T-1-v keep every |step|, so both are applied at random.
    base = torch.cat([torch.arange(1, temporal, 2, device=device), torch.arange(0, temporal, 2, device=device)])
    flips = torch.rand(n, 2, generator=generator, device=device) < 0.5  # (N, 2)
    perms = base.expand(n, temporal)
    perms = torch.where(flips[:, :1], perms.flip(1), perms)
    return torch.where(flips[:, 1:], temporal - 1 - perms, perms)  # (N, T)


def draw_permutations(n: int, temporal: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A permutation of range(T) per sample with |p[i+1] - p[i]| != 1 everywhere: (N, T) int64.

    T <= 8: uniform over the precomputed table. Longer clips: the first valid one of several uniform random
    permutations (uniform over valid permutations), else a valid-by-design one; fixed shapes, no host sync.
    """
    if temporal < MIN_SHUFFLE_T:
        raise VadgpuError(
            f"motion shuffling needs clips of at least {MIN_SHUFFLE_T} frames (T={temporal}): with fewer, every "
            f"order puts two consecutive frames side by side; drop 'shuffle' from the pseudo-anomaly kinds"
        )
    if temporal <= PERMUTATION_TABLE_MAX_T:
        table = valid_permutation_table(temporal, device)  # (K, T)
        return table[_uniform_index(n, table.shape[0], generator, device)]
    keys = torch.rand(n, PERMUTATION_CANDIDATES, temporal, generator=generator, device=device)
    candidates = keys.argsort(dim=-1)  # (N, K, T)
    ok = (candidates.diff(dim=-1).abs() != 1).all(dim=-1)  # (N, K)
    first = ok.int().argmax(dim=1)  # (N,) the first valid candidate (0 when none is)
    chosen = candidates[torch.arange(n, device=device), first]  # (N, T)
    fallback = _designed_permutation(n, temporal, generator, device)
    return torch.where(ok.any(dim=1, keepdim=True), chosen, fallback)


def draw_gaussian(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like `like`."""
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def draw_uniform(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U(0, 1) noise shaped like `like` (the DDL blend's A)."""
    return torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def draw_patch_params(
    n: int, bank_size: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch index (N,) int64 and sub-box (N, 4) = (ox, oy, fw, fh), fractions of the object's box."""
    index = _uniform_index(n, bank_size, generator, device)
    u = torch.rand(n, 4, generator=generator, device=device)  # (N, 4)
    size = SUBBOX_MIN_FRACTION + (1.0 - SUBBOX_MIN_FRACTION) * u[:, 2:]  # (N, 2): fw, fh
    offset = u[:, :2] * (1.0 - size)  # (N, 2): ox, oy, so the sub-box stays inside the box
    return index, torch.cat([offset, size], dim=1).contiguous()
