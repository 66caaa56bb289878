"""The training loop: DALI batch -> pseudo-anomaly kernels -> model -> loss -> optimiser, on one device or DDP.

Plain functions in the torchvision-references style: `train_step`, `train_one_epoch`, `fit`. The hot path keeps
everything on the device: losses are summed into device tensors and read (one `.tolist()`) only every
`log_every` steps; stop requests are Python flags (under DDP they are agreed on at log steps, where the loop
syncs anyway). `components.py` builds what the loop runs on.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vadgpu import checkpoint as ckpt
from vadgpu.engine.components import Components, build_components, unwrap
from vadgpu.engine.config import CONFIG_NAME, TrainConfig, planned_epochs, planned_steps, write_config
from vadgpu.engine.distributed import (DistContext, any_rank_true, barrier, broadcast_buffers, cleanup_distributed,
                                       gather_objects, setup_distributed)
from vadgpu.engine.run_log import LOG_NAME, NullLogger, RunLogger, truncate_log
from vadgpu.engine.rng_state import capture_rng, restore_rng
from vadgpu.engine.run_folder import SUMMARY_NAME, check_run_out, prepare_run_dir
from vadgpu.errors import VadgpuError
from vadgpu.folder_lock import hold_folder
from vadgpu.io import atomic_write_json


@dataclass
class TrainingPosition:
    """Where training stands: `epoch` = finished epochs, `step` = optimiser steps, `batch` = steps into `epoch`."""

    epoch: int = 0
    step: int = 0
    batch: int = 0
    clips: int = 0  # clips trained in this process's lifetime (all ranks), for clips/s


@dataclass
class FitResult:
    run_dir: Path
    position: TrainingPosition
    interrupted: bool
    seconds: float
    clips_per_s: float
    is_main: bool
    world_size: int
    model: torch.nn.Module = field(repr=False)


class StopRequest:
    """SIGINT / SIGTERM ask the loop to save and stop at the next step boundary; a second SIGINT aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        with contextlib.suppress(ValueError):  # not the main thread (e.g. inside a test harness): no handlers
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class LossMeter:
    """Running sums of the loss terms on the device; `read()` is the one host sync, at log time."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for key, value in losses.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def read(self, extra: dict[str, torch.Tensor]) -> dict[str, float]:
        """Mean of each term since the last read, plus `extra` scalars, in one device-to-host copy."""
        keys = list(self.sums) + list(extra)
        if not keys:
            return {}
        values = [self.sums[k] / max(self.count, 1) for k in self.sums] + [v.detach().float() for v in extra.values()]
        host = torch.stack([v.reshape(()) for v in values]).tolist()  # the sync
        self.sums, self.count = {}, 0
        return dict(zip(keys, host))


def train_step(parts: Components, batch) -> dict[str, torch.Tensor]:
    """One optimiser step on one batch; returns the detached loss terms (still on the device)."""
    parts.optimizer.zero_grad(set_to_none=True)
    losses = parts.objective(batch, parts.generator)
    loss = losses["loss"]
    if parts.scaler is not None:  # fp16: scaled backward; fused Adam reads found_inf on the device
        parts.scaler.scale(loss).backward()
        if parts.grad_clip:
            parts.scaler.unscale_(parts.optimizer)
            torch.nn.utils.clip_grad_norm_(parts.params, parts.grad_clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        loss.backward()
        if parts.grad_clip:
            torch.nn.utils.clip_grad_norm_(parts.params, parts.grad_clip)
        parts.optimizer.step()
    parts.scheduler.step()
    return {key: value.detach() for key, value in losses.items()}


def save_training_checkpoint(parts: Components, config: TrainConfig, position: TrainingPosition, run_dir: Path,
                             ctx: DistContext, epoch_end: bool) -> None:
    """All ranks call this (RNG states are gathered); rank 0 writes last.pt (and epoch-NNN.pt at epoch ends)."""
    broadcast_buffers(unwrap(parts.model), ctx)
    rng = gather_objects(capture_rng(parts.generator), ctx)
    if not ctx.is_main:
        return
    state = {
        **_model_state(parts, config, position),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "batch_in_epoch": position.batch,
        "world_size": ctx.world_size,
        "rng": {"ranks": rng},
    }
    folder = ckpt.checkpoint_dir(run_dir)
    if epoch_end and config.save_period and position.epoch % config.save_period == 0:
        ckpt.save_checkpoint(folder / ckpt.epoch_checkpoint_name(position.epoch), state)
        ckpt.prune_epoch_checkpoints(folder, config.keep_last)
    ckpt.save_checkpoint(folder / ckpt.LAST, state)


def _model_state(parts: Components, config: TrainConfig, position: TrainingPosition) -> dict[str, Any]:
    """What rebuilds the trained model (the weights-only model.pt holds just this): preset, config, weights."""
    model = unwrap(parts.model)
    return {"model_name": config.preset, "model_config": model.config.to_dict(), "model": model.state_dict(),
            "epoch": position.epoch, "step": position.step, "config": config.to_dict()}


def training_video_scores(parts: Components, config: TrainConfig, ctx: DistContext) -> dict:
    """What model.pt keeps of the training videos' scores: a frame model's raw scores (`train_scores`,
    scoring/train_scores.py), an object model's calibration record (`calibration`, scoring/calibration.py, with the
    appearance term when `config.appearance` names Darknet weights): what live scoring, `vadgpu score` and
    `eval --norm train` measure against. A failure costs only the record, never the run."""
    import logging

    from vadgpu.pipelines.choose import resolve_loader

    model = unwrap(parts.model)
    videos = list(parts.loader.videos)
    loader = resolve_loader(config.loader)[0]
    was_training = model.training
    model.eval()
    try:
        if model.config.clips == "objects":
            from vadgpu.objects.appearance import BoxFeatures
            from vadgpu.scoring.calibration import calibrate

            features = None if config.appearance is None else BoxFeatures.from_darknet(config.appearance)
            calibration = calibrate(model, videos, config.boxes, dataset=config.dataset, variant=config.variant,
                                    device=ctx.device, features=features, weight=config.appearance_weight,
                                    batch_size=config.batch_size, progress=config.progress, loader=loader)
            return {"calibration": calibration.to_record()}
        from vadgpu.scoring.train_scores import compute_train_scores

        source = {"dataset": config.dataset, "root": str(config.root), "variant": config.variant}
        return {"train_scores": compute_train_scores(model, videos, ctx.device, loader=loader,
                                                     batch_size=config.batch_size, progress=config.progress,
                                                     source=source)}
    except VadgpuError as exc:
        logging.getLogger("vadgpu").warning(f"model.pt is written without the training videos' scores ({exc}); "
                                            "live scoring and --norm train will need them (`vadgpu calibrate` adds "
                                            "an object model's)")
        return {}
    finally:
        model.train(was_training)


def resume_from_checkpoint(parts: Components, state: dict, ctx: DistContext, steps_per_epoch: int) -> TrainingPosition:
    """Load a checkpoint into model, optimiser, scheduler, scaler and this rank's RNG; return where to continue."""
    try:
        unwrap(parts.model).load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError) as exc:
        raise VadgpuError(f"--resume: the checkpoint does not fit the model this vadgpu builds from its saved "
                          f"config (was the model code changed?): {str(exc)[:300]}") from exc
    parts.scheduler.load_state_dict(state["scheduler"])
    if parts.scaler is not None and state.get("scaler"):
        parts.scaler.load_state_dict(state["scaler"])
    ranks = state["rng"]["ranks"]
    if ctx.rank < len(ranks):
        restore_rng(ranks[ctx.rank], parts.generator)
    batch = int(state["batch_in_epoch"])
    if state["world_size"] != ctx.world_size:  # same clips seen, counted in this world size's batches
        batch = batch * state["world_size"] // ctx.world_size
    return TrainingPosition(epoch=int(state["epoch"]), step=int(state["step"]), batch=min(batch, steps_per_epoch))


def _log_step(parts: Components, meter: LossMeter, position: TrainingPosition, clips_per_s: float, logger) -> None:
    values = meter.read({})  # the hot path's one host sync; DDL's loss terms carry its anomaly_weight
    if not math.isfinite(values.get("loss", 0.0)):
        raise VadgpuError(f"training diverged: loss is {values['loss']} at step {position.step} "
                          "(try a lower --lr, or --no-amp)")
    logger.log({"epoch": position.epoch + 1, "step": position.step, **values,
                "lr": parts.scheduler.get_last_lr()[0], "clips_per_s": clips_per_s, "time": time.time()})


def train_one_epoch(parts: Components, config: TrainConfig, position: TrainingPosition, run_dir: Path, ctx: DistContext,
                    logger, stop: StopRequest) -> bool:
    """Run the rest of epoch `position.epoch` (skipping `position.batch` batches already done); False when training
    is over: stopped, at its last step (`planned_steps`) or after its last epoch."""
    loader = parts.loader
    loader.set_epoch(position.epoch)
    steps = len(loader)
    epochs, last_step = planned_epochs(config, steps), planned_steps(config, steps)
    skip = position.batch
    logger.start_epoch(position.epoch, epochs, total=min(steps, skip + last_step - position.step), initial=skip)
    meter = LossMeter()
    stop_after_epoch = False
    clips_since, tick = 0, time.perf_counter()
    for index, batch in enumerate(loader):
        if index < skip:  # resumed mid-epoch: these batches were trained before the checkpoint
            continue
        losses = train_step(parts, batch)
        meter.add(losses)
        position.step += 1
        position.batch = index + 1
        clips_since += len(batch) * ctx.world_size  # a count on the host, no sync (and no float clips made)
        position.clips += len(batch) * ctx.world_size
        logger.advance()
        log_due = position.step % config.log_every == 0 or position.batch == steps
        checkpoint_now = config.checkpoint_every and position.step % config.checkpoint_every == 0
        at_max = position.step >= last_step
        # Single process: the Python flag costs nothing. DDP: ranks agree where they sync anyway.
        stopping = stop.requested if not ctx.distributed else (
            (log_due or checkpoint_now or at_max) and any_rank_true(stop.requested, ctx))
        if log_due or stopping or at_max:  # the last steps before a stop are logged too
            now = time.perf_counter()
            _log_step(parts, meter, position, clips_since / max(now - tick, 1e-9), logger)
            clips_since, tick = 0, now
        if position.batch == steps:  # the epoch-end checkpoint below covers this step
            stop_after_epoch = stopping or at_max
            break
        if checkpoint_now or stopping or at_max:
            save_training_checkpoint(parts, config, position, run_dir, ctx, epoch_end=False)
        if stopping or at_max:
            logger.end_epoch()
            return False
    logger.end_epoch()
    position.epoch += 1
    position.batch = 0
    save_training_checkpoint(parts, config, position, run_dir, ctx, epoch_end=True)
    return position.epoch < epochs and position.step < last_step and not stop_after_epoch


def fit(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> FitResult:
    """Train as `config` says (under torchrun: one rank of DDP); write the run folder; return the trained model."""
    config.validate()
    check_run_out(config)  # before the lock creates the folder
    ctx = setup_distributed(config.device)
    try:
        with contextlib.ExitStack() as held:
            if ctx.is_main:  # one training per run folder: a second one stops here, naming this one's PID
                held.enter_context(hold_folder(config.out, "vadgpu train", tidy=(ckpt.checkpoint_dir("").name,)))
            return _fit(config, ctx, resume, overwrite)
    finally:
        cleanup_distributed()


def _fit(config: TrainConfig, ctx: DistContext, resume: bool, overwrite: bool) -> FitResult:
    run_dir = Path(config.out)
    if ctx.is_main:
        prepare_run_dir(run_dir, resume, overwrite)
    barrier(ctx)
    # Loaded to the host: RNG states must stay CPU byte tensors, and load_state_dict moves the rest to the model
    state = ckpt.load_checkpoint(ckpt.find_run_checkpoint(run_dir), map_location="cpu") if resume else None
    if state is not None and config.epochs is not None and config.epochs < int(state["epoch"]):
        raise VadgpuError(f"--epochs {config.epochs}: the run in {run_dir} has trained {state['epoch']} epochs "
                          "already; give at least that many (or start a new run folder)")  # config.yaml would lie
    if state is not None and config.steps is not None and config.steps < int(state["step"]):
        raise VadgpuError(f"--steps {config.steps}: the run in {run_dir} has trained {state['step']} steps "
                          "already; give at least that many (or start a new run folder)")
    parts, config = build_components(config, ctx, state["model_config"] if state else None)
    position = TrainingPosition()
    steps_per_epoch = len(parts.loader)
    if state is not None:
        position = resume_from_checkpoint(parts, state, ctx, steps_per_epoch)
        del state
        if ctx.is_main:
            truncate_log(run_dir / LOG_NAME, position.step)
    if ctx.is_main:
        write_config(config, run_dir / CONFIG_NAME)
    logger = RunLogger(run_dir, config.progress) if ctx.is_main else NullLogger()
    epochs, last_step = planned_epochs(config, steps_per_epoch), planned_steps(config, steps_per_epoch)
    length = f"{steps_per_epoch} steps/epoch x {epochs} epochs"
    if config.steps is not None:
        length = f"{config.steps} steps ({length}{', the last cut short' if config.steps % steps_per_epoch else ''})"
    if last_step < (config.steps or epochs * steps_per_epoch):
        length += f", stopping at step {last_step} (max_steps)"
    logger.message(f"vadgpu train: {config.model} ({config.preset}) on {parts.device_name}, world size "
                   f"{ctx.world_size}, {length}"
                   + (f", resuming at epoch {position.epoch + 1} step {position.step}" if resume else ""))
    for notice in parts.notices:
        logger.message(notice)
    started = time.perf_counter()
    interrupted = False
    try:
        with StopRequest() as stop:
            done = position.epoch >= epochs or position.step >= last_step
            while not done:
                done = not train_one_epoch(parts, config, position, run_dir, ctx, logger, stop)
            interrupted = stop.requested
    finally:
        logger.close()
    broadcast_buffers(unwrap(parts.model), ctx)
    seconds = time.perf_counter() - started
    result = FitResult(run_dir, position, interrupted, seconds, position.clips / max(seconds, 1e-9), ctx.is_main,
                       ctx.world_size, unwrap(parts.model))
    # A finished run resumed again trains nothing: its summary (the time it took) stays as it was.
    trained_now = position.clips > 0 or not (run_dir / SUMMARY_NAME).is_file()
    if ctx.is_main and not interrupted and trained_now:
        state = _model_state(parts, config, position)
        state.update(training_video_scores(parts, config, ctx))
        ckpt.save_model_file(run_dir / ckpt.MODEL, state)
        atomic_write_json(run_dir / SUMMARY_NAME, {
            "epochs": position.epoch, "steps": position.step, "world_size": ctx.world_size,
            "seconds": round(seconds, 2), "clips_per_s": round(result.clips_per_s, 2), "device": parts.device_name,
            "model": config.model, "preset": config.preset})
    barrier(ctx)
    return result
