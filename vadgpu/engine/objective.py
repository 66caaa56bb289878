"""What one training step computes, from a batch to the losses: object boxes -> pseudo-anomalies -> the model.

    policy = build_policy(model.config)                     # the config's pseudo-anomaly settings
    patches = load_patches(model.config, source, device, seed)   # None unless "patch" is a kind
    objective = TrainingObjective(model, policy, boxes, patches, amp_dtype)
    losses = objective(batch, generator)                    # dict of 0-dim tensors, "loss" the total

A model whose `input_norm` is not "unit" gets its batch normalised first (`in_model_space`), so the sources act on
the frames as the model sees them, as in the dual-path authors' code (they z-score at load time).

`TrainingObjective` puts the whole per-step computation inside one `forward`, so DDP (which hooks only `forward`)
sees every parameter, DDL's `anomaly_logit` included (it is used by the ddl_blend kernel, before the network).
Its `model_inputs` is everything before the model (tubes, input space, pseudo-anomalies) and `make_pseudo_anomalies`
the boxes -> policy step alone, which the benchmarks time apart.
"""

from __future__ import annotations

import torch
from torch import nn

from vadgpu.kernels import PseudoAnomalies, PseudoAnomalyPolicy
from vadgpu.models.base import ModelConfig, model_input
from vadgpu.objects.tubes import TubeBatch


# The value range of the frames the pseudo-anomalies act on, per input normalisation: noise is clamped to it
# ([-1, 1] for z-scored frames, as the dual-path authors' `gaussian` clamps).
VALUE_RANGES = {"unit": (0.0, 1.0), "zscore": (-1.0, 1.0)}


def build_policy(config: ModelConfig) -> PseudoAnomalyPolicy:
    """The pseudo-anomaly policy a model config asks for (pseudo_p, pseudo_kinds, pseudo_weights, noise_sigma,
    skips, pseudo_kind_draw, shuffle_draw, skip_source; the noise clamp from input_norm)."""
    return PseudoAnomalyPolicy(config.pseudo_p, config.pseudo_kinds, config.pseudo_weights, config.noise_sigma,
                               config.skips, kind_draw=config.pseudo_kind_draw, shuffle_draw=config.shuffle_draw,
                               skip_source=config.skip_source, value_range=VALUE_RANGES[config.input_norm])


class ModelInputBatch:
    """A batch as a model with `input_norm="zscore"` sees it: `clips` and `window` z-scored frame by frame, every
    other attribute (video, frame, boxes, valid) the batch's own."""

    def __init__(self, batch, config: ModelConfig):
        self._batch = batch
        self.clips = model_input(config, batch.clips)
        window = getattr(batch, "window", None)
        self.window = None if window is None else model_input(config, window)

    def __getattr__(self, name: str):
        return getattr(self._batch, name)


def in_model_space(batch, config: ModelConfig):
    """`batch` itself for [0, 1] models; a `ModelInputBatch` for the others."""
    return batch if config.input_norm == "unit" else ModelInputBatch(batch, config)


def load_patches(config: ModelConfig, source: str | None, device: torch.device, seed: int) -> torch.Tensor | None:
    """The patch bank (P, C, h, w) on `device` when "patch" is one of the config's kinds (the policy then wants
    one), else None. `source` as for `objects.load_patch_bank` (None: its built-in source)."""
    if "patch" not in config.pseudo_kinds:
        return None
    from vadgpu.objects.patches import load_patch_bank

    return load_patch_bank(source, config.channels, device=device, seed=seed)


def make_pseudo_anomalies(batch, policy: PseudoAnomalyPolicy, boxes, patches: torch.Tensor | None,
                          generator: torch.Generator, logit: torch.Tensor | None) -> PseudoAnomalies:
    """Object boxes for the batch's clips, then the policy; all on the batch's device, no host sync.

    `boxes` is anything with ObjectBoxes' `sample(video, frame, generator)`; None: no sample has an object, so the
    object-based kinds leave every sample normal. `logit` is DDL's learnable blend logit (None for other models).
    """
    clips = batch.clips  # (N, C, T, H, W)
    if boxes is not None:
        box, valid = boxes.sample(batch.video, batch.frame, generator)  # (N, T, 4), (N,)
    else:
        n, temporal = clips.shape[0], clips.shape[2]
        box = torch.zeros(n, temporal, 4, device=clips.device)  # (N, T, 4)
        valid = torch.zeros(n, dtype=torch.bool, device=clips.device)  # (N,)
    return policy(batch, box, valid, patches, generator, logit=logit)


class TrainingObjective(nn.Module):
    """batch -> boxes -> pseudo-anomalies -> model.training_losses; all on the batch's device, no host sync."""

    def __init__(self, model: nn.Module, policy: PseudoAnomalyPolicy, boxes=None,
                 patches: torch.Tensor | None = None, amp_dtype: torch.dtype | None = None, tubes=None):
        super().__init__()
        self.model = model
        self.policy = policy
        self.boxes = boxes  # ObjectBoxes or None (object-based kinds then see no valid sample)
        self.patches = patches  # (P, C, h, w) or None; not a buffer: it is data, not state to sync or save
        self.amp_dtype = amp_dtype
        self.tubes = tubes  # objects.tubes.TubeSampler in object mode: clips -> tubes (with their own boxes)

    def pseudo_anomalies(self, batch, generator: torch.Generator) -> PseudoAnomalies:
        """The first half of `forward`: the batch's pseudo-anomalies (with the model's logit, where it has one).
        A batch of tubes brings its object's boxes along; a batch of frames takes them from `boxes`."""
        logit = getattr(self.model, "anomaly_logit", None)
        source = batch._batch if isinstance(batch, ModelInputBatch) else batch
        if isinstance(source, TubeBatch):
            return self.policy(batch, batch.boxes, batch.valid, self.patches, generator, logit=logit)
        return make_pseudo_anomalies(batch, self.policy, self.boxes, self.patches, generator, logit)

    def model_inputs(self, batch, generator: torch.Generator) -> tuple[object, PseudoAnomalies]:
        """Everything `forward` does before the model: the tubes (object mode), the model's input space, the
        pseudo-anomalies; returns (the batch as the model sees it, its pseudo-anomalies)."""
        if self.tubes is not None:
            batch = self.tubes(batch, generator)  # (N clips) -> (N * per_clip tubes)
        batch = in_model_space(batch, self.model.config)  # the pseudo-anomalies act on what the model sees
        return batch, self.pseudo_anomalies(batch, generator)

    def forward(self, batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch, anomalies = self.model_inputs(batch, generator)
        clips = batch.clips
        with torch.autocast(clips.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            losses = self.model.training_losses(clips, anomalies)
        return {key: value.float() for key, value in losses.items()}
