"""`vadgpu eval` (a checkpoint on a dataset's labelled test split) and `vadgpu score` (one unlabelled video)."""

from __future__ import annotations

from pathlib import Path

import click

from vadgpu.evaluation.protocol import GAUSSIAN_SIGMA, MEDIAN_WINDOW, NORMALISATIONS, SMOOTHINGS, Protocol
from vadgpu.evaluation.scores import DEFAULT_SCORE, MIX_WEIGHT, OBJECT_SCORE, SCORE_KINDS
from vadgpu.pipelines.choose import LOADERS


NORM_HELP = {"video": "min-max per video (the papers)", "train": "z-score with training-set statistics",
             "none": "the smoothed raw score"}


def _protocol_options(norms: tuple[str, ...]):
    """The options both commands share: score, smoothing, normalisation, edges, batch size, device, progress."""
    options = [
        click.option("--score", "score", type=click.Choice(SCORE_KINDS), default=None,
                     help="Per-frame (object mode: per-tube) score: DDL's patch-max, negated PSNR, the dual-path "
                     f"mix, or the mean squared error. [default: {DEFAULT_SCORE} for frame models, {OBJECT_SCORE} "
                     "for object models]"),
        click.option("--mix-weight", type=float, default=MIX_WEIGHT, show_default=True,
                     help="--score mixed: weight of patch-max against the global MSE."),
        click.option("--norm", type=click.Choice(norms), default="video", show_default=True,
                     help="; ".join(f"{n}: {NORM_HELP[n]}" for n in norms) + "."),
        click.option("--smooth", type=click.Choice(SMOOTHINGS), default="median", show_default=True,
                     help="Temporal smoothing: median (DDL), gaussian (dual-path code) or none."),
        click.option("--window", type=int, default=MEDIAN_WINDOW, show_default=True,
                     help="--smooth median: window in frames (odd)."),
        click.option("--sigma", type=float, default=GAUSSIAN_SIGMA, show_default=True,
                     help="--smooth gaussian: standard deviation in frames."),
        click.option("--drop-edges", is_flag=True,
                     help="Leave out the first and last T//2 frames of each video (DDL's reference code)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Clips per batch."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--loader", type=click.Choice(LOADERS), default="auto", show_default=True,
                     help="Clip loader: dali, torch (OpenCV decoding) or auto (dali where installed)."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
    ]

    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _protocol(kw: dict) -> Protocol:
    return Protocol(score=kw["score"], norm=kw["norm"], smooth=kw["smooth"], window=kw["window"], sigma=kw["sigma"],
                    drop_edges=kw["drop_edges"], mix_weight=kw["mix_weight"])


@click.command("eval")
@click.option("--run", type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: evaluates RUN/model.pt (RUN/checkpoints/last.pt while the run is unfinished), "
              "writes RUN/eval/.")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), help="A checkpoint file instead.")
@click.option("--dataset", help="Catalog name (default: the dataset the checkpoint was trained on).")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root (default: from the checkpoint).")
@click.option("--variant", help="Dataset variant (default: from the checkpoint).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Output folder (default RUN/eval).")
@click.option("--boxes", type=click.Path(path_type=Path, dir_okay=False), help="Object models: box cache holding "
              "the test split (default: the training run's, else the dataset's background-subtraction cache). An "
              "object model cannot go without ('none' is an error); a frame model reads no boxes.")
@_protocol_options(NORMALISATIONS)
def eval_command(run, checkpoint, dataset, root, variant, out, boxes, **kw) -> None:
    """Evaluate a checkpoint on a dataset's test split: frame-level micro/macro AUC, EER, AP.

    Writes metrics.json (with the whole protocol), scores.csv, curves/VIDEO.png and roc.png, and prints a table.
    """
    from vadgpu.checkpoint import EVAL_DIR
    from vadgpu.evaluation.report import format_table
    from vadgpu.evaluation.runner import evaluate, resolve_checkpoint
    from vadgpu.folder_lock import hold_folder

    protocol = _protocol(kw)
    path, run_dir = resolve_checkpoint(run, checkpoint)
    out = out if out is not None else run_dir / EVAL_DIR
    with hold_folder(out, "vadgpu eval", tidy=("curves", "objects")):  # one evaluation per output folder
        result = evaluate(path, dataset=dataset, root=root, variant=variant, protocol=protocol,
                          batch_size=kw["batch_size"], device=kw["device"], out=out, run_dir=run_dir,
                          progress=not kw["no_progress"], boxes=boxes, loader=kw["loader"])
    counts = {v["name"]: v["scored_frames"] for v in result.record["videos"]}
    click.echo(format_table(result.metrics, counts))
    objects = ", objects/" if "objects" in result.record else ""
    click.echo(f"\nwrote {result.out}/metrics.json, scores.csv, roc.png, curves/{objects}")


@click.command("score")
@click.argument("source", metavar="INPUT", type=click.Path(path_type=Path, exists=True))
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The trained model: RUN/model.pt (or a checkpoint such as RUN/checkpoints/last.pt).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output folder (default ./NAME-scores).")
@click.option("--heatmap-mp4", is_flag=True, help="Also write NAME-heatmap.mp4: each source frame beside its "
              "reconstruction-error heatmap, the frame number and the raw score curve so far under them "
              "(frame models).")
@click.option("--boxes", type=click.Path(path_type=Path, dir_okay=False), help="Object models: a box cache whose "
              "test split holds INPUT (default: background subtraction runs over INPUT first, cached). An object "
              "model cannot go without ('none' is an error); a frame model reads no boxes.")
@_protocol_options(("video", "none"))
def score_command(source, checkpoint, out, heatmap_mp4, boxes, **kw) -> None:
    """Score one unlabelled video file or frame folder: per-frame scores.csv, a score-curve PNG, optional MP4."""
    from vadgpu.evaluation.runner import default_score_out, score_input
    from vadgpu.folder_lock import hold_folder

    out = out if out is not None else default_score_out(source)
    with hold_folder(out, "vadgpu score"):
        result = score_input(source, checkpoint, out=out, protocol=_protocol(kw), heatmap_mp4=heatmap_mp4,
                             batch_size=kw["batch_size"], device=kw["device"], progress=not kw["no_progress"],
                             boxes=boxes, loader=kw["loader"])
    top = int(result.video.frames[result.video.score.argmax()])
    click.echo(f"scored {result.video.frames.size} frames of {source}; highest score at frame {top}")
    for path in (result.csv, result.curve, result.heatmap):
        if path is not None:
            click.echo(f"wrote {path}")
