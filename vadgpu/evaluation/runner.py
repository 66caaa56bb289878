"""Run a trained model over videos: `evaluate` (a dataset's labelled test split) and `score_input` (one video).

Both build the model's scorer (scoring/: a FrameScorer for frame models; for object models a TubeScorer from the
calibration record, scoring/calibration.py), run it over the test-order loader (scoring/run.py: every frame
exactly once as a centre frame, edges replicated, scores kept on the device until the end), then apply the
protocol (scoring/protocol.py) per video. The model runs in eval mode under torch.inference_mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vadgpu import __version__
from vadgpu.bench.stages import stage
from vadgpu.checkpoint import (checkpoint_dir, checkpoint_record, default_eval_out, find_run_model,
                               load_checkpoint)
from vadgpu.data.types import PreparedVideo
from vadgpu.device import describe, resolve_device
from vadgpu.errors import VadgpuError
from vadgpu.evaluation.metrics import FrameMetrics, frame_metrics
from vadgpu.evaluation.report import (VideoScores, safe_name, write_curves, write_eval_outputs, write_object_csvs,
                                      write_scores_csv)
from vadgpu.scoring.frames import FrameScorer
from vadgpu.scoring.kinds import patch_size_for
from vadgpu.scoring.protocol import (Protocol, TrainStats, apply_protocol, edge_frames, scored_frames)
from vadgpu.scoring.run import DEFAULT_BATCH_SIZE, score_videos
from vadgpu.scoring.train_scores import frame_stats
from vadgpu.outputs import check_eval_out, check_score_out
from vadgpu.precision import DEFAULT_PRECISION, check_precision

log = logging.getLogger("vadgpu")

# Where training statistics came from (metrics.json)
FROM_FILE = "the weights file (scored at the end of training)"
FROM_PASS = "a scoring pass over the training videos"


@dataclass
class EvalResult:
    out: Path
    metrics: FrameMetrics
    videos: list[VideoScores]
    record: dict  # the content of metrics.json


@dataclass
class ScoreResult:
    out: Path
    video: VideoScores
    csv: Path
    curve: Path
    heatmap: Path | None
    objects: Path | None = None  # object models: every scored box (objects.csv)


def resolve_checkpoint(run: str | Path | None, checkpoint: str | Path | None) -> tuple[Path, Path]:
    """(checkpoint file, run folder) from `--run DIR` or `--checkpoint FILE` (exactly one of them)."""
    if (run is None) == (checkpoint is None):
        raise VadgpuError("give exactly one of --run DIR and --checkpoint FILE")
    if run is not None:
        return find_run_model(run), Path(run)
    path = Path(checkpoint)
    from vadgpu.weights import shipped_weights

    if not path.is_file() and shipped_weights(path) is not None:  # shipped weights: no run folder of their own
        return path, default_eval_out(checkpoint, Path.cwd())
    # DIR/checkpoints/last.pt belongs to run DIR; a loose checkpoint file gets its outputs beside it.
    run_dir = path.parent.parent if path.parent.name == checkpoint_dir("").name else path.parent
    return path, run_dir


def load_model(ckpt: dict, device: torch.device) -> torch.nn.Module:
    """The checkpoint's model on `device`, in eval mode."""
    from vadgpu.models.registry import model_from_checkpoint

    return model_from_checkpoint(ckpt).to(device).eval()


def _score_label(protocol: Protocol, objects: bool = False) -> str:
    norm = {"video": "min-max per video", "train": "z-score, training statistics", "none": "raw"}[protocol.norm]
    if objects and protocol.tube_norm == "location":  # tube scores are z-scores already (by place, + appearance)
        return f"{protocol.score} z-score by place" + ("" if protocol.norm == "none" else f" ({norm})")
    return f"{protocol.score} score ({norm})"


def _apply(videos: Sequence[PreparedVideo], raw: list[np.ndarray], protocol: Protocol, temporal: int,
           stats: TrainStats | None, labelled: bool) -> list[VideoScores]:
    result = []
    for video, scores in zip(videos, raw):
        keep = scored_frames(video.num_frames, temporal, protocol, video.name)
        labels = None
        if labelled:
            labels = np.asarray(video.labels).reshape(-1)
            if labels.size != video.num_frames:
                raise VadgpuError(f"test video {video.name}: {labels.size} labels for {video.num_frames} frames")
            labels = labels[keep].astype(np.int64)
        result.append(VideoScores(name=video.name, num_frames=video.num_frames,
                                  frames=np.arange(video.num_frames)[keep], raw=scores[keep],
                                  score=apply_protocol(scores[keep], protocol, stats), labels=labels))
    return result


def dataset_defaults(checkpoint, config: dict, dataset: str | None, root, variant: str | None):
    """(dataset, root, variant, whether it is the training dataset): the training config's root and variant are
    defaults only for that same dataset; a clear error when neither the options nor the config name one."""
    trained_on = dataset is None or dataset == config.get("dataset")
    dataset = dataset or config.get("dataset")
    root = root if root is not None or not trained_on else config.get("root")
    variant = variant if variant is not None or not trained_on else config.get("variant")
    if not dataset or not root:
        raise VadgpuError(f"checkpoint {checkpoint} records no dataset/root in its config; pass --dataset and --root")
    return dataset, root, variant, trained_on


def _checkpoint_record(path: Path, ckpt: dict) -> dict:
    return {**checkpoint_record(path), "model_name": ckpt.get("model_name"), "epoch": ckpt.get("epoch"),
            "step": ckpt.get("step"), "vadgpu_version": ckpt.get("vadgpu_version")}


def named_videos(videos: Sequence[PreparedVideo], names: Sequence[str], where: str) -> list[PreparedVideo]:
    """The test videos named `names`, in the split's order; a name the split lacks is a clear error."""
    known = {v.name for v in videos}
    missing = [n for n in names if n not in known]
    if missing:
        raise VadgpuError(f"{where}: no test video named {', '.join(missing)} (it has {', '.join(sorted(known))})")
    wanted = set(names)
    return [v for v in videos if v.name in wanted]


def evaluate(
    checkpoint: str | Path,
    *,
    dataset: str | None = None,
    root: str | Path | None = None,
    variant: str | None = None,
    protocol: Protocol | str = Protocol(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "auto",
    out: str | Path | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    boxes: str | Path | None = None,
    loader: str = "auto",
    videos: Sequence[str] | None = None,
    precision: str = DEFAULT_PRECISION,
) -> EvalResult:
    """Score a checkpoint on a dataset's test split and write metrics.json, scores.csv and the plots.

    dataset/root/variant default to the training config stored in the checkpoint; `out` defaults to
    RUN/eval (RUN = `run_dir`, or the run folder the checkpoint lies in). An object model reads the test boxes
    from `boxes`, else from the training run's box cache, else from the dataset's background-subtraction cache
    (made when missing), and also writes objects/VIDEO.csv: every scored box of every frame, best first.
    `loader`: the clip loader (dali, torch or auto; pipelines/choose.py). `protocol`: a Protocol, or the name of
    one whose fields depend on the dataset and model ("dualpath-authors": authors_protocol.py). `videos`: only
    these test videos (by name), e.g. for a benchmark. `precision`: the networks' arithmetic, fp32 or bf16
    (vadgpu/precision.py; metrics.json records it).
    """
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared

    checkpoint = Path(checkpoint)
    device = resolve_device(device)
    precision = check_precision(precision, device)
    loader = _resolve_loader(loader)
    with stage("model load"):
        ckpt = load_checkpoint(checkpoint, map_location="cpu")
    config = ckpt.get("config") or {}
    boxes = boxes_option(boxes, ckpt, checkpoint, "the training run's box cache, else the dataset's background-"
                         "subtraction cache, made once")
    dataset, root, variant, trained_on = dataset_defaults(checkpoint, config, dataset, root, variant)
    if out is None:
        out = default_eval_out(checkpoint, run_dir if run_dir is not None else resolve_checkpoint(None, checkpoint)[1])
    out = check_eval_out(out, root)

    with stage("prepare"):
        data = open_dataset(dataset, root, variant=variant)
        prepared = load_prepared(data, device, progress=progress, loader=loader)
    test = list(prepared.test)
    if videos is not None:
        test = named_videos(test, videos, f"dataset {dataset} at {root}")
    if not test:
        raise VadgpuError(f"dataset {dataset} at {root} has no test videos")
    unlabelled = [v.name for v in test if v.labels is None]
    if unlabelled:
        raise VadgpuError(f"dataset {dataset} at {root}: test videos without labels: {', '.join(unlabelled)}")

    with stage("model load"):
        model = load_model(ckpt, device)
    if isinstance(protocol, str):
        from vadgpu.evaluation.authors_protocol import named_protocol

        protocol = named_protocol(protocol, data.name, model.config)
    protocol = protocol.for_model(model.config)
    temporal = model.config.temporal
    train = list(prepared.train)
    objects_record = None
    stats, stats_source = None, None
    if model.config.clips == "objects":
        from vadgpu.evaluation.calibrate import eval_calibration
        from vadgpu.objects.tubes import FrameBoxes

        if boxes is None and config.get("boxes") and Path(config["boxes"]).is_file() and trained_on:
            boxes = config["boxes"]
        if boxes is None:
            from vadgpu.objects.default_boxes import ensure_box_cache

            with stage("boxes"):
                # the whole test split: the dataset's one default cache, whichever videos are scored
                boxes = ensure_box_cache(data, {"train": train, "test": list(prepared.test)}, progress=progress)
        calibration, calibration_source = eval_calibration(ckpt, checkpoint, model, protocol, train, boxes,
                                                           data.name, variant, device, batch_size, progress,
                                                           loader)
        with stage("boxes"):
            frame_boxes = FrameBoxes.load(boxes, test, split="test", dataset=data.name)
        scorer = calibration.tube_scorer(model, frame_boxes, protocol, device, precision)
        if protocol.norm == "train":
            stats = frame_stats(calibration.train_frame_scores(), protocol, temporal, calibration.names, checkpoint)
            stats_source = calibration_source
    else:
        scorer = FrameScorer(protocol, precision=precision)
        if protocol.norm == "train":
            from vadgpu.scoring.train_scores import raw_train_scores

            stored = ckpt.get("train_scores") if _fits(ckpt.get("train_scores"), data.name, root, variant) else None
            frame_scores, stats_source = raw_train_scores(stored, protocol), FROM_FILE
            names = (stored or {}).get("names")
            if frame_scores is None:
                frame_scores = score_videos(model, train, FrameScorer(protocol, precision=precision), device,
                                            batch_size, progress, desc="scoring train", loader=loader)
                names, stats_source = [v.name for v in train], FROM_PASS
            stats = frame_stats(frame_scores, protocol, temporal, names or [], checkpoint)
    raw = score_videos(model, test, scorer, device, batch_size, progress, desc="scoring test", loader=loader)
    with stage("protocol"):
        videos = _apply(test, raw, protocol, temporal, stats, labelled=True)
        metrics = frame_metrics({v.name: (v.labels, v.score) for v in videos})
    if model.config.clips == "objects":
        from vadgpu.objects.tubes import native_frame_size

        with stage("writing"):
            write_object_csvs(out / "objects", [v.name for v in test], scorer.records, native_frame_size(test))
        boxless = [scorer.boxes.count(i) == 0 for i in range(len(test))]  # (frames,) per video
        without = {v.name: int(empty.sum()) for v, empty in zip(test, boxless)}
        anomalous_without = sum(int((empty & (np.asarray(v.labels) > 0)).sum()) for v, empty in zip(test, boxless))
        objects_record = {"boxes": str(Path(boxes).resolve()), "tubes_scored": scorer.tubes_scored(),
                          "frames_without_boxes": without, "anomalous_frames_without_boxes": anomalous_without,
                          "tube_norm": protocol.tube_norm,
                          "calibration": {**calibration.describe(), "from": calibration_source}}

    height, width = model.config.size
    dropped_start, dropped_end = edge_frames(temporal, protocol)
    edges = ("dropped" if protocol.drop_edges else
             "only centres of clips wholly inside the video" if protocol.full_clips else
             "scored from edge-replicated clips")
    record = {
        "protocol": {
            **protocol.to_dict(),
            "score_label": _score_label(protocol, objects_record is not None),
            "patch_size": None if protocol.score == "psnr" else protocol.patch_size or patch_size_for(height, width),
            "temporal": temporal,
            "model_size": [height, width],
            "edge_frames": edges,
            "dropped_frames_per_video_end": dropped_start if dropped_start == dropped_end else [dropped_start,
                                                                                                 dropped_end],
            "dropped_frames_total": (dropped_start + dropped_end) * len(videos),
            "order": "edge drop, " + ("normalisation, smoothing" if protocol.order == "normalise-first"
                                      else "smoothing, normalisation") + ", per video",
            "train_stats": None if stats is None else {**vars(stats), "from": stats_source},
        },
        "checkpoint": _checkpoint_record(checkpoint, ckpt),
        "dataset": {"name": data.name, "root": str(Path(root).resolve()), "variant": variant,
                    "label_source": data.label_source},
        "videos": [{"name": v.name, "frames": v.num_frames, "scored_frames": int(v.frames.size),
                    "anomalous_frames": int(v.labels.sum()), "auc": metrics.per_video_auc[v.name]} for v in videos],
        "totals": {"videos": len(videos), "frames": sum(v.num_frames for v in videos),
                   "scored_frames": metrics.frames, "anomalous_frames": metrics.anomalous_frames},
        "device": describe(device),
        "precision": precision,
        "vadgpu_version": __version__,
    }
    if objects_record is not None:
        record["objects"] = objects_record
    with stage("writing"):
        content = write_eval_outputs(out, videos, metrics, record)
    return EvalResult(out=out, metrics=metrics, videos=videos, record=content)


def open_onnx_model(path: str | Path):
    """An exported ONNX model (models/onnx_model.py: onnxruntime on the CPU; the model's config, training scores
    and calibration record from the file)."""
    from vadgpu.models.onnx_model import OnnxModel

    return OnnxModel(path)


def _fits(stored: dict | None, dataset: str, root: str | Path, variant: str | None) -> bool:
    """Whether a weights file's stored training scores come from this dataset's training split."""
    if not stored or stored.get("dataset") != dataset or stored.get("variant") != variant:
        return False
    return Path(str(stored.get("root"))).expanduser().resolve() == Path(root).expanduser().resolve()


def _resolve_loader(requested: str) -> str:
    from vadgpu.pipelines.choose import resolve_loader

    loader, notice = resolve_loader(requested)
    if notice:
        log.warning(notice)
    return loader


def prepare_input(source: str | Path, device: torch.device, progress: bool = True, loader: str = "dali"
                  ) -> PreparedVideo:
    """A PreparedVideo for one video file or frame folder, via `prepare` (probe; transcode into the cache what
    the backend cannot decode), as a one-video test split of a dataset named "input" rooted at its parent."""
    from vadgpu.data.catalog import list_frames
    from vadgpu.data.prepare import INPUT_DATASET, load_prepared
    from vadgpu.data.types import Dataset, Video

    source = Path(source).expanduser().resolve()
    if source.is_dir():
        video = Video(source.name, source, list_frames(source))
    elif source.is_file():
        video = Video(source.stem, source)
    else:
        raise VadgpuError(f"input {source} is neither a video file nor a frame folder")
    dataset = Dataset(INPUT_DATASET, source.parent, train=(), test=(video,))
    return load_prepared(dataset, device, progress=progress, loader=loader).test[0]


def default_score_out(source: str | Path) -> Path:
    """Where `vadgpu score INPUT` writes without --out: ./NAME-scores (NAME = the input's file or folder name)."""
    source = Path(source)
    return Path.cwd() / f"{safe_name(source.stem or source.name)}-scores"


def score_input(
    source: str | Path,
    checkpoint: str | Path | None = None,
    *,
    model_file: str | Path | None = None,
    out: str | Path | None = None,
    protocol: Protocol = Protocol(),
    heatmap_mp4: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "auto",
    progress: bool = True,
    boxes: str | Path | None = None,
    loader: str = "auto",
    precision: str = DEFAULT_PRECISION,
) -> ScoreResult:
    """Score one unlabelled video file or frame folder: scores.csv, a score-curve PNG, optionally a heatmap MP4.

    `out` defaults to ./NAME-scores (NAME = the input's file or folder name); the input is never modified. An
    object model needs the input's boxes: `boxes` (a cache whose test split holds the input), else background
    subtraction runs over the input first (cached like prepare), and objects.csv lists every scored box; its tubes
    are scored with the model's calibration record (location and, where it has one, appearance: the same detector
    as `vadgpu eval`). `model_file`: an ONNX file from `vadgpu export` instead of `checkpoint` (onnxruntime, CPU).
    `protocol.norm == "train"` normalises by the training videos' scores stored in the model file. `precision`:
    the networks' arithmetic, fp32 or bf16 (vadgpu/precision.py; not for an ONNX file).
    """
    from vadgpu.evaluation.heatmap import HeatmapVideoWriter

    if (checkpoint is None) == (model_file is None):
        raise VadgpuError("give exactly one of --checkpoint FILE and --model FILE.onnx")
    source = Path(source)
    device = resolve_device(device)
    precision = check_precision(precision, device, onnx=model_file is not None)
    loader = _resolve_loader(loader)
    with stage("model load"):
        ckpt = load_checkpoint(checkpoint, map_location="cpu") if model_file is None else {}
    boxes = boxes_option(boxes, ckpt, checkpoint or model_file,
                         "background subtraction runs over the input first, cached")
    out = check_score_out(out if out is not None else default_score_out(source), source, heatmap_mp4)
    with stage("prepare"):
        video = prepare_input(source, device, progress=progress, loader=loader)
    with stage("model load"):
        model = load_model(ckpt, device) if model_file is None else open_onnx_model(model_file)
    tube_norm_chosen = protocol.tube_norm is not None
    protocol = protocol.for_model(model.config)
    name = safe_name(video.name)
    temporal = model.config.temporal
    writer = stats = None
    if model.config.clips == "objects":
        if boxes is None:
            from vadgpu.data.prepare import INPUT_DATASET
            from vadgpu.data.types import Dataset
            from vadgpu.objects.default_boxes import ensure_box_cache

            single = Dataset(INPUT_DATASET, video.video.path.parent, train=(), test=(video.video,))
            with stage("boxes"):
                boxes = ensure_box_cache(single, {"test": [video]}, progress=progress)
        scorer, calibration = object_input_scorer(model, ckpt, checkpoint or model_file, protocol, boxes, [video],
                                                  device, required=tube_norm_chosen, precision=precision)
        if protocol.norm == "train":
            stats = frame_stats(calibration and calibration.train_frame_scores(), protocol, temporal,
                                calibration.names if calibration else [], checkpoint or model_file)
    else:
        if heatmap_mp4:  # encoded as batches arrive (in frame order: the test loader's contract)
            writer = HeatmapVideoWriter(out / f"{name}-heatmap.mp4", video)
        scorer = FrameScorer(protocol, on_errors=None if writer is None else writer.write, precision=precision)
        if protocol.norm == "train":
            from vadgpu.scoring.train_scores import raw_train_scores

            stored = ckpt.get("train_scores") if model_file is None else model.train_scores
            stats = frame_stats(raw_train_scores(stored, protocol), protocol, temporal,
                                (stored or {}).get("names") or [], checkpoint or model_file)
    try:
        raw = score_videos(model, [video], scorer, device, batch_size, progress, desc=f"scoring {video.name}",
                           loader=loader)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    heatmap = writer.close() if writer is not None else None
    with stage("protocol"):
        scored = _apply([video], raw, protocol, temporal, stats, labelled=False)[0]
    with stage("writing"):
        csv_path = write_scores_csv(out / "scores.csv", [scored])
        curve = write_curves(out, [scored], ylabel=_score_label(protocol, model.config.clips == "objects"))[0]
        objects_csv = None
        if model.config.clips == "objects":
            from vadgpu.evaluation.heatmap import write_object_heatmap
            from vadgpu.objects.tubes import native_frame_size

            objects_csv = write_object_csvs(out, ["objects"], scorer.records, native_frame_size([video]))[0]
            if heatmap_mp4:  # drawn after scoring: the boxes' colours span the whole video's tube scores
                heatmap = write_object_heatmap(out / f"{name}-heatmap.mp4", video, scorer.records, raw[0])
    return ScoreResult(out=out, video=scored, csv=csv_path, curve=curve, heatmap=heatmap, objects=objects_csv)


def object_input_scorer(model, ckpt: dict, source, protocol: Protocol, boxes, videos: list[PreparedVideo],
                        device: torch.device, required: bool = False, precision: str = DEFAULT_PRECISION):
    """The tube scorer of an object model for videos outside any dataset (`vadgpu score`): the model file's
    calibration record as the protocol asks for it (evaluation/calibrate.py), or, for a file without one, raw tube
    errors with a warning (an error when the record is `required`, e.g. --tube-norm location asked for by name);
    its networks in `precision`. Returns (scorer, record or None)."""
    from vadgpu.scoring.calibration import for_scoring
    from vadgpu.objects.tubes import FrameBoxes
    from vadgpu.scoring.calibration import stored_calibration
    from vadgpu.scoring.tubes import TubeScorer

    calibration = stored_calibration(ckpt, source) if ckpt else getattr(model, "calibration", None)
    with stage("boxes"):
        frame_boxes = FrameBoxes.load(boxes, videos, split="test")
    if calibration is None:
        missing = (f"{source} has no calibration record: no location statistics of its training tubes (model.pt "
                   "of a finished run has one; a training checkpoint does not; `vadgpu calibrate` adds it)")
        if required or protocol.uses_appearance_file():
            raise VadgpuError(f"{missing}; use --tube-norm none for raw tube errors")
        if protocol.tube_norm == "location":
            log.warning(f"{missing}: tube scores are raw errors (--tube-norm none)")
            protocol = replace(protocol, tube_norm="none")
        cfg = model.config
        return TubeScorer(frame_boxes, cfg.window, cfg.size[0], protocol.score, protocol.mix_weight,
                          precision=precision), None
    calibration = for_scoring(calibration, protocol, boxes, source)
    return calibration.tube_scorer(model, frame_boxes, protocol, device, precision), calibration


def boxes_option(boxes: str | Path | None, ckpt: dict, checkpoint: str | Path, default: str) -> str | Path | None:
    """What `--boxes` means for the checkpoint's model before anything is read: `none` with an object model is a
    clear error (its frames are scored through tubes cut around boxes), with a frame model a notice and None (it
    scores whole frames and reads no boxes at evaluation); anything else is returned as given. `default` says
    where the boxes come from when --boxes is left out."""
    from vadgpu.models.registry import model_config_from_dict
    from vadgpu.objects.default_boxes import NO_BOXES

    if boxes is None or str(boxes) != NO_BOXES or "model_config" not in ckpt:
        return boxes
    name = ckpt.get("model_name")
    if model_config_from_dict(ckpt["model_config"], name).clips == "objects":
        raise VadgpuError(f"--boxes {NO_BOXES}: {checkpoint} holds an object model ({name}), which scores each "
                          f"frame through tubes cut around its boxes, so it needs boxes: give a box cache "
                          f"(--boxes FILE, from `vadgpu data boxes`) or leave --boxes out ({default})")
    log.info(f"--boxes {NO_BOXES}: {checkpoint} holds a frame model ({name}), which scores whole frames and "
                "reads no boxes at evaluation; nothing to turn off")
    return None
