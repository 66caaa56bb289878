"""Run `vadgpu bench throughput` for the configurations of docs/results/throughput.md; commit the results.

    .venv/bin/python benchmarks/bench_throughput.py                      # all configurations, CPU
    .venv/bin/python benchmarks/bench_throughput.py ped2-t3 --seconds 3  # one of them, shorter windows
    .venv/bin/python benchmarks/bench_throughput.py --device cuda        # the same on a GPU (NVDEC / nvJPEG)

Each configuration runs in a process of its own, writes benchmarks/results/throughput-<name>-<host kind>.json
(host kind: "cpu" or the GPU's name) and prints its table; then the side-by-side table of every result. The measuring
code is vadgpu.bench (the same as the command); this file only names the configurations and makes the synthetic
MJPEG set (fixed seed) when it is missing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from vadgpu.heap import keep_freed_memory
from vadgpu.threads import prefer_passive_omp_waiting

prefer_passive_omp_waiting()  # before torch is imported: DALI's threads and torch's share the cores
keep_freed_memory()  # as the vadgpu command does (vadgpu/heap.py)

import click  # noqa: E402
import torch  # noqa: E402

from vadgpu.bench.report import (format_markdown, format_object_summary, format_summary, format_table,  # noqa: E402
                                 is_objects)
from vadgpu.bench.throughput import ThroughputSettings, run_throughput  # noqa: E402
from vadgpu.device import resolve_device  # noqa: E402
from vadgpu.io import atomic_write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
PED2 = HERE.parent.parent / "shared" / "datasets" / "ped2"
SYNTH = HERE.parent / ".cache" / "bench-synth-320x240"  # made here once: 6 x 160 frames of MJPEG at 320x240

DATA_STAGES = ("decode", "baseline", "pipeline", "baseline+clips", "pipeline+clips", "baseline+kernels",
               "pipeline+kernels")
# name -> dataset and clip settings; T = 3 is DDL's clip, T = 16 the dual-path model's (plain clips: --max-skip 0)
CONFIGS = {
    "ped2-t3": dict(dataset="ped2", root=str(PED2), preset="ddl-ped2-cpu", temporal=3),
    "ped2-t16": dict(dataset="ped2", root=str(PED2), preset="dualpath-ped2-cpu", temporal=16, max_skip=0),
    "synth-mjpeg-t3": dict(dataset="synthetic", root=str(SYNTH), variant="avi", preset="ddl-ped2-cpu", temporal=3),
    "synth-mjpeg-t16": dict(dataset="synthetic", root=str(SYNTH), variant="avi", preset="dualpath-ped2-cpu",
                            temporal=16, max_skip=0),
    # the geometries users train at: ddl-paper's 256x256 RGB (T = 3, and T = 16), dualpath-ped2's 128x128 gray;
    # the data path only (a CPU preset's training steps at these sizes would measure the model, not the loaders)
    "ped2-256rgb-t3": dict(dataset="ped2", root=str(PED2), preset="ddl-ped2-cpu", temporal=3, size=(256, 256),
                           channels=3, stages=DATA_STAGES),
    "ped2-256rgb-t16": dict(dataset="ped2", root=str(PED2), preset="dualpath-ped2-cpu", temporal=16, max_skip=0,
                            size=(256, 256), channels=3, stages=DATA_STAGES),
    "ped2-128gray-t16": dict(dataset="ped2", root=str(PED2), preset="dualpath-ped2-cpu", temporal=16, max_skip=0,
                             size=(128, 128), channels=1, stages=DATA_STAGES),
    # object-mode training as `vadgpu train --preset ...-objects-cpu` runs it (the dataset's box cache, the preset's
    # tubes per clip): the training stage alone, with the tube cutting timed apart
    "ped2-ddl-objects": dict(dataset="ped2", root=str(PED2), preset="ddl-objects-cpu", stages=("train",)),
    "ped2-dualpath-objects": dict(dataset="ped2", root=str(PED2), preset="dualpath-objects-cpu", stages=("train",)),
}


def host_kind(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def ensure_synthetic() -> None:
    if not (SYNTH / "synthetic.json").exists():
        from vadgpu.data.synth import make_synthetic_dataset

        make_synthetic_dataset(SYNTH, seed=0, train_videos=6, test_videos=1, frames=160, frame_size=(240, 320),
                               formats=("avi",))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, type=click.Choice(sorted(CONFIGS)))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--seconds", default=5.0, show_default=True, help="timed window per stage")
@click.option("--repeats", default=3, show_default=True, help="timed windows per stage")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--no-progress", is_flag=True)
@click.option("--no-summary", is_flag=True, help="skip the side-by-side table of every result on this host kind")
def main(names, device, seconds, repeats, batch_size, no_progress, no_summary):
    """Measure the throughput configurations and write their JSON results."""
    kind = host_kind(resolve_device(device))
    names = names or sorted(CONFIGS)
    if len(names) == 1:
        measure(names[0], kind, device=device, seconds=seconds, repeats=repeats, batch_size=batch_size,
                progress=not no_progress)
    else:
        # one process per configuration: a process keeps the memory it has touched (DALI's pools, the allocator's
        # arenas), so a configuration's peak RSS would otherwise count the ones measured before it
        options = ["--device", device, "--seconds", str(seconds), "--repeats", str(repeats),
                   "--batch-size", str(batch_size)] + (["--no-progress"] if no_progress else [])
        for name in names:
            subprocess.run([sys.executable, __file__, name, "--no-summary", *options], check=True)
    if no_summary:
        return
    done = [HERE / "results" / f"throughput-{name}-{kind}.json" for name in sorted(CONFIGS)]
    results = [json.loads(path.read_text()) for path in done if path.exists()]
    click.echo("side-by-side table (every result on this host kind):\n"
               + format_summary([r for r in results if not is_objects(r)]) + "\n\nobject-mode training:\n"
               + format_object_summary([r for r in results if is_objects(r)]))


def measure(name: str, kind: str, **options) -> None:
    """One configuration: measure it, write its JSON, print its tables."""
    config = CONFIGS[name]
    if config["dataset"] == "synthetic":
        ensure_synthetic()
    elif not Path(config["root"]).is_dir():
        click.echo(f"{name}: skipped, {config['root']} not found", err=True)
        return
    result = run_throughput(ThroughputSettings(**config, **options))
    result["config"] = name
    out = HERE / "results" / f"throughput-{name}-{kind}.json"
    atomic_write_json(out, result)
    click.echo(f"== {name}\n{format_table(result)}\n\n{format_markdown(result)}\nwrote {out}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
