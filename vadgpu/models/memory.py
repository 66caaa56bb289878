"""MemoryBank: a bank of prototype feature vectors that every query is rebuilt from.

Two addressing modes, one module:

- "memae" (Gong et al., MemAE): items are a learned Parameter (M, D). A query z (one feature vector per position of
  the feature map) addresses the bank with w = softmax(z M^T); hard shrinkage w' = relu(w - lambda) * w /
  (|w - lambda| + eps) zeroes the small weights so an anomaly cannot be rebuilt from a dense mix of items; w' is
  L1-renormalised and the read is w' M.
- "mnad" (Park et al., MNAD): items are unit vectors in a buffer, updated without gradients from the queries that
  pick them as nearest item (weighted by the query-side softmax), and the module reports the compactness and
  separateness losses. Queries are L2-normalised. MNAD concatenates query and read; here the read replaces the
  query as in MemAE, so both modes feed the same decoder.

State is registered on the module (Parameter or buffer), so `state_dict` and DDP carry it. Under DDP the MNAD
update is all-reduced (summed over ranks) before it is applied, so every rank's bank stays identical.
All per-sample quantities are returned per sample so the caller can weight them (the dual-path model routes
normal and pseudo-anomalous samples with 0/1 weights instead of indexing, which would need a host sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vadgpu.errors import VadgpuError

MODES = ("memae", "mnad")


@dataclass
class MemoryRead:
    read: torch.Tensor  # same shape as the query: (N, D, *spatial)
    attention: torch.Tensor  # (N, L, M): addressing weights of the L positions of each sample (rows sum to 1)
    entropy: torch.Tensor  # (N,) mean addressing entropy per sample
    compactness: torch.Tensor  # (N,) MNAD: mean squared distance to the nearest item (zeros in memae mode)
    separateness: torch.Tensor  # (N,) MNAD: triplet margin nearest vs second nearest (zeros in memae mode)


def hard_shrink(weights: torch.Tensor, threshold: float, eps: float = 1e-12) -> torch.Tensor:
    """MemAE's ReLU form of hard shrinkage: keeps w where w > threshold (almost unchanged), else 0; differentiable."""
    shifted = weights - threshold
    return F.relu(shifted) * weights / (shifted.abs() + eps)


def address(query: torch.Tensor, items: torch.Tensor, shrink: float) -> torch.Tensor:
    """Addressing weights (Q, M) of queries (Q, D) over items (M, D): softmax, hard shrinkage, L1 renormalisation."""
    weights = torch.softmax(query @ items.t(), dim=1)  # (Q, M)
    if shrink > 0:
        weights = F.normalize(hard_shrink(weights, shrink), p=1, dim=1)
    return weights


def _positions_last(x: torch.Tensor) -> torch.Tensor:
    """(N, D, *spatial) -> (N, *spatial, D), with explicit non-negative axes (ONNX exporters need them)."""
    return x.permute(0, *range(2, x.dim()), 1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """(N, *spatial, D) -> (N, D, *spatial), the inverse of `_positions_last`."""
    return x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))


class MemoryBank(nn.Module):
    """A memory of `items` prototypes of dimension `dim` (see module docstring for the two modes)."""

    def __init__(
        self,
        items: int,
        dim: int,
        shrink: float = 0.0025,
        mode: str = "memae",
        update: bool = True,
        margin: float = 1.0,
    ):
        super().__init__()
        if mode not in MODES:
            raise VadgpuError(f"model option memory_mode={mode!r}: choose from {list(MODES)}")
        if items < 2 or dim < 1:
            raise VadgpuError(f"model option memory_items={items}: a memory needs at least 2 items of dim >= 1")
        self.mode, self.shrink, self.update, self.margin = mode, float(shrink), update, margin
        if mode == "memae":
            bound = 1.0 / math.sqrt(dim)
            self.items = nn.Parameter(torch.empty(items, dim).uniform_(-bound, bound))
        else:
            self.register_buffer("items", F.normalize(torch.randn(items, dim), dim=1))

    def extra_repr(self) -> str:
        return f"items={self.items.shape[0]}, dim={self.items.shape[1]}, mode={self.mode}, shrink={self.shrink}"

    def forward(self, query: torch.Tensor, weight: torch.Tensor | None = None) -> MemoryRead:
        """Read the memory at every position of `query` (N, D, *spatial).

        `weight` (N,), 0/1 or soft, says which samples may update an MNAD bank (default: all); it does not change
        the read, so inference and training read the same way.
        """
        n, d = query.shape[:2]
        flat = _positions_last(query).reshape(n, -1, d)  # (N, L, D)
        if self.mode == "mnad":
            flat = F.normalize(flat, dim=-1)
            # a copy, so the in-place update below does not touch the tensor autograd saved for the read
            items = self.items.clone()
        else:
            items = self.items
        weights = address(flat.reshape(-1, d), items, self.shrink).view(n, -1, items.shape[0])  # (N, L, M)
        read = weights @ items  # (N, L, D)
        entropy = -(weights * torch.log(weights + 1e-12)).sum(-1).mean(-1)  # (N,)
        zeros = entropy.new_zeros(n)
        compactness, separateness = zeros, zeros
        if self.mode == "mnad":
            compactness, separateness = self._mnad_losses(flat, items)
            if self.training and self.update:
                self._mnad_update(flat.detach(), weight)
        read = _channels_first(read.view(n, *query.shape[2:], d))  # (N, D, *spatial)
        return MemoryRead(read, weights, entropy, compactness, separateness)

    def read(self, query: torch.Tensor) -> torch.Tensor:
        """Only the read of `forward` (N, D, *spatial), without the entropy and MNAD terms: the inference path,
        in operations every ONNX runtime has (no topk, no negative permutation axes)."""
        n, d = query.shape[:2]
        flat = _positions_last(query).reshape(-1, d)  # (N * L, D)
        items = self.items
        if self.mode == "mnad":
            flat = F.normalize(flat, dim=-1)
        read = address(flat, items, self.shrink) @ items  # (N * L, D)
        return _channels_first(read.view(n, *query.shape[2:], d))


    def _mnad_losses(self, flat: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = flat @ items.t()  # (N, L, M)
        top2 = scores.topk(2, dim=-1).indices  # (N, L, 2)
        nearest, second = items[top2[..., 0]], items[top2[..., 1]]  # (N, L, D)
        compactness = (flat - nearest).pow(2).sum(-1).mean(-1)  # (N,)
        d_pos = (flat - nearest).norm(dim=-1)
        d_neg = (flat - second).norm(dim=-1)
        separateness = F.relu(d_pos - d_neg + self.margin).mean(-1)  # (N,)
        return compactness, separateness

    @torch.no_grad()
    def _mnad_update(self, flat: torch.Tensor, weight: torch.Tensor | None) -> None:
        """MNAD's item update, gathered with one-hot matrices instead of per-item loops (no host sync)."""
        n, per_sample, d = flat.shape  # per_sample: the queries of one sample
        q = flat.reshape(-1, d)  # (Q, D)
        scores = q @ self.items.t()  # (Q, M)
        # scatter, not F.one_hot: one_hot range-checks its input with .item() on some devices
        nearest = torch.zeros_like(scores).scatter_(1, scores.argmax(1, keepdim=True), 1.0)  # (Q, M) one-hot
        if weight is not None:
            nearest = nearest * weight.to(q.dtype).repeat_interleave(per_sample)[:, None]
        # query-side softmax: how strongly each query belongs to an item among all queries of the batch
        coef = torch.softmax(scores, dim=0) * nearest
        coef = coef / coef.amax(0, keepdim=True).clamp_min(1e-12)
        delta = coef.t() @ q  # (M, D)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(delta)
        self.items.copy_(F.normalize(self.items + delta, dim=1))
