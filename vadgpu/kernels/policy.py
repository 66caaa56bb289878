"""The mixing policy: which samples of a batch become pseudo-anomalies, and of which kind.

Each sample is pseudo-anomalous with probability p; its kind is drawn from `kinds` (uniformly or by
`weights`). On CUDA, to stay free of host synchronisation (no data-dependent indexing), every enabled kind is
computed on the whole batch and each sample takes its own with `torch.where`; the extra work is small next to a
model step on a GPU. On the CPU there is no host to synchronise with, so each kind is computed only for the samples
that drew it (with p = 0.25 and three kinds that is about a twelfth of the work; on a 2-core CPU the whole-batch
form cost 10.7 % of a dual-path T = 16 training step). The two forms pick the same kinds from the same draws.

Three options follow the dual-path authors' code where it differs (defaults: vadgpu's): `kind_draw="batch"` gives
every pseudo sample of a batch the same source (their one `random.choice` per batch), `shuffle_draw="batch"` one
frame permutation for all shuffled samples of a batch (their one `shuffle_index` call), `skip_source="other"` takes
each skip clip from the window of another clip of the batch (sample i from sample i - 1; theirs come from a second,
shuffled loader, i.e. from another random clip; with a shuffled loader the neighbour in the batch is one too).
`value_range` is the range noise is clamped to: [0, 1] for the loader's pixels, [-1, 1] for z-scored frames (their
`gaussian` clamps the noisy clip to [-1, 1], which, z-scored frames reaching beyond it, it practically always does).

Samples that drew "patch" or "ddl" but have no object (valid=False) fall back to normal: kind 0, clip and mask
unchanged. Losses route samples by `kind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from vadgpu.errors import VadgpuError
from vadgpu.kernels import ops, params
from vadgpu.kernels.kinds import (DRAWS, KIND_BY_NAME, KIND_DDL, KIND_NAMES, KIND_NOISE, KIND_NONE, KIND_PATCH,
                                  KIND_SHUFFLE, KIND_SKIP, OBJECT_KINDS, SKIP_SOURCES)

DEFAULT_SKIPS = (2, 3, 4, 5)


@dataclass
class PseudoAnomalies:
    clips: torch.Tensor  # (N, C, T, H, W): perturbed where kind != KIND_NONE, the input clip elsewhere
    kind: torch.Tensor  # (N,) int64: KIND_NONE (0) for normal samples
    mask: torch.Tensor  # (N, 1, T, H, W) float: 1 where perturbed (whole clip for skip/shuffle/noise, box region
    #                     for patch/ddl), 0 for normal samples


def _kind_id(kind: int | str) -> int:
    if isinstance(kind, str) and kind in KIND_BY_NAME:
        return KIND_BY_NAME[kind]
    if isinstance(kind, int) and kind in KIND_NAMES and kind != KIND_NONE:
        return kind
    raise VadgpuError(f"unknown pseudo-anomaly kind {kind!r}; use one of {', '.join(KIND_BY_NAME)}")


class PseudoAnomalyPolicy:
    """Turn a fraction p of a batch into pseudo-anomalies of the given kinds.

    p: probability that a sample is perturbed. kinds: names ("skip", "shuffle", "noise", "patch", "ddl") or
    KIND_* ids; none means every sample stays normal. weights: relative frequency of each kind (default uniform).
    sigma: Gaussian noise std. skips: the skip set for frame skipping (each >= 2; the batch window must reach the
    largest).
    """

    def __init__(
        self,
        p: float,
        kinds: Sequence[int | str],
        weights: Sequence[float] | None = None,
        sigma: float = 0.1,
        skips: Sequence[int] = DEFAULT_SKIPS,
        backend: str = "auto",
        *,
        kind_draw: str = "sample",
        shuffle_draw: str = "sample",
        skip_source: str = "same",
        value_range: tuple[float, float] = (0.0, 1.0),
    ):
        if not 0.0 <= p <= 1.0:
            raise VadgpuError(f"pseudo-anomaly probability p must be in [0, 1], got {p}")
        self.kinds = tuple(_kind_id(k) for k in kinds)
        if len(set(self.kinds)) != len(self.kinds):
            raise VadgpuError(f"pseudo-anomaly kinds must not repeat, got {list(kinds)}")
        weights = [1.0] * len(self.kinds) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.kinds) or (self.kinds and (min(weights) < 0 or sum(weights) <= 0)):
            raise VadgpuError(
                f"pseudo-anomaly weights {weights} must be one non-negative number per kind "
                f"({len(self.kinds)}) with a positive sum"
            )
        total = sum(weights)
        # Upper edges of each kind's share of [0, 1); the last is open so rounding never leaves a gap.
        self._edges = [sum(weights[: i + 1]) / total for i in range(len(weights) - 1)]
        if not sigma >= 0:
            raise VadgpuError(f"noise sigma must be >= 0, got {sigma}")
        self.skips = tuple(int(s) for s in skips)
        if KIND_SKIP in self.kinds and (not self.skips or min(self.skips) < 2):
            raise VadgpuError(f"skips must be a non-empty set of integers >= 2 (1 is the normal clip), got {skips}")
        ops.resolve_backend(backend, torch.empty(0))  # reject unknown names now
        self.p, self.weights, self.sigma, self.backend = float(p), tuple(weights), float(sigma), backend
        for name, value, choices in (("kind_draw", kind_draw, DRAWS), ("shuffle_draw", shuffle_draw, DRAWS),
                                     ("skip_source", skip_source, SKIP_SOURCES)):
            if value not in choices:
                raise VadgpuError(f"pseudo-anomaly {name}={value!r}: choose from {list(choices)}")
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise VadgpuError(f"pseudo-anomaly value_range {tuple(value_range)}: needs low < high")
        self.kind_draw, self.shuffle_draw, self.skip_source = kind_draw, shuffle_draw, skip_source
        self.value_range = (low, high)

    def __repr__(self) -> str:
        names = [KIND_NAMES[k] for k in self.kinds]
        return f"PseudoAnomalyPolicy(p={self.p}, kinds={names}, weights={list(self.weights)}, sigma={self.sigma})"

    def _draw_kind(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        perturbed = torch.rand(n, generator=generator, device=device) < self.p  # (N,)
        u = torch.rand(n, generator=generator, device=device)  # (N,)
        if self.kind_draw == "batch":
            u = u[:1].expand(n)  # one source for the whole batch
        if not self.kinds:  # no kinds: every sample stays normal
            return torch.zeros(n, dtype=torch.int64, device=device)
        kind = torch.full((n,), self.kinds[0], dtype=torch.int64, device=device)
        for edge, k in zip(self._edges, self.kinds[1:]):
            kind = torch.where(u >= edge, k, kind)
        return torch.where(perturbed, kind, KIND_NONE)

    def __call__(
        self,
        batch,
        boxes: torch.Tensor | None,
        valid: torch.Tensor | None,
        patches: torch.Tensor | None,
        generator: torch.Generator,
        logit: torch.Tensor | None = None,
    ) -> PseudoAnomalies:
        """Perturb a ClipBatch (anything with `.clips` and, for skips, `.window`; or a bare clips tensor)."""
        clips = batch.clips if hasattr(batch, "clips") else batch
        window = getattr(batch, "window", None)
        ops.check_clips("batch.clips", clips)
        ops.check_generator(generator, clips.device)
        n, _, t, h, w = clips.shape
        kind = self._draw_kind(n, generator, clips.device)  # (N,)
        self._check_inputs(t, window, boxes, valid, patches, logit)
        if OBJECT_KINDS & set(self.kinds):
            # No object -> no patch/ddl: such samples stay normal.
            kind = torch.where((kind == KIND_PATCH) | (kind == KIND_DDL), torch.where(valid, kind, KIND_NONE), kind)

        if self.skip_source == "other" and window is not None:
            window = window.roll(1, dims=0)  # sample i's skip clip from sample i - 1's frames
        out, mask = clips, torch.zeros((n, 1, t, h, w), device=clips.device, dtype=clips.dtype)
        for k in self.kinds:  # fixed order: the same generator stream for the same policy
            rows = _rows_of_kind(kind, k)
            if rows is not None and rows.numel() == 0:
                continue
            pick = (lambda x: x) if rows is None else (lambda x: None if x is None else x.index_select(0, rows))
            candidate, region = self._perturb(k, pick(clips), pick(window), pick(boxes), pick(valid), patches,
                                              generator, logit)
            if rows is None:
                chosen = (kind == k)[:, None, None, None, None]  # (N, 1, 1, 1, 1)
                out = torch.where(chosen, candidate.to(clips.dtype), out)
                mask = torch.where(chosen, region.to(mask.dtype), mask)
            else:
                out = out.index_copy(0, rows, candidate.to(clips.dtype))
                mask = mask.index_copy(0, rows, region.to(mask.dtype))
        return PseudoAnomalies(out, kind, mask)

    def _check_inputs(self, t: int, window, boxes, valid, patches, logit) -> None:
        """Every input an enabled kind needs is there (checked on every call, whichever kinds the batch drew)."""
        if KIND_SKIP in self.kinds:
            if window is None:
                raise VadgpuError(
                    f"pseudo-anomaly kind 'skip' needs batch.window: build the loader with "
                    f"ClipSpec(max_skip={max(self.skips)}) or more"
                )
            max_skip = ops.skip_window_max(window, t)
            if max(self.skips) > max_skip:
                raise VadgpuError(f"skips {self.skips} exceed the batch window's max_skip={max_skip}")
        if KIND_SHUFFLE in self.kinds and t < params.MIN_SHUFFLE_T:
            raise VadgpuError(f"pseudo-anomaly kind 'shuffle' needs clips of at least {params.MIN_SHUFFLE_T} frames "
                              f"(T = {t} has no order without neighbouring consecutive frames)")
        if OBJECT_KINDS & set(self.kinds) and (boxes is None or valid is None):
            raise VadgpuError("pseudo-anomaly kinds 'patch'/'ddl' need object boxes and valid (vadgpu data boxes)")
        if KIND_PATCH in self.kinds and patches is None:
            raise VadgpuError("pseudo-anomaly kind 'patch' needs a patch bank (objects.patches)")
        if KIND_DDL in self.kinds and logit is None:
            raise VadgpuError("pseudo-anomaly kind 'ddl' needs the model's learnable logit (anomaly_logit)")

    def _perturb(self, k: int, clips, window, boxes, valid, patches, generator, logit):
        """Kind k applied to every sample of `clips` (N', C, T, H, W) -> (perturbed clips, mask of the change)."""
        n, _, t, h, w = clips.shape
        whole = torch.ones((n, 1, t, h, w), device=clips.device, dtype=clips.dtype)
        if k == KIND_SKIP:
            skips = params.draw_skips(n, self.skips, generator, clips.device)
            return ops.skip_frames(window, skips, t, backend=self.backend), whole
        if k == KIND_SHUFFLE:
            return ops.shuffle_motion(clips, generator, backend=self.backend,
                                      one_permutation=self.shuffle_draw == "batch"), whole
        if k == KIND_NOISE:
            return self._noise(clips, generator), whole
        if k == KIND_PATCH:
            return ops.paste_patches(clips, boxes, valid, patches, generator, backend=self.backend)
        return ops.ddl_blend(clips, boxes, valid, logit, generator, backend=self.backend)

    def _noise(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """clamp(x + sigma z, low, high): the [0, 1] kernel on the clips mapped to [0, 1] and back (the same z)."""
        low, high = self.value_range
        if (low, high) == (0.0, 1.0):
            return ops.gaussian_noise(clips, self.sigma, generator, backend=self.backend)
        span = high - low
        unit = ops.gaussian_noise((clips - low) / span, self.sigma / span, generator, backend=self.backend)
        return unit * span + low


def _rows_of_kind(kind: torch.Tensor, k: int) -> torch.Tensor | None:
    """The samples that drew kind k where finding them is free (CPU tensors); None on CUDA, where it would make
    the host wait for the device, so the kind is computed for the whole batch there."""
    if kind.device.type != "cpu":
        return None
    return (kind == k).nonzero().squeeze(1)
