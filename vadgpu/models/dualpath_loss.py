"""Losses of the dual-path model, every term routed per sample with 0/1 weights (no host synchronisation).

    recon_normal  mean squared error of D_n(M_n(E(x))) vs x over normal samples (minimised)
    recon_pseudo  over pseudo-anomalous samples, D_p(M_p(E(x_a))):
                    "push"  -MSE vs the perturbed input x_a (the path learns not to rebuild anomalies; bounded
                            because outputs pass a sigmoid),
                    "clean" MSE vs the clean clip (the path learns to undo the perturbation)
    separation    mean cosine similarity of the two memories' reads for the same query (minimised: the memories
                  hold different prototypes). The authors' code pushes the raw item matrices apart with
                  -|M_n - M_p|, which is unbounded; the cosine of the reads is bounded and measures the outputs.
    kl            KL(usage || uniform) of each memory, usage = its routed samples' mean addressing weights: keeps
                  all items in use while the entropy term makes each query's addressing sparse.
    entropy       MemAE's addressing entropy, each sample on its own memory (minimised)
    compactness, separateness   MNAD's feature losses, each sample on its own memory (memory_mode "mnad" only)
The default weights of the memory terms are the authors' code's 2e-4; MNAD's are its paper's 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vadgpu.models.memory import MemoryRead

PSEUDO_RECON_MODES = ("push", "clean")


@dataclass(frozen=True)
class DualPathLossWeights:
    pseudo: float = 1.0
    separation: float = 2e-4
    kl: float = 2e-4
    entropy: float = 2e-4
    compactness: float = 0.1
    separateness: float = 0.1


def routed_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of per-sample values (N,); 0 when no sample has weight (count clamped, no `if`)."""
    return (weight * values).sum() / weight.sum().clamp_min(1.0)


def per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, ...) x 2 -> (N,)."""
    return (a - b).pow(2).flatten(1).mean(1)


def usage_kl(attention: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """KL(usage || uniform) of one memory; attention (N, L, M), weight (N,) selects the samples routed to it."""
    per_sample = attention.mean(1)  # (N, M)
    usage = (weight[:, None] * per_sample).sum(0) / weight.sum().clamp_min(1.0)  # (M,); all zeros if none routed
    items = attention.shape[-1]
    return (usage * (torch.log(usage + 1e-12) + math.log(items))).sum()


def dualpath_losses(
    clean: torch.Tensor,
    inputs: torch.Tensor,
    is_pseudo: torch.Tensor,
    recon_normal: torch.Tensor,
    recon_pseudo: torch.Tensor,
    read_normal: MemoryRead,
    read_pseudo: MemoryRead,
    pseudo_recon: str,
    weights: DualPathLossWeights,
) -> dict[str, torch.Tensor]:
    """All terms and the total; clean / inputs / recon_* (N, C, T, H, W), is_pseudo (N,) 0/1."""
    is_normal = 1.0 - is_pseudo
    l_normal = routed_mean(per_sample_mse(recon_normal, inputs), is_normal)
    if pseudo_recon == "push":
        l_pseudo = -routed_mean(per_sample_mse(recon_pseudo, inputs), is_pseudo)
    else:
        l_pseudo = routed_mean(per_sample_mse(recon_pseudo, clean), is_pseudo)
    l_sep = F.cosine_similarity(read_normal.read, read_pseudo.read, dim=1).mean()
    l_kl = usage_kl(read_normal.attention, is_normal) + usage_kl(read_pseudo.attention, is_pseudo)
    n = is_pseudo.shape[0]
    l_ent = (is_normal * read_normal.entropy + is_pseudo * read_pseudo.entropy).sum() / n
    l_compact = (is_normal * read_normal.compactness + is_pseudo * read_pseudo.compactness).sum() / n
    l_separate = (is_normal * read_normal.separateness + is_pseudo * read_pseudo.separateness).sum() / n
    total = (
        l_normal
        + weights.pseudo * l_pseudo
        + weights.separation * l_sep
        + weights.kl * l_kl
        + weights.entropy * l_ent
        + weights.compactness * l_compact
        + weights.separateness * l_separate
    )
    terms = {
        "recon_normal": l_normal,
        "recon_pseudo": l_pseudo,
        "separation": l_sep,
        "kl": l_kl,
        "entropy": l_ent,
        "compactness": l_compact,
        "separateness": l_separate,
    }
    return {"loss": total, **{k: v.detach() for k, v in terms.items()}}
