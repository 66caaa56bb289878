"""Everything the training loop runs on, built from a TrainConfig: data, model, objective, optimiser.

The per-step computation (boxes, pseudo-anomaly kernels, the model's losses) is `objective.TrainingObjective`;
this module builds it with its inputs and wraps it for DDP.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vadgpu.device import describe
from vadgpu.engine.config import NO_BOXES, TrainConfig, planned_steps, with_default_length
from vadgpu.engine.distributed import DistContext
from vadgpu.engine.objective import TrainingObjective, build_policy, load_patches
from vadgpu.errors import VadgpuError
from vadgpu.kernels.kinds import KIND_BY_NAME, OBJECT_KINDS


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
    """The bare model inside the DDP and TrainingObjective wrappers (--compile compiles the model's
    training_losses method in place: the model itself stays unwrapped)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif isinstance(module, TrainingObjective):
            module = module.model
        else:
            return module


def seed_everything(seed: int) -> None:
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's); DALI takes its own seeds.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_lambda(schedule: str, total_steps: int, steps_per_epoch: int = 1, floor: float = 0.0,
               decay_epochs: int | None = None):
    """The lr multiplier of each optimiser step (engine/config.py SCHEDULES says what each schedule is)."""
    if schedule == "cosine-epochs":
        decay = max(decay_epochs or math.ceil(total_steps / max(steps_per_epoch, 1)), 1)

        def per_epoch(step: int) -> float:
            progress = min(step // max(steps_per_epoch, 1), decay) / decay
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return per_epoch
    if schedule == "cosine":
        # math, not numpy: a numpy scalar in the scheduler's state would make the checkpoint unreadable with
        # torch.load(weights_only=True)
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    return lambda step: 1.0


def _load_prepared(config: TrainConfig, ctx: DistContext, loader: str):
    """The dataset and its prepared videos for `loader`'s decoder (every rank), checked to have training videos."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.engine.distributed import barrier

    dataset = open_dataset(config.dataset, config.root, variant=config.variant)
    # The first rank of each machine probes and transcodes into its cache first; the others then find it current.
    if ctx.local_rank == 0:
        prepared = load_prepared(dataset, ctx.device, progress=config.progress and ctx.is_main, loader=loader)
    barrier(ctx)
    if ctx.local_rank != 0:
        prepared = load_prepared(dataset, ctx.device, progress=False, loader=loader)
    if not prepared.train:
        raise VadgpuError(f"--root {config.root}: dataset {config.dataset} has no training videos")
    return dataset, prepared


def _default_box_cache(config: TrainConfig, ctx: DistContext, dataset, prepared) -> str:
    """A model that needs boxes (object mode, or the ddl / patch pseudo-anomalies) and got no --boxes: the dataset's
    background-subtraction cache (both splits, so `vadgpu eval` finds the test boxes too), made by the first rank
    when missing; the others wait for it."""
    from vadgpu.engine.distributed import barrier
    from vadgpu.objects.default_boxes import ensure_box_cache

    splits = {"train": list(prepared.train), "test": list(prepared.test)}
    if ctx.is_main:
        path = ensure_box_cache(dataset, splits, progress=config.progress)
    barrier(ctx)
    if not ctx.is_main:
        path = ensure_box_cache(dataset, splits, progress=False, echo=lambda _: None)
    return str(path)


def resolve_model(config: TrainConfig, ctx: DistContext, saved_model_config: dict | None = None
                  ) -> tuple[nn.Module, TrainConfig, list[str]]:
    """Build the (seeded) model; return it, the config with the preset's values filled in, and notices.

    A resumed run passes its checkpoint's model config, so later edits to a preset do not change the model.
    """
    from vadgpu.models.registry import (build_model, clip_overrides, default_preset, model_config_from_dict,
                                        model_from_config)

    seed_everything(config.seed)
    notices: list[str] = []
    preset = config.preset
    if preset is None:  # never silently the paper size on a CPU: the device picks the default, and says so
        preset = default_preset(config.model, ctx.device.type)
        notices.append(f"no --preset: training {preset}, the default for --model {config.model} on "
                       f"{'CUDA' if ctx.device.type == 'cuda' else 'a CPU'} (`vadgpu presets` lists the others)")
    if saved_model_config is not None:
        model = model_from_config(model_config_from_dict(saved_model_config, preset))
    else:
        model = build_model(preset, **clip_overrides(config), **config.extra)
    if model.config.architecture != config.model:
        raise VadgpuError(f"--preset {preset} builds a {model.config.architecture} model, but --model is "
                          f"{config.model}")
    mcfg = model.config
    if config.appearance is not None and mcfg.clips != "objects":
        raise VadgpuError(f"--appearance scores the objects of an object model's tubes; --preset {preset} is a frame "
                          "model")
    config = with_default_length(config, mcfg.clips)
    notices += _authors_training_notice(preset, config)
    amp = config.amp if config.amp is not None else ctx.device.type == "cuda"
    if amp and ctx.device.type != "cuda":
        notices.append("--amp is for CUDA; training in float32 on the CPU")
        amp = False
    config = config.replace(preset=preset, temporal=mcfg.temporal, size=tuple(mcfg.size), channels=mcfg.channels,
                            clips=mcfg.clips, window=mcfg.window if mcfg.clips == "objects" else config.window,
                            amp=amp)
    return model, config, notices


def resolve_window(model: nn.Module, config: TrainConfig, videos, frame_size: tuple[int, int]
                   ) -> tuple[TrainConfig, str | None]:
    """An object model whose window is `auto`: set it (in the model's config and the training config) from the
    training boxes of `config.boxes` (objects/window.py); returns the config and a notice saying what it chose."""
    from vadgpu.models.base import WINDOW_AUTO
    from vadgpu.objects.window import auto_window

    if model.config.window != WINDOW_AUTO:
        return config, None
    choice = auto_window(config.boxes, videos, frame_size, config.dataset)
    model.config = model.config.replace(window=choice.window)  # the window shapes no weight: only the tubes
    return config.replace(window=choice.window), choice.describe()


def _authors_training_notice(preset: str, config: TrainConfig) -> list[str]:
    """A notice when an -authors preset trains with other settings than the authors' (presets.AUTHORS_TRAINING):
    presets hold model settings only, so the training options stay the user's, but the user should know."""
    from vadgpu.models.presets import AUTHORS_TRAINING

    wanted = AUTHORS_TRAINING.get(preset, {})
    differ = [f"--{name.replace('_', '-')} {value}" for name, value in wanted.items() if getattr(config, name) != value]
    if not differ:
        return []
    return [f"preset {preset}: the authors' training settings this run does not use: {' '.join(differ)} "
            "(docs/models.md, 'The dual-path model as its authors wrote it')"]


def build_components(config: TrainConfig, ctx: DistContext, saved_model_config: dict | None = None
                     ) -> tuple[Components, TrainConfig]:
    """Build data, model and optimiser for `config`; return them and the config with the preset's values filled."""
    from vadgpu.pipelines.choose import open_loader, resolve_loader
    from vadgpu.pipelines.clip_index import ClipSpec

    model, config, notices = resolve_model(config, ctx, saved_model_config)
    mcfg = model.config
    loader_kind, notice = resolve_loader(config.loader)
    notices += [notice] if notice else []
    dataset, prepared = _load_prepared(config, ctx, loader_kind)
    videos = list(prepared.train)
    objects = mcfg.clips == "objects"
    object_kinds = [k for k in mcfg.pseudo_kinds if KIND_BY_NAME[k] in OBJECT_KINDS]
    frame_size = None
    if objects:
        from vadgpu.objects.tubes import native_frame_size

        frame_size = native_frame_size(videos)
    if config.boxes == NO_BOXES and objects:
        raise VadgpuError(f"--boxes {NO_BOXES}: preset {config.preset} trains on object tubes, which are cut around "
                          "boxes; give a box cache, or leave --boxes out to make one by background subtraction")
    if config.boxes is None and (objects or object_kinds):  # what the model needs, made once and cached
        config = config.replace(boxes=_default_box_cache(config, ctx, dataset, prepared))
    loader = open_loader(loader_kind, videos, ClipSpec.for_model(mcfg, frame_size=frame_size),
                         batch_size=config.batch_size, device=ctx.device, train=True, seed=config.seed,
                         shard_id=ctx.rank, num_shards=ctx.world_size, workers=config.workers)
    if len(loader) == 0:
        raise VadgpuError(f"--batch-size {config.batch_size}: the training videos give no full batch of "
                          f"{mcfg.temporal}-frame clips per process")
    if objects:
        config, notice = resolve_window(model, config, videos, frame_size)
        notices += [notice] if notice else []
        mcfg = model.config
    boxes = tubes = None
    if config.boxes not in (None, NO_BOXES):
        from vadgpu.objects.boxes import ObjectBoxes

        boxes = ObjectBoxes.load(config.boxes, videos, ctx.device, mcfg.temporal)
        notices.append(f"object boxes: {config.boxes} ({boxes.coverage:.0%} of training clips have a track)")
    elif object_kinds:
        notices.append(f"--boxes {NO_BOXES}: object-based pseudo-anomalies ({', '.join(object_kinds)}) are off")
    if objects:
        from vadgpu.objects.tubes import TubeSampler

        tubes = TubeSampler(boxes, mcfg.window, mcfg.size[0], config.tubes_per_clip)
        notices.append(f"object tubes: {config.tubes_per_clip} per clip, {mcfg.window}-pixel window of the "
                       f"{frame_size[1]}x{frame_size[0]} frames, resized to {mcfg.size[1]}x{mcfg.size[0]}")
        boxes = None  # the tubes carry their own object's boxes
    return assemble(model, config, ctx, loader, boxes, notices, tubes), config


def assemble(model: nn.Module, config: TrainConfig, ctx: DistContext, loader, boxes=None,
             notices: list[str] | None = None, tubes=None) -> Components:
    """Put a built model and a loader together with the policy, patches, DDP wrapper, optimiser and scheduler."""
    patches = load_patches(model.config, config.patches, ctx.device, config.seed)
    policy = build_policy(model.config)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every step has the same shapes: autotune each convolution once
    model.to(ctx.device)
    if config.compile:
        model.training_losses = torch.compile(model.training_losses)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[config.amp_dtype] if config.amp else None
    objective: nn.Module = TrainingObjective(model, policy, boxes, patches, amp_dtype, tubes)
    if ctx.distributed:
        # Every parameter takes part in every step (the models route samples with masks, not branches, and DDL
        # keeps anomaly_logit in its loss even when no sample drew its blend), so DDP can skip the search for
        # unused parameters, except where a model routes by index.
        # The dual-path model's split routing (routing="split") skips a path that has no sample in the batch.
        split = getattr(model.config, "routing", "masked") == "split"
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=split)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused Adam on CUDA: one kernel, and with a GradScaler it reads found_inf on the device (no sync)
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,
                                 **({"fused": True} if ctx.device.type == "cuda" else {}))
    total_steps = planned_steps(config, len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.schedule, total_steps, len(loader),
                                                                        config.lr_floor, config.decay_epochs))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    generator = torch.Generator(device=ctx.device)
    generator.manual_seed(config.seed * 1_000_003 + ctx.rank + 1)  # different pseudo-anomalies on each rank
    return Components(model, objective, loader, optimizer, scheduler, scaler, generator, params, config.grad_clip,
                      describe(ctx.device), notices or [])
