"""The dual-path memory autoencoder with multi-source pseudo-anomalies.

One 3D-conv encoder (C -> F -> 2F -> 4F -> 8F, three stride-2 downsamplings, BN3d + ReLU), two memories of
`memory_items` x 8F (M_n for normal clips, M_p for pseudo-anomalous ones) and two identical decoders (D_n, D_p;
D_p starts as a copy of D_n) made of transposed 3D convolutions, with the skips chosen by `skip_concat`
(default: only the deepest, so little bypasses the memory), a 1x1x1 output convolution and a sigmoid.
The model reconstructs the whole clip; scoring uses its centre frame. Inference: encoder -> M_n -> D_n.
With `target="predict"` the encoder sees the clip with its centre frame set to 0 (the shape stays T frames, which
the 3D encoder and decoders need) and the losses still compare the output with the whole clean clip, so the centre
frame must be predicted from its neighbours through the memory.

Routing without host synchronisation: during training every sample goes through both memories and both decoders,
and the losses weight each sample by is_pseudo = (kind != KIND_NONE) or its complement. Selecting the samples by index
would need their count on the host; the weighted form costs one extra decoder pass instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from vadgpu.kernels.kinds import KIND_NONE
from vadgpu.models.base import (Anomalies, ModelConfig, VadModel, blank_centre, centre_frame,
                               channels_last_convolutions)
from vadgpu.models.blocks import DoubleConv3d, Down3d, Up3d
from vadgpu.models.dualpath_loss import PSEUDO_RECON_MODES, DualPathLossWeights, dualpath_losses
from vadgpu.models.memory import MODES, MemoryBank


@dataclass
class DualPathConfig(ModelConfig):
    """Dual-path settings; defaults are the Ped2 setting (128x128 gray, F = 16, 500 items, T = 16)."""

    architecture = "dualpath"

    temporal: int = 16
    size: tuple[int, int] = (128, 128)
    channels: int = 1
    max_skip: int = 5
    pseudo_p: float = 0.25
    pseudo_kinds: tuple[str, ...] = ("skip", "shuffle", "noise", "patch")
    noise_sigma: float = 0.1
    features: int = 16  # F
    memory_items: int = 500
    shrink: float = 0.0025
    memory_mode: str = "memae"  # "memae" or "mnad" (see memory.py)
    skip_concat: tuple[bool, bool, bool] = (True, False, False)  # concat encoder skips at 4F, 2F, F
    pseudo_recon: str = "push"  # "push": raise the error vs the perturbed input; "clean": rebuild the clean clip
    w_pseudo: float = 1.0
    w_separation: float = 2e-4
    w_kl: float = 2e-4
    w_entropy: float = 2e-4
    w_compactness: float = 0.1  # MNAD mode only
    w_separateness: float = 0.1  # MNAD mode only

    def validate(self) -> None:
        super().validate()
        if self.features < 1:
            self._bad("features", "must be >= 1")
        if self.memory_items < 2:
            self._bad("memory_items", "must be >= 2")
        if not 0 <= self.shrink < 1:
            self._bad("shrink", "must lie in [0, 1)")
        if self.memory_mode not in MODES:
            self._bad("memory_mode", f"choose from {list(MODES)}")
        if len(self.skip_concat) != 3:
            self._bad("skip_concat", "needs three booleans (levels 4F, 2F, F)")
        if self.pseudo_recon not in PSEUDO_RECON_MODES:
            self._bad("pseudo_recon", f"choose from {list(PSEUDO_RECON_MODES)}")

    def loss_weights(self) -> DualPathLossWeights:
        return DualPathLossWeights(
            self.w_pseudo, self.w_separation, self.w_kl, self.w_entropy, self.w_compactness, self.w_separateness
        )


class Encoder3d(nn.Module):
    """C -> F -> 2F -> 4F -> 8F; returns every level's features, shallow to deep."""

    def __init__(self, channels: int, f: int):
        super().__init__()
        self.levels = nn.ModuleList(
            [DoubleConv3d(channels, f), Down3d(f, 2 * f), Down3d(2 * f, 4 * f), Down3d(4 * f, 8 * f)]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats  # (N, F, T, H, W), (N, 2F, ~T/2, ..), (N, 4F, ~T/4, ..), (N, 8F, ~T/8, ~H/8, ~W/8)


class Decoder3d(nn.Module):
    """8F -> 4F -> 2F -> F -> C through Up3d, concatenating the encoder levels named in `skip_concat`."""

    def __init__(self, channels: int, f: int, skip_concat: tuple[bool, bool, bool]):
        super().__init__()
        self.skip_concat = tuple(skip_concat)
        outs = (4 * f, 2 * f, f)
        ins = (8 * f, 4 * f, 2 * f)
        self.ups = nn.ModuleList(Up3d(i, o, o if use else 0) for i, o, use in zip(ins, outs, self.skip_concat))
        self.out = nn.Conv3d(f, channels, 1)

    def forward(self, z: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        x = z
        for up, skip in zip(self.ups, reversed(feats[:-1])):  # skips 4F, 2F, F
            x = up(x, skip.shape[2:], skip)
        return torch.sigmoid(self.out(x))  # (N, C, T, H, W)


class DualPathModel(VadModel):
    """Encoder, memories M_n / M_p, decoders D_n / D_p; see the module docstring."""

    def __init__(self, config: DualPathConfig):
        super().__init__()
        self.config = config
        c, f = config.channels, config.features
        self.encoder = Encoder3d(c, f)
        memory = dict(items=config.memory_items, dim=8 * f, shrink=config.shrink, mode=config.memory_mode)
        self.memory_normal = MemoryBank(**memory)
        self.memory_pseudo = MemoryBank(**memory)
        self.decoder_normal = Decoder3d(c, f, config.skip_concat)
        # the pseudo path starts where the normal path starts and diverges through its own loss
        self.decoder_pseudo = copy.deepcopy(self.decoder_normal)
        channels_last_convolutions(self)

    def visible(self, clips: torch.Tensor) -> torch.Tensor:
        """What the encoder sees: the clip, or in predict mode the clip with its centre frame blanked."""
        return blank_centre(clips) if self.config.target == "predict" else clips

    def reconstruct_clip(self, clips: torch.Tensor) -> torch.Tensor:
        """Inference path encoder -> M_n -> D_n: (N, C, T, H, W) -> reconstruction of the same shape."""
        self.check_clips(clips)
        feats = self.encoder(self.visible(clips))
        return self.decoder_normal(self.memory_normal.read(feats[-1]), feats)  # the read alone (exportable)

    def reconstruct(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return centre_frame(clips), centre_frame(self.reconstruct_clip(clips))

    def training_losses(self, clips: torch.Tensor, anomalies: Anomalies) -> dict[str, torch.Tensor]:
        x = anomalies.clips  # (N, C, T, H, W): the clean clip where kind == 0
        self.check_clips(x)
        is_pseudo = (anomalies.kind != KIND_NONE).to(x.dtype)  # (N,)
        feats = self.encoder(self.visible(x))
        read_n = self.memory_normal(feats[-1], weight=1.0 - is_pseudo)
        read_p = self.memory_pseudo(feats[-1], weight=is_pseudo)
        recon_n = self.decoder_normal(read_n.read, feats)  # (N, C, T, H, W)
        recon_p = self.decoder_pseudo(read_p.read, feats)
        return dualpath_losses(
            clips, x, is_pseudo, recon_n, recon_p, read_n, read_p, self.config.pseudo_recon, self.config.loss_weights()
        )
