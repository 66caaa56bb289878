"""`vadgpu eval` (a checkpoint on a dataset's labelled test split) and `vadgpu score` (one unlabelled video)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vadgpu.cli.options import CHECKPOINT, PRECISION
from vadgpu.evaluation.authors_protocol import NAME as AUTHORS
from vadgpu.evaluation.authors_protocol import PROTOCOL_NAMES
from vadgpu.scoring.protocol import GAUSSIAN_SIGMA, MEDIAN_WINDOW, NORMALISATIONS, SMOOTHINGS, Protocol
from vadgpu.scoring.kinds import DEFAULT_SCORE, MIX_WEIGHT, OBJECT_SCORE, SCORE_KINDS
from vadgpu.scoring.location import TUBE_NORMS
from vadgpu.pipelines.choose import LOADERS
from vadgpu.live.events import DEFAULT_MERGE_GAP, LIVE_WINDOW
from vadgpu.live.reader import DROP_CHOICES


# The options only live scoring takes.
LIVE_OPTIONS = ("threshold", "threshold_off", "min_duration", "merge_gap", "false_alarms_per_hour", "webhook", "mqtt",
                "save_clips", "video_out", "max_frames", "drop_frames")
# The options a named protocol (--protocol) sets itself.
SCORING_OPTIONS = ("score", "mix_weight", "norm", "smooth", "window", "sigma", "drop_edges", "tube_norm",
                   "appearance", "appearance_weight")
NORM_HELP = {"video": "min-max per video (the papers)", "train": "z-score with training-set statistics",
             "none": "the smoothed raw score"}


NORM_DEFAULT = "video for frame models, none for object models (their tube scores are normalised by place already)"


def _protocol_options(norms: tuple[str, ...], norm_default: str = NORM_DEFAULT):
    """The options both commands share: score, smoothing, normalisation, edges, batch size, device, precision,
    progress; `norm_default` says what --norm defaults to for the command."""
    options = [
        click.option("--score", "score", type=click.Choice(SCORE_KINDS), default=None,
                     help="Per-frame (object mode: per-tube) score: DDL's patch-max, negated PSNR, the dual-path "
                     f"mix, or the mean squared error. [default: {DEFAULT_SCORE} for frame models, {OBJECT_SCORE} "
                     "for object models]"),
        click.option("--mix-weight", type=float, default=MIX_WEIGHT, show_default=True,
                     help="--score mixed: weight of patch-max against the global MSE."),
        click.option("--norm", type=click.Choice(norms), default=None,
                     help="; ".join(f"{n}: {NORM_HELP[n]}" for n in norms) + f". [default: {norm_default}]"),
        click.option("--tube-norm", type=click.Choice(TUBE_NORMS), default=None,
                     help="Object models: location = each tube's score as a z-score (of its log) against the "
                     "training tubes in the same cell of the calibration record's grid over the frame (cells "
                     "about 1.25 tube windows a side), so that near and far objects share one scale; none = the "
                     "raw tube score. [default: location]"),
        click.option("--smooth", type=click.Choice(SMOOTHINGS), default="median", show_default=True,
                     help="Temporal smoothing: median (DDL), gaussian (dual-path code) or none."),
        click.option("--window", type=int, default=None,
                     help=f"--smooth median: window in frames (odd). [default: {MEDIAN_WINDOW}; live scoring: "
                     f"{LIVE_WINDOW}, a trailing median]"),
        click.option("--sigma", type=float, default=GAUSSIAN_SIGMA, show_default=True,
                     help="--smooth gaussian: standard deviation in frames."),
        click.option("--drop-edges", is_flag=True,
                     help="Leave out the first and last T//2 frames of each video (DDL's reference code)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Clips per batch."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        PRECISION,
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
    window = MEDIAN_WINDOW if kw["window"] is None else kw["window"]
    return Protocol(score=kw["score"], norm=kw["norm"], smooth=kw["smooth"], window=window, sigma=kw["sigma"],
                    drop_edges=kw["drop_edges"], mix_weight=kw["mix_weight"], tube_norm=kw["tube_norm"],
                    appearance=None if kw.get("appearance") is None else str(kw["appearance"]),
                    appearance_weight=kw.get("appearance_weight", 1.0))


@click.command("eval")
@click.option("--run", type=click.Path(path_type=Path, file_okay=False),
              help="Run folder: evaluates RUN/model.pt (RUN/checkpoints/last.pt while the run is unfinished), "
              "writes RUN/eval/.")
@click.option("--checkpoint", type=CHECKPOINT,
              help="A checkpoint file instead (or shipped weights by name: ped2-ddl).")
@click.option("--dataset", help="Catalog name (default: the dataset the checkpoint was trained on).")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root (default: from the checkpoint).")
@click.option("--variant", help="Dataset variant (default: from the checkpoint).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Output folder (default RUN/eval).")
@click.option("--boxes", type=click.Path(path_type=Path, dir_okay=False), help="Object models: box cache holding "
              "the test split (default: the training run's, else the dataset's background-subtraction cache). An "
              "object model cannot go without ('none' is an error); a frame model reads no boxes.")
@click.option("--protocol", "protocol_name", type=click.Choice(PROTOCOL_NAMES), default="vadgpu",
              show_default=True, help=f"vadgpu: the options below; {AUTHORS}: the dual-path authors' scoring for the "
              "dataset (0.6 x one-grid patch-max + 0.4 x global MSE on Ped2 and Avenue, per-video min-max then a "
              "gaussian of sigma 32 / 20 / 10 frames, only frames with a whole clip; see metrics.json), which "
              "sets every scoring option itself.")
@click.option("--appearance", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Object models: Darknet YOLO weights (its .cfg beside them, e.g. yolov3-tiny.weights + "
              "yolov3-tiny.cfg) whose features say what each tube's object is: a tube's score becomes its "
              "location-normalised error plus --appearance-weight times the z-score of its distance to the "
              "nearest training object. Features are computed once per box cache and split (OpenCV DNN, CPU) and kept "
              "in the dataset's cache folder.")
@click.option("--appearance-weight", type=float, default=1.0, show_default=True,
              help="--appearance: weight of the appearance z-score.")
@_protocol_options(NORMALISATIONS)
@click.pass_context
def eval_command(ctx, run, checkpoint, dataset, root, variant, out, boxes, protocol_name, **kw) -> None:
    """Evaluate a checkpoint on a dataset's test split: frame-level micro/macro AUC, EER, AP.

    Writes metrics.json (with the whole protocol), scores.csv, curves/VIDEO.png and roc.png, and prints a table.
    """
    from vadgpu.checkpoint import default_eval_out, shipped_name
    from vadgpu.evaluation.report import format_table
    from vadgpu.evaluation.runner import evaluate, resolve_checkpoint
    from vadgpu.folder_lock import hold_folder
    from vadgpu.outputs import check_eval_out

    protocol = _protocol(kw)
    if protocol_name != "vadgpu":
        given = [f"--{name.replace('_', '-')}" for name in SCORING_OPTIONS
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--protocol {protocol_name} sets the scoring itself; leave out {', '.join(given)}")
        protocol = protocol_name  # resolved for the dataset and model in evaluate()
    path, run_dir = resolve_checkpoint(run, checkpoint)
    out = out if out is not None else default_eval_out(checkpoint, run_dir)
    check_eval_out(out, _dataset_root(path, dataset, root))  # before the lock creates the folder
    if checkpoint is not None and shipped_name(checkpoint) is not None:
        click.echo(f"evaluating the shipped weights {checkpoint}; writing to {out}", err=True)
    with hold_folder(out, "vadgpu eval", tidy=("curves", "objects")):  # one evaluation per output folder
        result = evaluate(path, dataset=dataset, root=root, variant=variant, protocol=protocol,
                          batch_size=kw["batch_size"], device=kw["device"], out=out, run_dir=run_dir,
                          progress=not kw["no_progress"], boxes=boxes, loader=kw["loader"],
                          precision=kw["precision"])
    counts = {v["name"]: v["scored_frames"] for v in result.record["videos"]}
    click.echo(format_table(result.metrics, counts))
    objects = ", objects/" if "objects" in result.record else ""
    click.echo(f"\nwrote {result.out}/metrics.json, scores.csv, roc.png, curves/{objects}")


def _dataset_root(checkpoint: Path, dataset: str | None, root: Path | None) -> str | None:
    """The dataset root `vadgpu eval` will read: --root, else the root of the checkpoint's training config (for
    its own dataset), else None."""
    from vadgpu.checkpoint import load_checkpoint

    if root is not None:
        return str(root)
    config = load_checkpoint(checkpoint).get("config") or {}
    return config.get("root") if dataset is None or dataset == config.get("dataset") else None


@click.command("score")
@click.argument("source", metavar="SOURCE")
@click.option("--checkpoint", type=CHECKPOINT,
              help="The trained model: RUN/model.pt (or a checkpoint such as RUN/checkpoints/last.pt), or the "
              "name of weights shipped with vadgpu (ped2-ddl).")
@click.option("--model", "model_file", type=click.Path(path_type=Path, dir_okay=False),
              help="An ONNX file from `vadgpu export` instead of --checkpoint (onnxruntime on the CPU).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output folder (default ./NAME-scores).")
@click.option("--heatmap-mp4", is_flag=True, help="Files: also write NAME-heatmap.mp4. Frame models: each source "
              "frame beside its reconstruction-error heatmap; object models: the frame with its scored boxes (the "
              "best one red) beside the boxes filled by their tube scores, with a colour bar. Under both, the frame "
              "number and the raw score curve so far. Live scoring writes --video-out instead.")
@click.option("--boxes", type=click.Path(path_type=Path, dir_okay=False), help="Object models, files: a box cache "
              "whose test split holds INPUT (default: background subtraction runs over INPUT first, cached). An "
              "object model cannot go without ('none' is an error); a frame model reads no boxes. Live scoring "
              "finds the boxes on the stream itself.")
@click.option("--live", is_flag=True, help="Score a local file frame by frame as if it were a stream (what a "
              "URL, a device or - always get).")
@click.option("--threshold", type=float, help="Live: the alarm's on-threshold on the normalised score [default "
              "with --norm train: the 99.5th percentile of the training videos' scores; else no alarms].")
@click.option("--threshold-off", type=float, help="Live: an open event goes on while the score stays at or above "
              "this (hysteresis; at most the on-threshold) [default: the on-threshold].")
@click.option("--min-duration", type=click.IntRange(min=1), default=1, show_default=True,
              help="Live: frames at or above the threshold before the alarm goes on (a shorter flicker is no event).")
@click.option("--merge-gap", type=click.IntRange(min=0), default=DEFAULT_MERGE_GAP, show_default=True,
              help="Live: a dip below the threshold of at most this many frames does not split an event (its end is "
              "reported that many frames later).")
@click.option("--false-alarms-per-hour", type=click.FloatRange(min=0), help="Live: instead of --threshold, the "
              "lowest on-threshold that gives at most RATE events per hour on the training videos (the model file's "
              "scores, played at the stream's frame rate, else 25 fps), under the same event rules.")
@click.option("--webhook", metavar="URL", help="Live: POST each event as JSON to URL when its alarm goes on and when "
              "it ends (a background thread with a bounded queue: a slow or dead endpoint never holds up scoring; "
              "timeouts, 3 retries, dropped deliveries counted).")
@click.option("--mqtt", metavar="HOST[:PORT]/TOPIC", help="Live: publish each event as JSON to an MQTT broker "
              "(QoS 1; needs paho-mqtt: pip install 'vadgpu[alarms]').")
@click.option("--save-clips", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Live: write each event to OUT/clips/event-FRAME.mp4 (FRAME: the alarm's), from SECONDS before "
              "the alarm to SECONDS after the event's end, with the boxes and scores drawn.")
@click.option("--video-out", type=click.Path(path_type=Path, dir_okay=False),
              help="Live: write the frames annotated with their score and alarms to this MP4, as it goes.")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Live: how many times in a row a dropped stream is reopened before it is an error.")
@click.option("--retry-delay", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Live: seconds between reopening attempts.")
@click.option("--max-frames", type=click.IntRange(min=1), help="Live: stop after this many frames.")
@click.option("--drop-frames", type=click.Choice(DROP_CHOICES), default="auto", show_default=True,
              help="Live: when scoring falls behind, drop the oldest frame waiting to be scored (counted; the clips "
              "restart after it) instead of holding the source up. auto: on a URL or a device (a camera does not "
              "wait); always: also on stdin (a camera piped in); never: score every frame. A file is never dropped "
              "from.")
@_protocol_options(("video", "train", "none"), norm_default=f"{NORM_DEFAULT}; live scoring (a stream, or --live) "
                   "takes train or none, default train")
@click.pass_context
def score_command(ctx, source, checkpoint, model_file, out, heatmap_mp4, boxes, live, threshold, threshold_off,
                  min_duration, merge_gap, false_alarms_per_hour, webhook, mqtt, save_clips, video_out, retries,
                  retry_delay, max_frames, drop_frames, **kw) -> None:
    """Score a video: a file or frame folder (scores.csv, a score-curve PNG, optional heatmap MP4), or live
    (SOURCE rtsp://..., http(s)://..., /dev/videoN, - for stdin, or a file with --live): every frame's score as
    soon as its clip is complete, a trailing median, the training videos' normalisation, alarms under the event
    rules (--threshold or --false-alarms-per-hour, --threshold-off, --min-duration, --merge-gap) to events.jsonl,
    the terminal, --webhook, --mqtt and --save-clips clips, optional annotated --video-out; Ctrl-C stops and
    closes the files. From Python: vadgpu.Detector."""
    from vadgpu.folder_lock import hold_folder
    from vadgpu.live.events import AlarmOptions
    from vadgpu.live.stream import is_live_source

    if live or is_live_source(source):
        if ctx.get_parameter_source("norm") == click.core.ParameterSource.DEFAULT:
            kw["norm"] = "train"  # min-max per video cannot be live
        if kw["window"] is None:
            kw["window"] = LIVE_WINDOW
        if heatmap_mp4:
            raise click.UsageError("--heatmap-mp4 is for files; live scoring writes --video-out")
        alarms = AlarmOptions(threshold, threshold_off, min_duration, merge_gap, false_alarms_per_hour)
        return _score_live(source, checkpoint, model_file, out, alarms, video_out, retries, retry_delay,
                           max_frames, drop_frames, boxes,
                           {"webhook": webhook, "mqtt": mqtt, "save_clips": save_clips}, kw)
    live_only = [f"--{name.replace('_', '-')}" for name in LIVE_OPTIONS
                 if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if live_only:
        raise click.UsageError(f"{', '.join(live_only)}: for live scoring (a stream, or --live)")
    from vadgpu.evaluation.runner import default_score_out, score_input
    from vadgpu.outputs import check_score_out

    path = Path(source)
    if not path.exists():
        raise click.BadParameter(f"{source} does not exist (a stream is rtsp://..., http(s)://..., /dev/videoN "
                                 "or -)", param_hint="SOURCE")
    out = check_score_out(out if out is not None else default_score_out(path), path, heatmap_mp4)  # before the lock
    with hold_folder(out, "vadgpu score"):
        result = score_input(path, checkpoint, model_file=model_file, out=out, protocol=_protocol(kw),
                             heatmap_mp4=heatmap_mp4, batch_size=kw["batch_size"], device=kw["device"],
                             progress=not kw["no_progress"], boxes=boxes, loader=kw["loader"],
                             precision=kw["precision"])
    top = int(result.video.frames[result.video.score.argmax()])
    click.echo(f"scored {result.video.frames.size} frames of {source}; highest score at frame {top}")
    for path in (result.csv, result.curve, result.objects, result.heatmap):
        if path is not None:
            click.echo(f"wrote {path}")


def _score_live(source, checkpoint, model_file, out, alarms, video_out, retries, retry_delay, max_frames, drop_frames,
                boxes, notify, kw) -> None:
    from vadgpu.detector import Detector
    from vadgpu.errors import VadgpuError
    from vadgpu.folder_lock import hold_folder
    from vadgpu.live.notify import Mqtt, Notifiers, Webhook
    from vadgpu.live.scoring import score_stream
    from vadgpu.live.stream import source_kind, source_name
    from vadgpu.outputs import check_live_outs

    if (checkpoint is None) == (model_file is None):
        raise VadgpuError("give exactly one of --checkpoint FILE and --model FILE.onnx")
    detector = Detector.load(model_file or checkpoint, kw["device"], protocol=_protocol(kw), norm=kw["norm"],
                             threshold=alarms.threshold, threshold_off=alarms.threshold_off,
                             min_duration=alarms.min_duration, merge_gap=alarms.merge_gap,
                             false_alarms_per_hour=alarms.false_alarms_per_hour, precision=kw["precision"])
    protocol = detector.protocol
    out = out if out is not None else Path.cwd() / f"{source_name(source)}-live"
    check_live_outs(out, video_out, source, source_kind(source) == "file")  # before the lock creates the folder
    cfg = detector.model.config
    with hold_folder(out, "vadgpu score"):
        click.echo(f"scoring {source} live: {cfg.architecture} {cfg.channels} x {cfg.temporal} x {cfg.size[0]} x "
                   f"{cfg.size[1]}, each score {detector.delay_frames} frame(s) after its frame; "
                   f"{protocol.score}, trailing {protocol.smooth}"
                   + (f" over {protocol.window}" if protocol.smooth == "median" else "") + f", norm {kw['norm']}; "
                   "Ctrl-C stops", err=True)
        notifiers = Notifiers(([Webhook(notify["webhook"])] if notify["webhook"] else [])
                              + ([Mqtt(notify["mqtt"])] if notify["mqtt"] else []))
        try:
            summary = score_stream(source, detector, out=out, video_out=video_out, boxes=boxes,
                                   save_clips=notify["save_clips"], retries=retries,
                                   retry_delay=retry_delay, max_frames=max_frames, drop_frames=drop_frames,
                                   echo=click.echo,
                                   on_event=notifiers)
        finally:
            for line in notifiers.close():
                click.echo(line, err=True)
    if summary.threshold is not None:
        rules = detector.rules(summary.fps)
        off = "" if rules.threshold_off is None else f" (off {rules.threshold_off:.3f})"
        click.echo(f"threshold {summary.threshold:.3f}{off}; {len(summary.events)} event(s)")
    delay = f"{summary.delay_frames} frame(s)" + ("" if summary.delay_ms is None else f" = {summary.delay_ms:.0f} ms")
    click.echo(f"{'interrupted after' if summary.interrupted else 'scored'} {summary.frames} frames in "
               f"{summary.seconds:.1f} s ({summary.frames_per_s:.1f} frames/s); per frame {summary.compute_ms_mean:.1f}"
               f" ms (95th percentile {summary.compute_ms_p95:.1f} ms) plus the clip delay of {delay}")
    if summary.dropped_frames:
        click.echo(f"dropped {summary.dropped_frames} frame(s) to keep up with the stream (scoring fell behind; the "
                   "gaps show in the frame column of scores.csv)")
    for path in (out / "scores.csv", out / "events.jsonl", video_out):
        if path is not None and Path(path).exists():
            click.echo(f"wrote {path}")
    clips = sorted((out / "clips").glob("event-*.mp4")) if notify["save_clips"] else []
    if clips:
        click.echo(f"wrote {len(clips)} event clip(s) in {out / 'clips'}")
    if summary.exit_code is not None:  # 130 after SIGINT, 143 after SIGTERM, as an interrupted command exits
        sys.exit(summary.exit_code)


@click.command("calibrate")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="An object model's weights file (RUN/model.pt), or shipped weights by name (then give --out).")
@click.option("--appearance", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Darknet YOLO weights (its .cfg beside them, e.g. yolov3-tiny.weights + yolov3-tiny.cfg): the "
              "backbone whose box features add the appearance term; its weights are stored in the record. "
              "[default: no appearance term]")
@click.option("--appearance-weight", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Weight of the appearance z-score in a tube's score.")
@click.option("--dataset", help="Catalog name of the training videos (default: the dataset it was trained on).")
@click.option("--root", type=click.Path(path_type=Path), help="Dataset root (default: from the checkpoint).")
@click.option("--variant", help="Dataset variant (default: from the checkpoint).")
@click.option("--boxes", type=click.Path(path_type=Path, dir_okay=False), help="Box cache holding the training "
              "split (default: the training run's, else the dataset's background-subtraction cache).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the calibrated weights here [default: replace --checkpoint in place, atomically].")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Clips per batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--loader", type=click.Choice(LOADERS), default="auto", show_default=True,
              help="Clip loader: dali, torch (OpenCV decoding) or auto (dali where installed).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def calibrate_command(checkpoint, appearance, appearance_weight, dataset, root, variant, boxes, out, batch_size,
                      device, loader, no_progress) -> None:
    """Fit an object model's calibration record on its training videos and store it in the weights file.

    The record holds what every tube score is measured against (the training tubes' statistics by place, and with
    --appearance the training objects' features and the backbone that makes them), so that `vadgpu score`, live
    scoring, `vadgpu eval` and `vadgpu export` score with it and need nothing else.
    """
    from vadgpu.evaluation.calibrate import calibrate_file

    path, calibration = calibrate_file(checkpoint, appearance=appearance, weight=appearance_weight,
                                       dataset=dataset, root=root, variant=variant, boxes=boxes, out=out,
                                       device=device, batch_size=batch_size, progress=not no_progress,
                                       loader=loader)
    click.echo(f"tube score: {calibration.terms()}")
    click.echo(f"wrote {path}")
