"""Measure each preset: parameter count and forward + backward time per clip on this machine.

    python -m vadgpu.models.measure [--batch 8] [--repeats 5] [--device cpu] [--threads N] [PRESET ...]

One timed step = `training_losses` on a random batch (half the samples pseudo-anomalous in a box) + backward;
the median step time divided by the batch size is the time per clip (wall clock, and CPU time of the process).
FLOPs (forward + backward, per clip) are counted on the meta device, so they do not depend on the machine's load.
The model table of docs/models.md comes from here.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import click
import torch
from tqdm import tqdm

from vadgpu.device import describe, resolve_device
from vadgpu.kernels import KIND_DDL, PseudoAnomalies
from vadgpu.models.registry import build_model, count_parameters, list_presets


def random_batch(config, batch: int, device: torch.device, seed: int = 0):
    """(clips, anomalies) of the config's shape: the first half of the batch gets a noisy box (kind DDL)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, config.channels, config.temporal, *config.size)
    clips = torch.rand(shape, generator=g).to(device)
    mask = torch.zeros(batch, 1, *shape[2:], device=device)
    h, w = config.size
    mask[: batch // 2, :, :, h // 4 : h // 2, w // 4 : w // 2] = 1.0
    noisy = 0.5 * clips + 0.5 * torch.rand(shape, generator=g).to(device)
    kind = torch.zeros(batch, dtype=torch.int64, device=device)
    kind[: batch // 2] = KIND_DDL
    return clips, PseudoAnomalies(clips=(1 - mask) * clips + mask * noisy, kind=kind, mask=mask)


def flops_per_clip(preset: str) -> float:
    """Forward + backward FLOPs of one training step per clip, counted on the meta device (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = torch.device("meta")
    with meta:
        model = build_model(preset)
    clips, anomalies = random_batch(model.config, 2, meta)
    with FlopCounterMode(display=False) as counter:
        model.training_losses(clips, anomalies)["loss"].backward()
    return counter.get_total_flops() / 2


def time_step(preset: str, batch: int, repeats: int, device: torch.device) -> tuple[int, float, float]:
    """(parameter count, median wall seconds per clip, median CPU seconds per clip) of forward + backward.

    CPU time (all threads of this process) barely moves when other programs share the machine; wall time does.
    """
    model = build_model(preset).to(device).train()
    clips, anomalies = random_batch(model.config, batch, device)
    wall, cpu = [], []
    for i in range(repeats + 1):  # the first step warms up allocators and kernels
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        model.zero_grad(set_to_none=True)
        model.training_losses(clips, anomalies)["loss"].backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return count_parameters(model), statistics.median(wall) / batch, statistics.median(cpu) / batch


@click.command()
@click.argument("presets", nargs=-1)
@click.option("--batch", default=8, show_default=True, help="clips per step")
@click.option("--repeats", default=5, show_default=True, help="timed steps (after one warm-up step)")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
def main(presets: tuple[str, ...], batch: int, repeats: int, device: str, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    # other work on a shared machine slows every step: the load average says how much to trust the times
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    click.echo(f"device: {describe(dev)}; batch {batch}; median of {repeats} steps; load average {load}")
    click.echo("| preset | input (C x T x H x W) | params | GFLOP/clip | fwd+bwd wall ms/clip | CPU ms/clip |")
    click.echo("|---|---|---|---|---|---|")
    names = presets or list_presets()
    # the paper presets take minutes per step on a CPU: show where the run is (quiet when not a terminal)
    for preset in tqdm(names, desc="presets", unit="preset", disable=not sys.stderr.isatty(), leave=False):
        model_cfg = build_model(preset).config
        params, per_clip, cpu_per_clip = time_step(preset, batch, repeats, dev)
        shape = f"{model_cfg.channels} x {model_cfg.temporal} x {model_cfg.size[0]} x {model_cfg.size[1]}"
        gflop = flops_per_clip(preset) / 1e9
        click.echo(f"| {preset} | {shape} | {params / 1e6:.2f} M | {gflop:.1f} | {per_clip * 1e3:.0f} "
                   f"| {cpu_per_clip * 1e3:.0f} |")


if __name__ == "__main__":
    main()
