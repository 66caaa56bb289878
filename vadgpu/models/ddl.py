"""DDL: the Conv3d-skip U-Net of Dynamic Distinction Learning (Lappas et al., arXiv 2404.04986).

The T frames of a clip go through a 2D encoder as one batch (4 MultiKernelBlocks, widths w-2w-4w-8w, each halving
H and W). On every level a Conv3d with kernel (T, 3, 3) fuses the T frames' features into the centre frame's skip;
the decoder (mirrored blocks with depth-to-space and skip concatenation) reconstructs the centre frame through a
sigmoid. The reference code pads the Conv3d to 'same' length and keeps the centre output; with no temporal padding
the convolution yields that one output directly (identical for odd T, T times cheaper).

The learned pseudo-anomaly weight is the scalar parameter `anomaly_logit` (sigmoid = 0.5 at start). The engine
hands it to `kernels.ddl_blend`, so `anomalies.clips` depends on it and the distinction loss trains it.
`blend_weight="fixed"` is the paper's ablation with a constant weight: the logit stays 0 (w = 0.5) because it is
created with requires_grad=False, so the optimiser (built from trainable parameters) and DDP skip it, while the
state_dict keeps the same keys as a learned-weight model.

`target="predict"`: the network sees only the T - 1 frames around the centre (its Conv3d skips then have kernel
(T - 1, 3, 3)) and must produce the centre frame, so the U-Net's finest skip can no longer copy the centre through.
The distinction loss keeps its meaning: f(X_A) is the centre predicted from the perturbed neighbours, P compares it
with the clean centre X_t (pulled down) and N with the perturbed centre X_A,t (pushed up): the network learns to
predict what a normal object would do next, not to carry the perturbation forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vadgpu.kernels.kinds import KIND_NONE
from vadgpu.models.base import (MAX_WIDTH, Anomalies, ModelConfig, VadModel, centre_frame,
                               channels_last_convolutions, without_centre)
from vadgpu.models.blocks import MultiKernelBlock
from vadgpu.models.ddl_loss import FORMS, distinction_loss, reconstruction_loss

LEVELS = 4  # encoder blocks; each halves H and W
BLEND_WEIGHTS = ("learned", "fixed")


@dataclass
class DDLConfig(ModelConfig):
    """DDL settings; defaults are the paper's: 256x256 RGB, T = 3, widths 64-128-256-512, lambda = 1e-2, and the
    paper's region-norm distinction loss."""

    architecture = "ddl"

    temporal: int = 3
    size: tuple[int, int] = (256, 256)
    channels: int = 3
    pseudo_p: float = 1.0  # the reference perturbs every clip that has an object
    pseudo_kinds: tuple[str, ...] = ("ddl",)
    width: int = 64  # first encoder width; level k has width * 2**k
    kernels: tuple[int, ...] = (3, 5, 7)
    dropout: float = 0.0
    distinction: str = "region"  # "region" (paper equation) or "pixel" (reference code); see ddl_loss
    lambda_dist: float = 1e-2
    eps: float = 1e-6
    blend_weight: str = "learned"  # "learned" (the paper's dynamic weight) or "fixed" (w = sigmoid(0) = 0.5)

    def validate(self) -> None:
        super().validate()
        step = 2**LEVELS
        if self.size[0] % step or self.size[1] % step:
            self._bad("size", f"H and W must be multiples of {step} (the encoder halves them {LEVELS} times)")
        widest = MAX_WIDTH // 2**(LEVELS - 1)  # the deepest level has 2**(LEVELS - 1) times as many channels
        if not 1 <= self.width <= widest:
            self._bad("width", f"must lie in [1, {widest}]")
        if not self.kernels or len(self.kernels) > 8 or any(k < 1 or k > 31 or k % 2 == 0 for k in self.kernels):
            self._bad("kernels", "must be up to 8 odd kernel sizes of at most 31 (padding keeps H and W)")
        if not 0 <= self.dropout < 1:
            self._bad("dropout", "is a probability in [0, 1)")
        if self.distinction not in FORMS:
            self._bad("distinction", f"choose from {list(FORMS)}")
        if self.blend_weight not in BLEND_WEIGHTS:
            self._bad("blend_weight", f"choose from {list(BLEND_WEIGHTS)}")
        if self.input_norm != "unit":
            self._bad("input_norm", "DDL blends noise into [0, 1] frames and ends in a sigmoid: only 'unit'")
        if self.lambda_dist < 0 or self.eps <= 0:
            self._bad("lambda_dist", "lambda_dist must be >= 0 and eps > 0")


class DDLModel(VadModel):
    """Conv3d-skip U-Net reconstructing the centre frame; see the module docstring."""

    def __init__(self, config: DDLConfig):
        super().__init__()
        self.config = config
        c, w, k = config.channels, config.width, config.kernels
        t = config.temporal - 1 if config.target == "predict" else config.temporal  # frames the network sees
        widths = [w * 2**i for i in range(LEVELS)]  # e.g. 64, 128, 256, 512
        self.encoder = nn.ModuleList(
            MultiKernelBlock(cin, cout, k, dropout=config.dropout) for cin, cout in zip([c, *widths[:-1]], widths)
        )
        self.skips = nn.ModuleList(nn.Conv3d(ch, ch, (t, 3, 3), padding=(0, 1, 1)) for ch in widths)
        # decoder from the deepest level up: input = previous output (+ the skip of the level below)
        dec_in = [widths[-1]] + [2 * ch for ch in reversed(widths[:-1])]
        dec_out = list(reversed(widths[:-1])) + [c]
        self.decoder = nn.ModuleList(
            MultiKernelBlock(cin, cout, k, decode=True, last=i == LEVELS - 1, dropout=config.dropout)
            for i, (cin, cout) in enumerate(zip(dec_in, dec_out))
        )
        self.anomaly_logit = nn.Parameter(torch.zeros(()), requires_grad=config.blend_weight == "learned")
        channels_last_convolutions(self)

    def reconstruct_centre(self, clips: torch.Tensor) -> torch.Tensor:
        """f(X): (N, C, T, H, W) -> reconstructed (or, with target="predict", predicted) centre frame
        (N, C, H, W) in [0, 1]. In predict mode the network sees only the T - 1 neighbours of the centre."""
        self.check_clips(clips)
        if self.config.target == "predict":
            clips = without_centre(clips)
        n, c, t, h, w = clips.shape
        x = clips.transpose(1, 2).reshape(n * t, c, h, w)  # (N*T, C, H, W): frames as a batch
        skips = []
        for block, fuse in zip(self.encoder, self.skips):
            x = block(x)  # (N*T, C_l, H_l, W_l)
            per_clip = x.view(n, t, *x.shape[1:]).transpose(1, 2)  # (N, C_l, T, H_l, W_l)
            skips.append(fuse(per_clip).squeeze(2))  # (N, C_l, H_l, W_l): centre-frame features
        y = skips.pop()
        for i, block in enumerate(self.decoder):
            if i > 0:
                y = torch.cat([y, skips.pop()], dim=1)
            y = block(y)
        return torch.sigmoid(y)  # (N, C, H, W)

    def reconstruct(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return centre_frame(clips), self.reconstruct_centre(clips)

    def training_losses(self, clips: torch.Tensor, anomalies: Anomalies) -> dict[str, torch.Tensor]:
        cfg = self.config
        n = clips.shape[0]
        # One pass over clean and perturbed clips together (2N) instead of the reference's two passes: same
        # FLOPs, better batched, one DDP forward. BatchNorm then normalises with the joint batch's statistics.
        recon = self.reconstruct_centre(torch.cat([clips, anomalies.clips]))  # (2N, C, H, W)
        recon_clean, recon_pseudo = recon[:n], recon[n:]
        is_pseudo = (anomalies.kind != KIND_NONE).to(clips.dtype).view(n, 1, 1, 1)
        mask = centre_frame(anomalies.mask) * is_pseudo  # (N, 1, H, W)
        l_recon = reconstruction_loss(centre_frame(clips), recon_clean)
        l_dist = distinction_loss(
            centre_frame(clips), centre_frame(anomalies.clips), recon_pseudo, mask, cfg.distinction, cfg.eps
        )
        # `0 * anomaly_logit` keeps the logit in the graph when this batch's perturbation did not use it (no DDL
        # blend drawn): DDP then still sees a gradient for every parameter and needs no find_unused_parameters.
        total = l_recon + cfg.lambda_dist * l_dist + 0.0 * self.anomaly_logit
        return {
            "loss": total,
            "recon": l_recon.detach(),
            "distinction": l_dist.detach(),
            "anomaly_weight": torch.sigmoid(self.anomaly_logit).detach(),
        }
