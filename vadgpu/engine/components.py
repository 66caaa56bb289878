"""Everything the training loop runs on, built from a TrainConfig: data, model, objective, optimiser.

`TrainingObjective` puts the whole per-step computation — object boxes, pseudo-anomaly kernels, the model's
losses — inside one `forward`, so DDP (which hooks only `forward`) sees every parameter, DDL's `anomaly_logit`
included (it is used by the ddl_blend kernel, before the network).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vadgpu.device import describe
from vadgpu.engine.config import TrainConfig
from vadgpu.engine.distributed import DistContext
from vadgpu.errors import VadgpuError
from vadgpu.kernels.kinds import KIND_BY_NAME, OBJECT_KINDS


class TrainingObjective(nn.Module):
    """batch -> boxes -> pseudo-anomalies -> model.training_losses; all on the batch's device, no host sync."""

    def __init__(self, model: nn.Module, policy, boxes=None, patches: torch.Tensor | None = None,
                 amp_dtype: torch.dtype | None = None):
        super().__init__()
        self.model = model
        self.policy = policy
        self.boxes = boxes  # ObjectBoxes or None (object-based kinds then see no valid sample)
        self.patches = patches  # (P, C, h, w) or None; not a buffer: it is data, not state to sync or save
        self.amp_dtype = amp_dtype

    def forward(self, batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clips = batch.clips  # (N, C, T, H, W)
        n, temporal = clips.shape[0], clips.shape[2]
        if self.boxes is not None:
            boxes, valid = self.boxes.sample(batch.video, batch.frame, generator)  # (N, T, 4), (N,)
        else:
            boxes = torch.zeros(n, temporal, 4, device=clips.device)  # (N, T, 4)
            valid = torch.zeros(n, dtype=torch.bool, device=clips.device)  # (N,)
        logit = getattr(self.model, "anomaly_logit", None)
        anomalies = self.policy(batch, boxes, valid, self.patches, generator, logit=logit)
        with torch.autocast(clips.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            losses = self.model.training_losses(clips, anomalies)
        return {key: value.float() for key, value in losses.items()}


@dataclass
class Components:
    model: nn.Module  # the bare model (what checkpoints hold)
    objective: nn.Module  # TrainingObjective, DDP-wrapped under torchrun
    loader: object  # pipelines.loader ClipLoader: len(), set_epoch(), iterates ClipBatch
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    generator: torch.Generator  # the pseudo-anomaly generator, on the device
    params: list[nn.Parameter]
    grad_clip: float | None
    device_name: str
    notices: list[str] = field(default_factory=list)  # things the user should know (printed once by rank 0)


def unwrap(module: nn.Module) -> nn.Module:
    """The bare model inside DDP / TrainingObjective / torch.compile wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif isinstance(module, TrainingObjective):
            module = module.model
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def to_channels_last(model: nn.Module) -> None:
    """Conv weights in channels-last layout: 5-D (Conv3d) as channels_last_3d, 4-D (Conv2d) as channels_last.

    `Module.to(memory_format=...)` takes one format for all and fails on a model that mixes 4-D and 5-D weights.
    """
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.dim() in formats:
            tensor.data = tensor.data.contiguous(memory_format=formats[tensor.dim()])


def seed_everything(seed: int) -> None:
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's); DALI takes its own seeds.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_lambda(schedule: str, total_steps: int):
    if schedule == "cosine":
        # math, not numpy: a numpy scalar in the scheduler's state would make the checkpoint unreadable with
        # torch.load(weights_only=True)
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    return lambda step: 1.0


def _load_train_videos(config: TrainConfig, ctx: DistContext):
    from vadgpu.engine.distributed import barrier
    from vadgpu.pipelines.catalog import open_dataset
    from vadgpu.pipelines.prepare import load_prepared

    dataset = open_dataset(config.dataset, config.root, variant=config.variant)
    # The first rank of each machine probes and transcodes into its cache first; the others then find it current.
    if ctx.local_rank == 0:
        prepared = load_prepared(dataset, ctx.device, progress=config.progress and ctx.is_main)
    barrier(ctx)
    if ctx.local_rank != 0:
        prepared = load_prepared(dataset, ctx.device, progress=False)
    if not prepared.train:
        raise VadgpuError(f"--root {config.root}: dataset {config.dataset} has no training videos")
    return list(prepared.train)


def resolve_model(config: TrainConfig, ctx: DistContext, saved_model_config: dict | None = None
                  ) -> tuple[nn.Module, TrainConfig, list[str]]:
    """Build the (seeded) model; return it, the config with the preset's values filled in, and notices.

    A resumed run passes its checkpoint's model config, so later edits to a preset do not change the model.
    """
    from vadgpu.models.registry import build_model, config_from_dict, model_from_config

    seed_everything(config.seed)
    notices: list[str] = []
    preset = config.preset or config.model
    if saved_model_config is not None:
        model = model_from_config(config_from_dict(saved_model_config, preset))
    else:
        overrides = {k: v for k, v in (("temporal", config.temporal), ("size", config.size),
                                       ("channels", config.channels)) if v is not None}
        model = build_model(preset, **overrides, **config.extra)
    if model.config.architecture != config.model:
        raise VadgpuError(f"--preset {preset} builds a {model.config.architecture} model, but --model is "
                          f"{config.model}")
    mcfg = model.config
    amp = config.amp if config.amp is not None else ctx.device.type == "cuda"
    if amp and ctx.device.type != "cuda":
        notices.append("--amp is for CUDA; training in float32 on the CPU")
        amp = False
    config = config.replace(preset=preset, temporal=mcfg.temporal, size=tuple(mcfg.size), channels=mcfg.channels,
                            amp=amp)
    return model, config, notices


def build_components(config: TrainConfig, ctx: DistContext, saved_model_config: dict | None = None
                     ) -> tuple[Components, TrainConfig]:
    """Build data, model and optimiser for `config`; return them and the config with the preset's values filled."""
    from vadgpu.pipelines.loader import ClipSpec, make_loader

    model, config, notices = resolve_model(config, ctx, saved_model_config)
    mcfg = model.config
    videos = _load_train_videos(config, ctx)
    spec = ClipSpec(temporal=mcfg.temporal, size=tuple(mcfg.size), channels=mcfg.channels, max_skip=mcfg.max_skip)
    loader = make_loader(videos, spec, batch_size=config.batch_size, device=ctx.device, train=True,
                         seed=config.seed, shard_id=ctx.rank, num_shards=ctx.world_size, num_threads=config.workers)
    if len(loader) == 0:
        raise VadgpuError(f"--batch-size {config.batch_size}: the training videos give no full batch of "
                          f"{mcfg.temporal}-frame clips per process")
    boxes = None
    if config.boxes is not None:
        from vadgpu.objects.boxes import ObjectBoxes

        boxes = ObjectBoxes.load(config.boxes, videos, ctx.device, mcfg.temporal)
        notices.append(f"object boxes: {config.boxes} ({boxes.coverage:.0%} of training clips have a track)")
    elif object_kinds := [k for k in mcfg.pseudo_kinds if KIND_BY_NAME[k] in OBJECT_KINDS]:
        notices.append(f"no --boxes: object-based pseudo-anomalies ({', '.join(object_kinds)}) are off; make a "
                       "cache with `vadgpu data boxes` and pass --boxes FILE")
    return assemble(model, config, ctx, loader, boxes, notices), config


def assemble(model: nn.Module, config: TrainConfig, ctx: DistContext, loader, boxes=None,
             notices: list[str] | None = None) -> Components:
    """Put a built model and a loader together with the policy, patches, DDP wrapper, optimiser and scheduler."""
    from vadgpu.kernels import PseudoAnomalyPolicy

    mcfg = model.config
    patches = None
    if "patch" in mcfg.pseudo_kinds:  # the policy wants a bank whenever the kind is on
        from vadgpu.objects.patches import load_patch_bank

        patches = load_patch_bank(config.patches, mcfg.channels, device=ctx.device, seed=config.seed)
    policy = PseudoAnomalyPolicy(mcfg.pseudo_p, mcfg.pseudo_kinds, mcfg.pseudo_weights, mcfg.noise_sigma,
                                 mcfg.skips)
    model.to(ctx.device)
    if config.channels_last:
        to_channels_last(model)
    if config.compile:
        model.training_losses = torch.compile(model.training_losses)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[config.amp_dtype] if config.amp else None
    objective: nn.Module = TrainingObjective(model, policy, boxes, patches, amp_dtype)
    if ctx.distributed:
        # Every parameter takes part in every step (the models route samples with masks, not branches, and DDL
        # keeps anomaly_logit in its loss even when no sample drew its blend), so DDP can skip the search for
        # unused parameters.
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=False)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused Adam on CUDA: one kernel, and with a GradScaler it reads found_inf on the device (no sync)
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,
                                 **({"fused": True} if ctx.device.type == "cuda" else {}))
    total_steps = config.max_steps or config.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.schedule, total_steps))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    generator = torch.Generator(device=ctx.device)
    generator.manual_seed(config.seed * 1_000_003 + ctx.rank + 1)  # different pseudo-anomalies on each rank
    return Components(model, objective, loader, optimizer, scheduler, scaler, generator, params, config.grad_clip,
                      describe(ctx.device), notices or [])
