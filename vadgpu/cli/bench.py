"""`vadgpu bench ...`: benchmarks (`throughput`: decode limit, baseline loader, DALI pipeline, kernels, training;
`score`: the scoring path end to end, stage by stage)."""

from __future__ import annotations

from pathlib import Path

import click

from vadgpu.cli.options import CHECKPOINT, PRECISION, VARIANT_HELP, dataset_options

from vadgpu.bench.score import DEFAULT_CHECKPOINT, MODES, SCORE_BOXES
from vadgpu.bench.throughput import STAGES
from vadgpu.pipelines.choose import LOADERS
from vadgpu.precision import DEFAULT_PRECISION
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
              help="Object-box cache (`vadgpu data boxes`) [default: random boxes, same kernel cost; object "
              "presets: the dataset's background-subtraction cache].")
@click.option("--tubes-per-clip", type=click.IntRange(min=1), default=None,
              help="Object presets: tubes cut from each clip [default: the preset's training setting].")
@click.option("--loader", type=click.Choice(LOADERS), default="auto", show_default=True,
              help="Loader feeding the train stage: dali, torch (OpenCV, = baseline) or auto (dali where installed).")
@click.option("--stages", default=",".join(STAGES),
              show_default=True, help="Comma-separated stages to measure.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result (system, settings, every repeat, ratios, targets) to this JSON file.")
@click.option("--markdown", is_flag=True, help="Also print the table as Markdown (for docs/results/throughput.md).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def throughput(name, root, variant, cache, device, preset, temporal, resize, channels, max_skip, batch_size,
               seconds, repeats, warmup, workers, boxes, tubes_per_clip, loader, stages, json_path, markdown,
               no_progress) -> None:
    """Decode limit, baseline DataLoader, DALI pipeline (+ kernels) and training steps, side by side. An object
    preset is measured as it trains: frames at the videos' size, tubes cut around the box cache's tracks.

    \b
    Examples:
      vadgpu bench throughput --dataset ped2 --root PED2 --temporal 3 --json ped2-t3.json
      vadgpu bench throughput --dataset synthetic --root data/synth --variant avi --temporal 16 \\
          --preset dualpath-ped2-cpu --max-skip 0
      vadgpu bench throughput --dataset ped2 --root PED2 --preset ddl-objects-cpu --stages train
    """
    from vadgpu.bench.report import format_markdown, format_table
    from vadgpu.bench.throughput import ThroughputSettings, run_throughput
    from vadgpu.io import atomic_write_json
    from vadgpu.outputs import check_output_file

    settings = ThroughputSettings(
        dataset=name, root=str(root), variant=variant, cache=str(cache) if cache else None, device=device,
        preset=preset, temporal=temporal, size=tuple(resize) if resize else None,
        channels=int(channels) if channels else None, max_skip=max_skip, batch_size=batch_size, seconds=seconds,
        repeats=repeats, warmup=warmup, workers=workers, boxes=str(boxes) if boxes else None,
        tubes_per_clip=tubes_per_clip, loader=loader, stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
        progress=not no_progress)
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


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@bench.command("score")
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, path_type=Path), metavar="[VIDEO|FOLDER]...")
@click.option("--checkpoint", type=CHECKPOINT, default=None,
              help=f"The model: a weights file (RUN/model.pt) or shipped weights by name [default: "
              f"{DEFAULT_CHECKPOINT}, unless --model].")
@click.option("--model", "model_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An ONNX file from `vadgpu export` instead of --checkpoint: score and live run it under "
              "onnxruntime (float32).")
@click.option("--dataset", "name", default=None, help="Catalog name of a dataset whose test videos to score "
              "(eval needs one: its labels).")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="The dataset's folder (read only).")
@click.option("--variant", default=None, help=VARIANT_HELP)
@click.option("--videos", default="", help="Comma-separated test videos of the dataset, e.g. 04,05 [default: all].")
@click.option("--modes", default=",".join(MODES), show_default=True,
              help="score: `vadgpu score` per video (prepare, boxes, scoring, outputs); eval: `vadgpu eval` over the "
              "chosen test videos with the dataset's box cache; live: Detector.stream per video, unpaced.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--loader", type=click.Choice(LOADERS), default="auto", show_default=True,
              help="Clip loader of score and eval: dali, torch or auto (dali where installed).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Clips per batch.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Timed runs of each mode (their stage seconds are averaged).")
@click.option("--no-warmup", is_flag=True, help="Skip the untimed first run of each mode on the first video.")
@click.option("--score-boxes", type=click.Choice(SCORE_BOXES), default="detect", show_default=True,
              help="Score mode: detect = background subtraction in every run (a video seen for the first time); "
              "cache = every run reads the boxes the warm-up run cached.")
@click.option("--eval-boxes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Eval mode: box cache of the test split [default: the dataset's background-subtraction cache, "
              "made before timing when missing].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The JSON record [default: benchmarks/results/score-NAME-DEVICE.json, NAME the dataset or the "
              "first input; -bf16 added with --precision bf16, -onnx with --model].")
@PRECISION
@click.option("--markdown", is_flag=True, help="Also print the stage table as Markdown.")
@click.option("--no-progress", is_flag=True, help="No line per run.")
def score(inputs, checkpoint, model_file, name, root, variant, videos, modes, device, loader, batch_size, repeats,
          no_warmup, score_boxes, eval_boxes, out, precision, markdown, no_progress) -> None:
    """The scoring path end to end, stage by stage: frames/s of score, eval and live, and where the time goes.

    Each mode runs the real path (model load apart: start-up, reported with the imports) with a stage clock:
    decode, clips, boxes, tube cut, network, tube scores, appearance, protocol, writing, other; each stage's
    seconds, share and frames/s if it alone ran, beside the decode limit (the same loader alone), peak RSS and
    the load average. Writes a JSON record and prints the table.

    \b
    Examples:
      vadgpu bench score --dataset ped2 --root PED2 --videos 04
      vadgpu bench score my_camera.mp4 --checkpoint runs/x/model.pt --modes score,live --device cuda
      vadgpu bench score --dataset ped2 --root PED2 --videos 04 --modes score --model runs/x/model.onnx
    """
    from vadgpu.bench.score import ScoreBenchSettings, run_score_bench
    from vadgpu.bench.score_report import format_markdown, format_table
    from vadgpu.device import resolve_device
    from vadgpu.io import atomic_write_json
    from vadgpu.outputs import check_output_file

    settings = ScoreBenchSettings(
        checkpoint=None if checkpoint is None else str(checkpoint),
        model_file=None if model_file is None else str(model_file), dataset=name,
        root=None if root is None else str(root), variant=variant,
        videos=_comma_list(videos), inputs=tuple(str(p) for p in inputs), modes=_comma_list(modes), device=device,
        loader=loader, batch_size=batch_size, repeats=repeats, warmup=not no_warmup, score_boxes=score_boxes,
        eval_boxes=None if eval_boxes is None else str(eval_boxes), precision=precision)
    if out is None:
        label = name or (Path(inputs[0]).stem if inputs else "score")
        arithmetic = ("-onnx" if model_file is not None else "" if precision == DEFAULT_PRECISION
                      else f"-{precision}")
        out = Path("benchmarks") / "results" / f"score-{label}-{resolve_device(device).type}{arithmetic}.json"
    sources = [(root, "the dataset root")] if root is not None else []
    sources += [(p, "an input") for p in inputs] + ([(model_file, "the model")] if model_file is not None else [])
    check_output_file(out, "--out", sources=sources, kinds=("json",), what="a benchmark result")  # before measuring
    result = run_score_bench(settings, echo=(lambda line: None) if no_progress else lambda line: click.echo(line,
                                                                                                          err=True))
    click.echo(format_table(result))
    if markdown:
        click.echo("\n" + format_markdown(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_json(out, result)
    except OSError as exc:
        raise VadgpuError(f"--out {out}: cannot write ({exc.strerror})") from exc
    click.echo(f"wrote {out}")
