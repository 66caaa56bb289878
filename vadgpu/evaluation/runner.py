"""Run a trained model over videos: `evaluate` (a dataset's labelled test split) and `score_input` (one video).

Both read the test-order loader (every frame exactly once as a centre frame, edges replicated), score each centre
frame on the device (scores.py), bring the per-frame scores to the host once per video set, then apply the
protocol (protocol.py) per video. The model runs in eval mode under torch.inference_mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from vadgpu import __version__
from vadgpu.checkpoint import (checkpoint_dir, checkpoint_record, default_eval_out, find_run_model,
                               load_checkpoint)
from vadgpu.data.types import PreparedVideo
from vadgpu.device import describe, resolve_device
from vadgpu.errors import VadgpuError
from vadgpu.evaluation.metrics import FrameMetrics, frame_metrics
from vadgpu.evaluation.object_scores import (ObjectScorer, boxes_option, fill_frames_without_objects,
                                             write_object_csvs)
from vadgpu.evaluation.protocol import (Protocol, TrainStats, apply_protocol, edge_frames, fit_train_stats,
                                        scored_frames)
from vadgpu.evaluation.report import VideoScores, safe_name, write_curves, write_eval_outputs, write_scores_csv
from vadgpu.evaluation.scores import error_map, patch_size_for, scores_from_errors
from vadgpu.evaluation.tube_location import LocationStats
from vadgpu.model_checks import check_finite_scores
from vadgpu.objects.tubes import FrameBoxes
from vadgpu.outputs import check_eval_out, check_score_out

log = logging.getLogger("vadgpu")

DEFAULT_BATCH_SIZE = 16
# Where training statistics came from (metrics.json)
FROM_FILE = "the weights file (scored at the end of training)"
FROM_PASS = "a scoring pass over the training videos"
# (target (N, C, H, W), squared errors (N, 1, H, W), video (N,), frame (N,)) of each batch, for the heatmap video
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


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


def score_videos(
    model: torch.nn.Module,
    videos: Sequence[PreparedVideo],
    protocol: Protocol,
    device: torch.device,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    desc: str = "scoring",
    on_batch: BatchHook | None = None,
    objects: ObjectScorer | None = None,
    loader: str = "auto",
) -> list[np.ndarray]:
    """Raw score of every frame of every video, as the model sees it centred in its clip: [(frames,) float64].

    An object model needs `objects` (the boxes of these videos' frames): each frame's score is then the max over
    its tubes, and a frame without a box gets its video's lowest score (object_scores.py). `loader`: dali,
    torch or auto (pipelines/choose.py)."""
    from vadgpu.objects.tubes import native_frame_size
    from vadgpu.pipelines.choose import open_loader, resolve_loader
    from vadgpu.pipelines.clip_index import ClipSpec

    if batch_size < 1:
        raise VadgpuError(f"--batch-size {batch_size} must be at least 1")
    object_mode = model.config.clips == "objects"
    if object_mode and objects is None:
        raise VadgpuError("an object model scores tubes: give the videos' boxes (a box cache)")
    frame_size = native_frame_size(videos) if object_mode else None
    spec = ClipSpec.for_model(model.config, skip_window=False, frame_size=frame_size)
    clips = open_loader(resolve_loader(loader)[0], list(videos), spec, batch_size=batch_size, device=device,
                        train=False)
    scores, video_ids, frame_ids = [], [], []  # per batch, on the device: one host transfer at the end
    total = sum(v.num_frames for v in videos)
    with torch.inference_mode(), tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True,
                                      disable=None if progress else True) as bar:
        for batch in clips:
            if object_mode:
                scores.append(objects(model, batch.clips, batch.video, batch.frame))
            else:
                target, recon = model.reconstruct(batch.clips)  # (N, C, H, W) x 2
                errors = error_map(target, recon)  # (N, 1, H, W)
                scores.append(scores_from_errors(errors, protocol.score, protocol.mix_weight, **protocol.grid()))
                if on_batch is not None:
                    on_batch(target, errors, batch.video, batch.frame)
            video_ids.append(batch.video)
            frame_ids.append(batch.frame)
            bar.update(len(batch.frame))
    if not scores:
        raise VadgpuError("the loader gave no clips: the videos have no frames to score")
    raw = _place(videos, torch.cat(scores), torch.cat(video_ids), torch.cat(frame_ids))
    check_finite_scores(raw, [v.name for v in videos], str(getattr(model, "path", "the model")), object_mode)
    if object_mode:
        raw = [fill_frames_without_objects(r)[0] for r in raw]
    return raw


def object_scorer(model: torch.nn.Module, boxes: str | Path, videos: Sequence[PreparedVideo], split: str,
                  protocol: Protocol, dataset: str | None = None, location: LocationStats | None = None
                  ) -> ObjectScorer:
    """The tube scorer of an object model for `videos` (a split of the box cache at `boxes`); `location`: the
    training tubes' statistics by place, to normalise each tube's score (tube_location.py). Its `appearance`
    (each box's appearance z-score, tube_appearance.py) is set by the caller where the protocol asks for it."""
    cfg = model.config
    frame_boxes = FrameBoxes.load(boxes, videos, split=split, dataset=dataset)
    return ObjectScorer(frame_boxes, cfg.window, cfg.size[0], protocol.score, protocol.mix_weight, location,
                        appearance_weight=protocol.appearance_weight)


def _object_train_statistics(model, train: list[PreparedVideo], boxes, protocol: Protocol, stored: dict | None,
                             device, batch_size: int, progress: bool, loader: str, dataset: str):
    """What an object model's evaluation needs from its training videos: the location statistics of their tubes
    (`tube_norm="location"`) and the frame-score statistics (`norm="train"`), each from the weights file when it
    holds them for this dataset, else from one scoring pass over the training videos (shared by both).
    Returns (location, its source, stats, their source), None where not needed."""
    from vadgpu.evaluation.train_scores import stats_for
    from vadgpu.evaluation.tube_location import KEY, fit_from_records, frame_maxima

    location = location_source = stats = stats_source = None
    records = None

    def training_records():
        scorer = object_scorer(model, boxes, train, "train", protocol, dataset)
        score_videos(model, train, protocol, device, batch_size, progress, desc="scoring train", objects=scorer,
                     loader=loader)
        return scorer.records

    if protocol.tube_norm == "location":
        location = LocationStats.from_record((stored or {}).get(KEY), protocol.score)
        location_source = FROM_FILE
        if location is None:
            records = training_records()
            location, location_source = fit_from_records(records, protocol.score), FROM_PASS
    if protocol.norm == "train":
        stats = stats_for(stored, protocol, model.config.temporal) if stored else None
        stats_source = FROM_FILE
        if stats is None:
            records = records if records is not None else training_records()
            raw = [fill_frames_without_objects(r)[0] for r in frame_maxima(records, [v.num_frames for v in train],
                                                                            location)]
            stats = fit_train_stats([s[scored_frames(v.num_frames, model.config.temporal, protocol, v.name)]
                                     for v, s in zip(train, raw)], protocol)
            stats_source = FROM_PASS
    return location, location_source, stats, stats_source


def _check_same_detector(boxes: str | Path, trained_with: str | None) -> None:
    """A box cache other than the training run's must come from the same detector (tubes look different)."""
    from vadgpu.objects.boxes import read_box_cache

    trained = None if trained_with is None else Path(trained_with)
    if trained is None or not trained.is_file() or Path(boxes).resolve() == trained.resolve():
        return
    mine, theirs = str(read_box_cache(boxes)["detector"]), str(read_box_cache(trained_with)["detector"])
    if mine != theirs:
        raise VadgpuError(f"box cache {boxes} comes from detector {mine}, but the model was trained on boxes from "
                          f"{theirs} ({trained_with}): use boxes from the same detector")


def _place(videos: Sequence[PreparedVideo], scores: torch.Tensor, video_ids: torch.Tensor,
           frame_ids: torch.Tensor) -> list[np.ndarray]:
    """Put each score at (video, frame); every frame must come exactly once (the test loader's contract)."""
    scores = scores.double().cpu().numpy()
    video_ids, frame_ids = video_ids.cpu().numpy(), frame_ids.cpu().numpy()
    out = []
    for index, video in enumerate(videos):
        mine = video_ids == index
        frames = frame_ids[mine]
        counts = np.bincount(frames, minlength=video.num_frames) if frames.size else np.zeros(video.num_frames)
        if frames.size and (frames.min() < 0 or frames.max() >= video.num_frames):
            raise VadgpuError(f"video {video.name}: the loader gave frame {frames.max()} of {video.num_frames}")
        if (counts != 1).any():
            bad = int(np.flatnonzero(counts != 1)[0])
            raise VadgpuError(f"video {video.name} ({video.decode_path}): frame {bad} was scored {int(counts[bad])} "
                              f"times; the test loader must give every frame exactly once")
        placed = np.empty(video.num_frames)
        placed[frames] = scores[mine]
        out.append(placed)
    return out


def _score_label(protocol: Protocol) -> str:
    norm = {"video": "min-max per video", "train": "z-score, training statistics", "none": "raw"}[protocol.norm]
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


def _checkpoint_record(path: Path, ckpt: dict) -> dict:
    return {**checkpoint_record(path), "model_name": ckpt.get("model_name"), "epoch": ckpt.get("epoch"),
            "step": ckpt.get("step"), "vadgpu_version": ckpt.get("vadgpu_version")}


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
) -> EvalResult:
    """Score a checkpoint on a dataset's test split and write metrics.json, scores.csv and the plots.

    dataset/root/variant default to the training config stored in the checkpoint; `out` defaults to
    RUN/eval (RUN = `run_dir`, or the run folder the checkpoint lies in). An object model reads the test boxes
    from `boxes`, else from the training run's box cache, else from the dataset's background-subtraction cache
    (made when missing), and also writes objects/VIDEO.csv: every scored box of every frame, best first.
    `loader`: the clip loader (dali, torch or auto; pipelines/choose.py). `protocol`: a Protocol, or the name of
    one whose fields depend on the dataset and model ("dualpath-authors": authors_protocol.py).
    """
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared

    checkpoint = Path(checkpoint)
    device = resolve_device(device)
    loader = _resolve_loader(loader)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    config = ckpt.get("config") or {}
    boxes = boxes_option(boxes, ckpt, checkpoint, "the training run's box cache, else the dataset's background-"
                         "subtraction cache, made once")
    # The training dataset's root and variant are defaults only for that same dataset.
    trained_on = dataset is None or dataset == config.get("dataset")
    dataset = dataset or config.get("dataset")
    root = root if root is not None or not trained_on else config.get("root")
    variant = variant if variant is not None or not trained_on else config.get("variant")
    if not dataset or not root:
        raise VadgpuError(f"checkpoint {checkpoint} records no dataset/root in its config; pass --dataset and --root")
    if out is None:
        out = default_eval_out(checkpoint, run_dir if run_dir is not None else resolve_checkpoint(None, checkpoint)[1])
    out = check_eval_out(out, root)

    data = open_dataset(dataset, root, variant=variant)
    prepared = load_prepared(data, device, progress=progress, loader=loader)
    test = list(prepared.test)
    if not test:
        raise VadgpuError(f"dataset {dataset} at {root} has no test videos")
    unlabelled = [v.name for v in test if v.labels is None]
    if unlabelled:
        raise VadgpuError(f"dataset {dataset} at {root}: test videos without labels: {', '.join(unlabelled)}")

    model = load_model(ckpt, device)
    if isinstance(protocol, str):
        from vadgpu.evaluation.authors_protocol import named_protocol

        protocol = named_protocol(protocol, data.name, model.config)
    protocol = protocol.for_model(model.config)
    temporal = model.config.temporal
    test_scorer = None  # object models: the tubes of the test frames
    objects_record = None
    stored = ckpt.get("train_scores") if _fits(ckpt.get("train_scores"), data.name, root, variant) else None
    stats, stats_source, location, location_source = None, None, None, None
    if model.config.clips == "objects":
        if boxes is None and config.get("boxes") and Path(config["boxes"]).is_file() and trained_on:
            boxes = config["boxes"]
        if boxes is None:
            from vadgpu.objects.default_boxes import ensure_box_cache

            boxes = ensure_box_cache(data, {"train": list(prepared.train), "test": test}, progress=progress)
        _check_same_detector(boxes, config.get("boxes"))
        location, location_source, stats, stats_source = _object_train_statistics(
            model, list(prepared.train), boxes, protocol, stored, device, batch_size, progress, loader, data.name)
        test_scorer = object_scorer(model, boxes, test, "test", protocol, data.name, location)
        if protocol.appearance is not None:
            from vadgpu.evaluation.tube_appearance import appearance_scores

            test_scorer.appearance, appearance_record = appearance_scores(
                protocol.appearance, boxes, list(prepared.train), test, test_scorer.boxes, data, progress)
    elif protocol.norm == "train":
        from vadgpu.evaluation.train_scores import stats_for

        stats = stats_for(stored, protocol, temporal) if stored else None  # None: not stored for this score kind
        stats_source = None if stats is None else FROM_FILE
        if stats is None:
            stats_source = FROM_PASS
            train = list(prepared.train)
            raw_train = score_videos(model, train, protocol, device, batch_size, progress, desc="scoring train",
                                     loader=loader)
            stats = fit_train_stats([s[scored_frames(v.num_frames, temporal, protocol, v.name)]
                                     for v, s in zip(train, raw_train)], protocol)
    raw = score_videos(model, test, protocol, device, batch_size, progress, desc="scoring test",
                       objects=test_scorer, loader=loader)
    videos = _apply(test, raw, protocol, temporal, stats, labelled=True)
    metrics = frame_metrics({v.name: (v.labels, v.score) for v in videos})
    if test_scorer is not None:
        from vadgpu.objects.tubes import native_frame_size

        write_object_csvs(out / "objects", [v.name for v in test], test_scorer.records, native_frame_size(test))
        boxless = [test_scorer.boxes.count(i) == 0 for i in range(len(test))]  # (frames,) per video
        without = {v.name: int(empty.sum()) for v, empty in zip(test, boxless)}
        anomalous_without = sum(int((empty & (np.asarray(v.labels) > 0)).sum()) for v, empty in zip(test, boxless))
        objects_record = {"boxes": str(Path(boxes).resolve()), "window": model.config.window,
                          "tube_size": list(model.config.size),
                          "tubes_scored": sum(len(r[3]) for r in test_scorer.records),
                          "frames_without_boxes": without, "anomalous_frames_without_boxes": anomalous_without,
                          "frame_score": "max over the frame's tubes; a frame without a box gets its video's "
                                         "lowest score",
                          "tube_norm": protocol.tube_norm,
                          "location_stats": None if location is None else {
                              "grid": list(location.grid), "training_tubes": int(location.count.sum()),
                              "from": location_source},
                          "appearance": None if test_scorer.appearance is None else appearance_record}

    height, width = model.config.size
    dropped_start, dropped_end = edge_frames(temporal, protocol)
    edges = ("dropped" if protocol.drop_edges else
             "only centres of clips wholly inside the video" if protocol.full_clips else
             "scored from edge-replicated clips")
    record = {
        "protocol": {
            **protocol.to_dict(),
            "score_label": _score_label(protocol),
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
        "vadgpu_version": __version__,
    }
    if objects_record is not None:
        record["objects"] = objects_record
    content = write_eval_outputs(out, videos, metrics, record)
    return EvalResult(out=out, metrics=metrics, videos=videos, record=content)


def open_onnx_model(path: str | Path):
    """An exported ONNX model (vadgpu.export.OnnxModel: onnxruntime on the CPU, the model's config and training
    scores from its metadata)."""
    from vadgpu.export import OnnxModel

    return OnnxModel(path)


def stored_stats(stored: dict | None, protocol: Protocol, temporal: int) -> TrainStats:
    """--norm train without a dataset: the statistics of the training scores the model file holds."""
    from vadgpu.evaluation.train_scores import stats_for

    stats = stats_for(stored, protocol, temporal)
    if stats is None:
        raise VadgpuError(f"--norm train: the model file holds no training scores for --score {protocol.score} "
                          "(they are written at the end of `vadgpu train`); use --norm video or none")
    return stats


def stored_location(stored: dict | None, protocol: Protocol, required: bool = True) -> LocationStats | None:
    """--tube-norm location without a dataset: the training tubes' statistics the model file holds (None when
    the protocol does not normalise by place, or when they are absent and not `required`)."""
    from vadgpu.evaluation.tube_location import KEY

    if protocol.tube_norm != "location":
        return None
    location = LocationStats.from_record((stored or {}).get(KEY), protocol.score)
    if location is None and required:
        raise VadgpuError(f"--tube-norm location: the model file holds no location statistics of its training "
                          f"tubes for --score {protocol.score} (they are written at the end of `vadgpu train`); "
                          "use --tube-norm none")
    return location


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
) -> ScoreResult:
    """Score one unlabelled video file or frame folder: scores.csv, a score-curve PNG, optionally a heatmap MP4.

    `out` defaults to ./NAME-scores (NAME = the input's file or folder name); the input is never modified. An
    object model needs the input's boxes: `boxes` (a cache whose test split holds the input), else background
    subtraction runs over the input first (cached like prepare), and objects.csv lists every scored box.
    `model_file`: an ONNX file from `vadgpu export` instead of `checkpoint` (run in onnxruntime on the CPU).
    `protocol.norm == "train"` normalises by the training videos' scores stored in the model file.
    """
    from vadgpu.evaluation.heatmap import HeatmapVideoWriter

    if (checkpoint is None) == (model_file is None):
        raise VadgpuError("give exactly one of --checkpoint FILE and --model FILE.onnx")
    source = Path(source)
    device = resolve_device(device)
    loader = _resolve_loader(loader)
    ckpt = load_checkpoint(checkpoint, map_location="cpu") if model_file is None else {}
    boxes = boxes_option(boxes, ckpt, checkpoint or model_file,
                         "background subtraction runs over the input first, cached")
    out = check_score_out(out if out is not None else default_score_out(source), source, heatmap_mp4)
    video = prepare_input(source, device, progress=progress, loader=loader)
    model = load_model(ckpt, device) if model_file is None else open_onnx_model(model_file)
    tube_norm_chosen = protocol.tube_norm is not None
    protocol = protocol.for_model(model.config)
    stored = ckpt.get("train_scores") if model_file is None else model.train_scores
    if protocol.tube_norm == "location" and not tube_norm_chosen and stored_location(stored, protocol, False) is None:
        log.warning(f"{checkpoint or model_file} holds no location statistics of its training tubes (model.pt of a "
                    "finished run has them; a training checkpoint does not): tube scores are not normalised by "
                    "place (--tube-norm none)")
        protocol = replace(protocol, tube_norm="none")
    stats = stored_stats(stored, protocol, model.config.temporal) if protocol.norm == "train" else None
    name = safe_name(video.name)
    scorer = None
    if model.config.clips == "objects":
        if boxes is None:
            from vadgpu.data.prepare import INPUT_DATASET
            from vadgpu.data.types import Dataset
            from vadgpu.objects.default_boxes import ensure_box_cache

            single = Dataset(INPUT_DATASET, video.video.path.parent, train=(), test=(video.video,))
            boxes = ensure_box_cache(single, {"test": [video]}, progress=progress)
        scorer = object_scorer(model, boxes, [video], "test", protocol, location=stored_location(stored, protocol))

    writer = None
    if heatmap_mp4 and scorer is None:  # encoded as batches arrive (in frame order: the test loader's contract)
        writer = HeatmapVideoWriter(out / f"{name}-heatmap.mp4", video, protocol.score, protocol.mix_weight)
    try:
        raw = score_videos(model, [video], protocol, device, batch_size, progress, desc=f"scoring {video.name}",
                           on_batch=None if writer is None else writer.write, objects=scorer, loader=loader)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    heatmap = writer.close() if writer is not None else None
    scored = _apply([video], raw, protocol, model.config.temporal, stats, labelled=False)[0]
    csv_path = write_scores_csv(out / "scores.csv", [scored])
    curve = write_curves(out, [scored], ylabel=_score_label(protocol))[0]
    if scorer is not None:
        from vadgpu.evaluation.heatmap import write_object_heatmap
        from vadgpu.objects.tubes import native_frame_size

        write_object_csvs(out, ["objects"], scorer.records, native_frame_size([video]))
        if heatmap_mp4:  # drawn after scoring: the boxes' colours span the whole video's tube scores
            heatmap = write_object_heatmap(out / f"{name}-heatmap.mp4", video, scorer.records, raw[0])
    return ScoreResult(out=out, video=scored, csv=csv_path, curve=curve, heatmap=heatmap)
