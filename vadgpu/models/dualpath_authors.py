"""The dual-path authors' loss form (`loss_terms="authors"`), as their later code (SVIL2024/DualPath-PseudoAnomaly-VAD,
main_ped2.py / main_avenue.py / main_shanghai.py, `efficient_train_step`) computes it, written anew here:

    signed_mse  the MSE of every sample's output on its own path against its own input (for a pseudo sample the
                perturbed clip), negated for pseudo samples, averaged over the whole batch: each pseudo sample
                weighs 1/N, so at their rate of 0.02 the push is small next to vadgpu's push averaged over the
                pseudo samples alone (`pseudo_recon="push"`).
    feas        -mean |pool(read_n) - pool(read_p)|, pool = the mean of a path's memory read over its samples and
                all positions: one 8F vector per path (their `loss_feas`, weight `w_feas`).
    kl_fea      -KL(softmax(pool(read_p)) || softmax(pool(read_n))), softmax over the channels (their `kl_fea`:
                `-F.kl_div(log_softmax(normal), softmax(pseudo), reduction="sum")`, weight `w_kl_fea`).
    kl_out3     the same on the first decoder stage (the 4F output of each decoder's first upsampling block,
                their `recon1`, unpacked as `out_n3`; weight `w_kl_out3`).
    entropy     the memory addressing entropy of each sample on its own memory, averaged over the batch (their
                sparsity loss, weight `w_entropy`; the same as vadgpu's `entropy` term).

feas, kl_fea and kl_out3 count only in batches that hold both normal and pseudo samples (their code leaves them at
0 otherwise); `both` carries that as a 0/1 factor, so masked routing needs no host sync to apply it. All three are
negative and unbounded below in principle (they reward the two paths for differing); their weights are 2e-4 in all
three scripts. Their scripts also give the terms ablation flags and extra internal factors (all 1 by default) that
vadgpu does not copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AuthorsLossWeights:
    feas: float = 2e-4
    kl_fea: float = 2e-4
    kl_out3: float = 2e-4
    entropy: float = 2e-4


def pooled_channels(features: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over samples and positions of (N, D, *positions) features -> (D,); `weight` (N,) 0/1 keeps only the
    samples routed to a path (0 when it keeps none)."""
    per_sample = features.flatten(2).mean(2)  # (N, D)
    if weight is None:
        return per_sample.mean(0)
    weight = weight.to(per_sample.dtype)
    return (weight[:, None] * per_sample).sum(0) / weight.sum().clamp_min(1.0)


def negative_kl(normal: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
    """-KL(softmax(pseudo) || softmax(normal)) of two (D,) vectors."""
    log_p, log_n = F.log_softmax(pseudo, dim=0), F.log_softmax(normal, dim=0)
    return -(log_p.exp() * (log_p - log_n)).sum()


def signed_mse(own_mse: torch.Tensor, is_pseudo: torch.Tensor) -> torch.Tensor:
    """Per-sample MSEs (N,) on each sample's own path, negated where is_pseudo (N,) is set, mean over all N."""
    return torch.where(is_pseudo.bool(), -own_mse, own_mse).mean()


def authors_losses(own_mse: torch.Tensor, is_pseudo: torch.Tensor, own_entropy: torch.Tensor,
                   reads: tuple[torch.Tensor, torch.Tensor], stages: tuple[torch.Tensor, torch.Tensor],
                   both: torch.Tensor | float, weights: AuthorsLossWeights) -> dict[str, torch.Tensor]:
    """The terms above and their total. own_mse / own_entropy / is_pseudo (N,); reads = pooled (normal, pseudo)
    memory reads (8F,) x 2, stages = pooled first decoder stages (4F,) x 2; both: 1 when the batch holds both
    groups, else 0."""
    l_signed = signed_mse(own_mse, is_pseudo)
    l_feas = both * -(reads[0] - reads[1]).abs().mean()
    l_kl_fea = both * negative_kl(*reads)
    l_kl_out3 = both * negative_kl(*stages)
    l_ent = own_entropy.mean()
    total = (l_signed + weights.feas * l_feas + weights.kl_fea * l_kl_fea + weights.kl_out3 * l_kl_out3
             + weights.entropy * l_ent)
    normal = 1.0 - is_pseudo.to(own_mse.dtype)
    recon_normal = (normal * own_mse).sum() / normal.sum().clamp_min(1.0)  # for the logs: comparable across forms
    terms = {"signed_mse": l_signed, "feas": l_feas, "kl_fea": l_kl_fea, "kl_out3": l_kl_out3, "entropy": l_ent,
             "recon_normal": recon_normal}
    return {"loss": total, **{k: torch.as_tensor(v).detach() for k, v in terms.items()}}
