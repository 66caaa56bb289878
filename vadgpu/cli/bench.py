"""`vadgpu bench ...`: benchmarks (`throughput`: decode limit, baseline loader, DALI pipeline, kernels, training)."""

from __future__ import annotations

from pathlib import Path

import click

from vadgpu.cli.options import dataset_options

from vadgpu.bench.throughput import STAGES
from vadgpu.pipelines.choose import LOADERS
from vadgpu.errors import VadgpuError


@click.group()
def bench() -> None:
    """Measure vadgpu's speed on this machine."""


@bench.command("throughput")
@dataset_options("Prepare cache folder")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--preset", "--model", "preset", default="ddl-ped2-cpu", show_default=True,
              help="Model preset for the kernels and the training steps; it also gives T, size and channels.")
@click.option("--temporal", type=int, default=None, help="Frames per clip T [default: the preset's].")
@click.option("--resize", nargs=2, type=int, default=None, metavar="H W", help="Clip frame size [default: preset's].")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None, help="1 gray, 3 RGB [default: preset's].")
@click.option("--max-skip", type=int, default=None,
              help="Skip window (decoded when > 1) [default: the preset's]; < 2 drops the 'skip' kind.")
@click.option("--batch-size", default=16, show_default=True, help="Clips per batch.")
@click.option("--seconds", default=5.0, show_default=True, help="Length of one timed window per stage.")
@click.option("--repeats", default=3, show_default=True, help="Timed windows per stage (median, min, max).")
@click.option("--warmup", default=2.0, show_default=True, help="Untimed seconds before each stage's windows.")
@click.option("--workers", type=int, default=None, help="DataLoader workers / DALI threads / decode processes "
              "[default: the usable cores].")
@click.option("--boxes", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Object-box cache (`vadgpu data boxes`) [default: random boxes, same kernel cost].")
@click.option("--loader", type=click.Choice(LOADERS), default="auto", show_default=True,
              help="Loader feeding the train stage: dali, torch (OpenCV, = baseline) or auto (dali where installed).")
@click.option("--stages", default=",".join(STAGES),
              show_default=True, help="Comma-separated stages to measure.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result (system, settings, every repeat, ratios, targets) to this JSON file.")
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown (for docs/results/throughput.md).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def throughput(name, root, variant, cache, device, preset, temporal, resize, channels, max_skip, batch_size,
               seconds, repeats, warmup, workers, boxes, loader, stages, json_path, markdown, no_progress) -> None:
    """Decode limit, baseline DataLoader, DALI pipeline (+ kernels) and training steps, side by side.

    \b
    Examples:
      vadgpu bench throughput --dataset ped2 --root PED2 --temporal 3 --json ped2-t3.json
      vadgpu bench throughput --dataset synthetic --root data/synth --variant avi --temporal 16 \\
          --preset dualpath-ped2-cpu --max-skip 0
    """
    from vadgpu.bench.report import format_markdown, format_table
    from vadgpu.bench.throughput import ThroughputSettings, run_throughput
    from vadgpu.io import atomic_write_json
    from vadgpu.outputs import check_output_file

    settings = ThroughputSettings(
        dataset=name, root=str(root), variant=variant, cache=str(cache) if cache else None, device=device,
        preset=preset, temporal=temporal, size=tuple(resize) if resize else None,
        channels=int(channels) if channels else None, max_skip=max_skip, batch_size=batch_size, seconds=seconds,
        repeats=repeats, warmup=warmup, workers=workers, boxes=str(boxes) if boxes else None, loader=loader,
        stages=tuple(s.strip() for s in stages.split(",") if s.strip()), progress=not no_progress)
    if json_path is not None:  # before the minutes of measuring
        check_output_file(json_path, "--json", sources=[(root, "the dataset root")], kinds=("json",),
                          what="a benchmark result")
    result = run_throughput(settings)
    click.echo(format_table(result))
    if markdown:
        click.echo("\n" + format_markdown(result))
    if json_path is not None:
        try:
            atomic_write_json(json_path, result)
        except OSError as exc:
            raise VadgpuError(f"--json {json_path}: cannot write ({exc.strerror})") from exc
        click.echo(f"wrote {json_path}")
