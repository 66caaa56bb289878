"""Where an object-mode training step spends its time: loading, tube cutting, pseudo-anomalies, forward, backward,
optimiser, timed apart on Ped2 (docs/results/throughput.md, "Object-mode training").

    .venv/bin/python benchmarks/profile_object_step.py                          # ddl-objects-cpu, 20 steps
    .venv/bin/python benchmarks/profile_object_step.py --preset dualpath-objects-cpu --json out.json

The components are the ones `vadgpu train --preset P` builds (the preset's batch size and tubes per clip, the
dataset's box cache, the DALI loader), and the process is set up as the `vadgpu` command sets it up (imported
first). A step is the engine's own sequence, each phase timed after the previous one ends (CPU: no device to
synchronise); the batch's first read of float clips, where a consumer makes them, counts in the phase that reads
them. Prints one JSON object: clips/s, wall and process CPU ms per step, user and system seconds, each phase's ms
per step, the load average at the end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import vadgpu.cli.main  # noqa: F401  the process as the `vadgpu` command sets it up, before torch is imported

import click  # noqa: E402

PED2 = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "ped2"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", default="ddl-objects-cpu", show_default=True, help="An object preset.")
@click.option("--root", default=str(PED2), show_default=True, help="The Ped2 folder.")
@click.option("--steps", default=20, show_default=True, help="Timed steps, after 3 untimed ones.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the result here.")
def main(preset: str, root: str, steps: int, json_path: Path | None) -> None:
    """Time each phase of object-mode training steps."""
    from vadgpu.device import resolve_device
    from vadgpu.engine.components import build_components
    from vadgpu.engine.config import TrainConfig
    from vadgpu.engine.distributed import DistContext
    from vadgpu.engine.objective import in_model_space
    from vadgpu.io import atomic_write_json
    from vadgpu.models.presets import PRESET_TRAINING
    from vadgpu.models.registry import architecture_of

    config = TrainConfig(dataset="ped2", root=root, preset=preset, model=architecture_of(preset), progress=False,
                         device="cpu", **PRESET_TRAINING.get(preset, {}))
    parts, config = build_components(config, DistContext(0, 1, 0, resolve_device("cpu")))
    objective, batches = parts.objective, iter(parts.loader)
    totals: dict[str, float] = {}

    def timed(name: str, start: float) -> float:
        now = time.perf_counter()
        totals[name] = totals.get(name, 0.0) + now - start
        return now

    def step() -> None:
        t = time.perf_counter()
        batch = next(batches)
        t = timed("load", t)
        parts.optimizer.zero_grad(set_to_none=True)
        tubes = objective.tubes(batch, parts.generator)
        t = timed("tubes", t)
        tubes = in_model_space(tubes, objective.model.config)
        anomalies = objective.pseudo_anomalies(tubes, parts.generator)
        t = timed("pseudo-anomalies", t)
        losses = objective.model.training_losses(tubes.clips, anomalies)
        t = timed("forward", t)
        losses["loss"].backward()
        t = timed("backward", t)
        parts.optimizer.step()
        parts.scheduler.step()
        timed("optimiser", t)

    parts.loader.set_epoch(0)
    for _ in range(3):
        step()
    totals.clear()
    wall, cpu, times = time.perf_counter(), time.process_time(), os.times()
    for _ in range(steps):
        step()
    wall, cpu, end = time.perf_counter() - wall, time.process_time() - cpu, os.times()
    result = {"preset": preset, "steps": steps, "batch_size": config.batch_size,
              "tubes_per_clip": config.tubes_per_clip, "clips_per_s": round(steps * config.batch_size / wall, 2),
              "wall_ms_per_step": round(1000 * wall / steps, 1), "cpu_ms_per_step": round(1000 * cpu / steps, 1),
              "user_s": round(end.user - times.user, 2), "system_s": round(end.system - times.system, 2),
              "phases_ms_per_step": {k: round(1000 * v / steps, 1) for k, v in totals.items()},
              "load_average": [round(x, 2) for x in os.getloadavg()]}
    click.echo(json.dumps(result))
    if json_path is not None:
        atomic_write_json(json_path, result)


if __name__ == "__main__":
    main()
