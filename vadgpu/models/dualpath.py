"""The dual-path memory autoencoder with multi-source pseudo-anomalies.

One 3D-conv encoder (C -> F -> 2F -> 4F -> 8F, three stride-2 downsamplings, BN3d + ReLU), two memories of
`memory_items` x 8F (M_n for normal clips, M_p for pseudo-anomalous ones) and two identical decoders (D_n, D_p;
D_p starts as a copy of D_n) made of transposed 3D convolutions, with the skips chosen by `skip_concat`
(default: only the deepest, so little bypasses the memory), a 1x1x1 output convolution and a sigmoid.
The model reconstructs the whole clip; scoring uses its centre frame. Inference: encoder -> M_n -> D_n.
With `target="predict"` the encoder sees the clip with its centre frame set to 0 (the shape stays T frames, which
the 3D encoder and decoders need) and the losses still compare the output with the whole clean clip, so the centre
frame must be predicted from its neighbours through the memory.

Routing without host synchronisation (`routing="masked"`, the default): during training every sample goes through
both memories and both decoders, and the losses weight each sample by is_pseudo = (kind != KIND_NONE) or its
complement. Selecting the samples by index would need their count on the host; the weighted form costs one extra
decoder pass instead. Its price: D_n's BatchNorm statistics (and M_n's MNAD update weights aside, its batch
statistics in training) see the pseudo-anomalies too.

The authors' form (their later code, SVIL2024/DualPath-PseudoAnomaly-VAD; presets `dualpath-*-authors`), each a
config field whose default keeps vadgpu's choice:
    input_norm="zscore"  (base.py) every frame z-scored on its own, as their data.py does; the pseudo-anomalies
                         act on the z-scored frames (engine/objective.py), noise clamped to [-1, 1]
    output="linear"      D's 1x1x1 output convolution without a sigmoid (their `outconv`), as z-scores need
    routing="split"      normal samples only through M_n / D_n, pseudo samples only through M_p / D_p
                         (`index_select`, as theirs), so D_n's BatchNorm never sees a pseudo sample; the encoder's
                         BatchNorm sees the whole batch in both forms. Needs the group sizes on the host: one sync
                         per step on CUDA (`nonzero`), as in their code; a path without samples takes no part in
                         the step (its parameters get no gradient, so Adam leaves them alone, as theirs does)
    loss_terms="authors" their loss terms (dualpath_authors.py) instead of vadgpu's (dualpath_loss.py)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from vadgpu.kernels.kinds import KIND_NONE
from vadgpu.models.base import (MAX_WIDTH, Anomalies, ModelConfig, VadModel, blank_centre, centre_frame,
                               channels_last_convolutions, model_input)
from vadgpu.models.dualpath_authors import AuthorsLossWeights, authors_losses, pooled_channels
from vadgpu.models.blocks import DoubleConv3d, Down3d, Up3d
from vadgpu.models.dualpath_loss import PSEUDO_RECON_MODES, DualPathLossWeights, dualpath_losses, per_sample_mse
from vadgpu.models.memory import MODES, MemoryBank

OUTPUTS = ("sigmoid", "linear")  # the decoders' output activation
ROUTINGS = ("masked", "split")  # every sample through both paths with 0/1 loss weights, or each through its own
LOSS_FORMS = ("vadgpu", "authors")  # dualpath_loss.py or dualpath_authors.py


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
    output: str = "sigmoid"  # OUTPUTS
    routing: str = "masked"  # ROUTINGS
    loss_terms: str = "vadgpu"  # LOSS_FORMS
    w_feas: float = 2e-4  # authors' form only: their loss_feas
    w_kl_fea: float = 2e-4  # authors' form only: their kl_fea
    w_kl_out3: float = 2e-4  # authors' form only: their kl_out3

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.features <= MAX_WIDTH // 8:
            self._bad("features", f"must lie in [1, {MAX_WIDTH // 8}] (the deepest level has 8 F channels)")
        if not 2 <= self.memory_items <= 100_000:
            self._bad("memory_items", "must lie in [2, 100000]")
        if not 0 <= self.shrink < 1:
            self._bad("shrink", "must lie in [0, 1)")
        if self.memory_mode not in MODES:
            self._bad("memory_mode", f"choose from {list(MODES)}")
        if len(self.skip_concat) != 3:
            self._bad("skip_concat", "needs three booleans (levels 4F, 2F, F)")
        if self.pseudo_recon not in PSEUDO_RECON_MODES:
            self._bad("pseudo_recon", f"choose from {list(PSEUDO_RECON_MODES)}")
        for option, choices in (("output", OUTPUTS), ("routing", ROUTINGS), ("loss_terms", LOSS_FORMS)):
            if getattr(self, option) not in choices:
                self._bad(option, f"choose from {list(choices)}")
        if self.routing == "split" and self.loss_terms != "authors":
            self._bad("routing", "'split' gives each path only its own samples; vadgpu's terms compare both "
                      "paths' reads of every sample, so it needs loss_terms='authors'")
        if self.loss_terms == "authors" and self.memory_mode != "memae":
            self._bad("loss_terms", "the authors' form has MemAE memories; MNAD's terms belong to the vadgpu form")
        if self.input_norm == "zscore" and self.output == "sigmoid":
            self._bad("output", "a sigmoid cannot reach z-scored frames; use output='linear' with input_norm='zscore'")

    def loss_weights(self) -> DualPathLossWeights:
        return DualPathLossWeights(
            self.w_pseudo, self.w_separation, self.w_kl, self.w_entropy, self.w_compactness, self.w_separateness
        )

    def authors_weights(self) -> AuthorsLossWeights:
        return AuthorsLossWeights(self.w_feas, self.w_kl_fea, self.w_kl_out3, self.w_entropy)


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

    def __init__(self, channels: int, f: int, skip_concat: tuple[bool, bool, bool], output: str = "sigmoid"):
        super().__init__()
        self.skip_concat = tuple(skip_concat)
        self.linear = output == "linear"
        outs = (4 * f, 2 * f, f)
        ins = (8 * f, 4 * f, 2 * f)
        self.ups = nn.ModuleList(Up3d(i, o, o if use else 0) for i, o, use in zip(ins, outs, self.skip_concat))
        self.out = nn.Conv3d(f, channels, 1)

    def forward(self, z: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.stages(z, feats)[0]  # (N, C, T, H, W)

    def stages(self, z: torch.Tensor, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(output (N, C, T, H, W), the first stage's output (N, 4F, ~T/4, ~H/4, ~W/4): the authors' kl_out3)."""
        x, first = z, None
        for up, skip in zip(self.ups, reversed(feats[:-1])):  # skips 4F, 2F, F
            x = up(x, skip.shape[2:], skip)
            first = x if first is None else first
        out = self.out(x)
        return (out if self.linear else torch.sigmoid(out)), first


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
        self.decoder_normal = Decoder3d(c, f, config.skip_concat, config.output)
        # the pseudo path starts where the normal path starts and diverges through its own loss
        self.decoder_pseudo = copy.deepcopy(self.decoder_normal)
        channels_last_convolutions(self)

    def visible(self, clips: torch.Tensor) -> torch.Tensor:
        """What the encoder sees: the clip, or in predict mode the clip with its centre frame blanked."""
        return blank_centre(clips) if self.config.target == "predict" else clips

    def reconstruct_clip(self, clips: torch.Tensor) -> torch.Tensor:
        """Inference path encoder -> M_n -> D_n: the loader's (N, C, T, H, W) clips -> reconstruction of the same
        shape, in the model's input space."""
        self.check_clips(clips)
        return self._rebuild(model_input(self.config, clips))

    def _rebuild(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(self.visible(x))
        return self.decoder_normal(self.memory_normal.read(feats[-1]), feats)  # the read alone (exportable)

    def reconstruct(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_clips(clips)
        x = model_input(self.config, clips)
        return centre_frame(x), centre_frame(self._rebuild(x))

    def training_losses(self, clips: torch.Tensor, anomalies: Anomalies) -> dict[str, torch.Tensor]:
        x = anomalies.clips  # (N, C, T, H, W): the clean clip where kind == 0
        self.check_clips(x)
        is_pseudo = (anomalies.kind != KIND_NONE).to(x.dtype)  # (N,)
        if self.config.routing == "split":
            return self._split_losses(x, anomalies.kind != KIND_NONE)
        feats = self.encoder(self.visible(x))
        if self.config.loss_terms == "authors":
            return self._masked_authors_losses(x, is_pseudo, feats)
        read_n = self.memory_normal(feats[-1], weight=1.0 - is_pseudo)
        read_p = self.memory_pseudo(feats[-1], weight=is_pseudo)
        recon_n = self.decoder_normal(read_n.read, feats)  # (N, C, T, H, W)
        recon_p = self.decoder_pseudo(read_p.read, feats)
        return dualpath_losses(
            clips, x, is_pseudo, recon_n, recon_p, read_n, read_p, self.config.pseudo_recon, self.config.loss_weights()
        )

    def _masked_authors_losses(self, x: torch.Tensor, is_pseudo: torch.Tensor, feats: list[torch.Tensor]
                               ) -> dict[str, torch.Tensor]:
        """The authors' terms with every sample through both paths (0/1 weights, no host sync)."""
        is_normal = 1.0 - is_pseudo
        read_n = self.memory_normal(feats[-1], weight=is_normal)
        read_p = self.memory_pseudo(feats[-1], weight=is_pseudo)
        recon_n, stage_n = self.decoder_normal.stages(read_n.read, feats)
        recon_p, stage_p = self.decoder_pseudo.stages(read_p.read, feats)
        pseudo = is_pseudo.bool()
        own_mse = torch.where(pseudo, per_sample_mse(recon_p, x), per_sample_mse(recon_n, x))
        own_entropy = torch.where(pseudo, read_p.entropy, read_n.entropy)
        both = ((is_pseudo.sum() > 0) & (is_normal.sum() > 0)).to(x.dtype)
        reads = (pooled_channels(read_n.read, is_normal), pooled_channels(read_p.read, is_pseudo))
        stages = (pooled_channels(stage_n, is_normal), pooled_channels(stage_p, is_pseudo))
        return authors_losses(own_mse, is_pseudo, own_entropy, reads, stages, both, self.config.authors_weights())

    def _split_losses(self, x: torch.Tensor, pseudo: torch.Tensor) -> dict[str, torch.Tensor]:
        """The authors' routing: each sample through its own path only (`index_select`); a path without samples
        is not run. The group sizes come to the host here (one sync on CUDA)."""
        feats = self.encoder(self.visible(x))
        n = x.shape[0]
        out = x.new_zeros(x.shape, dtype=feats[-1].dtype)  # (N, C, T, H, W), filled per path below
        own_entropy = feats[-1].new_zeros(n)
        pooled = {}
        paths = ((~pseudo, self.memory_normal, self.decoder_normal), (pseudo, self.memory_pseudo, self.decoder_pseudo))
        for name, (members, memory, decoder) in zip(("normal", "pseudo"), paths):
            rows = members.nonzero().flatten()
            if rows.numel() == 0:
                continue
            mine = [f.index_select(0, rows) for f in feats]
            read = memory(mine[-1])
            recon, stage = decoder.stages(read.read, mine)
            out = out.index_copy(0, rows, recon.to(out.dtype))
            own_entropy = own_entropy.index_copy(0, rows, read.entropy.to(own_entropy.dtype))
            pooled[name] = (pooled_channels(read.read), pooled_channels(stage))
        both = float(len(pooled) == 2)
        zero = (feats[-1].new_zeros(feats[-1].shape[1]), feats[-2].new_zeros(feats[-2].shape[1]))
        normal, other = pooled.get("normal", zero), pooled.get("pseudo", zero)
        reads, stages = (normal[0], other[0]), (normal[1], other[1])
        return authors_losses(per_sample_mse(out, x), pseudo.to(x.dtype), own_entropy, reads, stages, both,
                              self.config.authors_weights())
