"""An object model's calibration record: everything its scores are measured against, stored in model.pt.

A tube's score is a sum of z-scores against the training videos (scoring/tubes.py); what those z-scores need is
fitted once, in one scoring pass over the training videos, and kept in the weights file under `calibration`, so
that `vadgpu eval`, `vadgpu score`, live scoring and the exported model all score a frame the same way:

    window, tube_size   the tube geometry the model was trained with
    detector            which box detector the training boxes came from (boxes of another detector look different:
                        scoring with them is refused, naming both)
    location            the training tubes' error statistics by place, on a grid that follows the frame's size and
                        the window (scoring/location.py)
    appearance          optional: the backbone that gives each box's features (its weights included, so no
                        Darknet file is needed to score), the bank of training boxes' features with their
                        leave-one-video-out statistics, and the term's weight (scoring/appearance.py)
    frame_scores        every training frame's raw score under all the terms above (the max over its tubes), per
                        video: the statistics of `--norm train` and live scoring's default alarm threshold
    background          optional: the camera's empty scene as background subtraction sees it (the median of frames
                        spread over the training videos, gray, blurred; uint8): live scoring starts its background
                        from it, so the first seconds of a stream find the same boxes as the rest (live/objects.py)
    dataset, names      the training split it was fitted on (dataset name, variant, video names)

It is written at the end of `vadgpu train` (object models; with `--appearance WEIGHTS` it holds the appearance
term), and `vadgpu calibrate` adds or replaces it in an existing weights file. Weights files from before the record
existed hold the location statistics and frame scores under `train_scores` (`legacy_calibration` reads them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from vadgpu.bench.stages import stage
from vadgpu.errors import VadgpuError
from vadgpu.log import logger
from vadgpu.precision import DEFAULT_PRECISION
from vadgpu.scoring.appearance import DEFAULT_WEIGHT, MAX_BANK, AppearanceBank, AppearanceTerm
from vadgpu.scoring.kinds import MIX_WEIGHT, OBJECT_SCORE
from vadgpu.scoring.location import LocationStats, fit_from_records, grid_for
from vadgpu.scoring.protocol import NO_APPEARANCE, Protocol
from vadgpu.scoring.tubes import TubeScorer, fill_frames_without_objects, frame_maxima

KEY = "calibration"
FORMAT = 1


@dataclass
class Calibration:
    """The calibration record (module docstring)."""

    window: int
    tube_size: int
    detector: str | None
    location: LocationStats
    frame_scores: list[np.ndarray]
    names: list[str]
    dataset: dict = field(default_factory=dict)  # name, variant
    appearance: AppearanceTerm | None = None
    kind: str = OBJECT_SCORE
    background: np.ndarray | None = None  # (H, W) uint8

    def terms(self) -> str:
        """What a tube's score is made of, in words (metrics.json, the score command)."""
        text = f"location z of the tube's {self.kind}"
        if self.appearance is not None:
            text += (f" + {self.appearance.weight:g} x appearance z ({self.appearance.features.describe()}, "
                     f"{len(self.appearance.bank.features)} training objects)")
        return text

    def without_appearance(self) -> "Calibration":
        """The record without its appearance term; its frame scores are then unknown (the location term alone
        was not kept), so `--norm train` and live thresholds refuse it."""
        if self.appearance is None:
            return self
        return replace(self, appearance=None, frame_scores=[])

    def fits(self, dataset: str, variant: str | None, names: list[str]) -> bool:
        """Whether the record was fitted on this training split (same dataset, variant and videos)."""
        return (self.dataset.get("name") == dataset and self.dataset.get("variant") == variant
                and list(self.names) == list(names))

    def check_detector(self, detector: str, boxes) -> None:
        """Boxes from another detector than the training boxes' are a clear error naming both."""
        if self.detector is not None and detector != self.detector:
            raise VadgpuError(f"box cache {boxes} comes from detector {detector}, but the model was calibrated on "
                              f"boxes from {self.detector}: use boxes from the same detector")

    def check_features(self, identity: dict, source) -> None:
        """An appearance extractor other than the record's is a clear error naming both."""
        if self.appearance is None:
            return
        mine = self.appearance.features.identity()
        if identity != mine:
            raise VadgpuError(f"--appearance {source} is {_describe(identity)}, but the model's calibration record "
                              f"uses {_describe(mine)}: leave --appearance out (the record's features are used), "
                              "or run `vadgpu calibrate` with the new weights")

    def tube_scorer(self, model, frame_boxes, protocol, device: torch.device | None = None,
                    precision: str = DEFAULT_PRECISION) -> TubeScorer:
        """The tube scorer of `model` for `frame_boxes` under `protocol` (its score kind must be the record's when
        it normalises by place), its networks in `precision` (vadgpu/precision.py)."""
        location = None
        if protocol.tube_norm == "location":
            if protocol.score != self.location.kind:
                raise VadgpuError(f"--score {protocol.score}: the calibration record's statistics are of "
                                  f"{self.location.kind} scores; use --score {self.location.kind} or --tube-norm none")
            location = self.location
        appearance = self.appearance
        if appearance is not None and device is not None:
            appearance = appearance.to(device)
        cfg = model.config
        return TubeScorer(frame_boxes, cfg.window, cfg.size[0], protocol.score, protocol.mix_weight, location,
                          appearance, precision=precision)

    def train_frame_scores(self) -> list[np.ndarray] | None:
        return [np.asarray(s, np.float64) for s in self.frame_scores] or None

    def describe(self) -> dict:
        """For metrics.json: what the scores are made of and what they were fitted on."""
        out = {"tube_score": self.terms(), "frame_score": "max over the frame's tubes; a frame without a box gets "
               "its video's lowest score", "window": self.window, "tube_size": self.tube_size,
               "detector": self.detector, "fitted_on": {**self.dataset, "videos": len(self.names)},
               "location": {"grid": list(self.location.grid), "training_tubes": int(self.location.count.sum())},
               "appearance": None}
        if self.appearance is not None:
            bank = self.appearance.bank
            out["appearance"] = {"features": self.appearance.features.identity(), "weight": self.appearance.weight,
                                 "bank_rows": len(bank.features), "training_boxes": bank.boxes, "neighbours": bank.k,
                                 "log_distance_mean": bank.mean, "log_distance_std": bank.std}
        return out

    def to_record(self) -> dict:
        """For model.pt: plain values and tensors only (loadable with weights_only)."""
        record = {"format": FORMAT, "kind": self.kind, "window": int(self.window), "tube_size": int(self.tube_size),
                  "detector": self.detector, "location": self.location.to_record(),
                  "frame_scores": [torch.as_tensor(np.asarray(s, np.float64)) for s in self.frame_scores],
                  "names": list(self.names), "dataset": dict(self.dataset), "appearance": None,
                  "background": None if self.background is None else torch.from_numpy(self.background)}
        if self.appearance is not None:
            record["appearance"] = {"features": self.appearance.features.to_record(),
                                    "bank": self.appearance.bank.to_record(), "weight": self.appearance.weight}
        return record

    @classmethod
    def from_record(cls, record: dict, source="the weights file", features=None) -> "Calibration":
        """The record as `to_record` wrote it; `features` stands in for the stored appearance features (an exported
        model runs its backbone in its own graph)."""
        from vadgpu.objects.appearance import BoxFeatures

        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise VadgpuError(f"{source}: its calibration record is not one this vadgpu reads (format "
                              f"{record.get('format') if isinstance(record, dict) else type(record).__name__}, "
                              f"expected {FORMAT}); run `vadgpu calibrate` again")
        try:
            kind = str(record["kind"])
            location = LocationStats.from_record(record["location"], kind)
            if location is None:
                raise KeyError("location")
            appearance = None
            if record.get("appearance") is not None:
                part = record["appearance"]
                appearance = AppearanceTerm(features or BoxFeatures.from_record(part["features"]),
                                            AppearanceBank.from_record(part["bank"]), float(part["weight"]))
            frame_scores = [np.asarray(torch.as_tensor(s), np.float64) for s in record["frame_scores"]]
            names = [str(n) for n in record["names"]]
            background = record.get("background")
            if background is not None:
                background = torch.as_tensor(background)
                if background.dtype != torch.uint8 or background.ndim != 2:
                    raise ValueError(f"background: {background.dtype} {tuple(background.shape)}, expected (H, W) "
                                     "uint8")
                background = background.numpy()
            calibration = cls(int(record["window"]), int(record["tube_size"]),
                              None if record["detector"] is None else str(record["detector"]), location,
                              frame_scores, names, dict(record.get("dataset") or {}), appearance, kind, background)
        except (KeyError, TypeError, ValueError) as exc:
            raise VadgpuError(f"{source}: its calibration record is incomplete or malformed ({exc!r}); run "
                              "`vadgpu calibrate` again") from exc
        if frame_scores and (len(frame_scores) != len(names)
                             or not all(np.isfinite(s).all() and s.ndim == 1 for s in frame_scores)):
            raise VadgpuError(f"{source}: its calibration record's training frame scores do not fit its "
                              f"{len(names)} video names or are not finite")
        return calibration


def _describe(identity: dict) -> str:
    return (f"{identity.get('name')} up to {identity.get('layer')} (weights sha256 "
            f"{str(identity.get('weights_sha256'))[:12]}, input short side {identity.get('short_side')}, pool "
            f"{identity.get('pool')})")


def stored_calibration(ckpt: dict, source="the weights file") -> Calibration | None:
    """The calibration record of a checkpoint (an object model's), read from `calibration`, else from the
    `train_scores` of weights files written before the record existed; None when it has neither."""
    with stage("model load"):
        if ckpt.get(KEY) is not None:
            return Calibration.from_record(ckpt[KEY], source)
        return legacy_calibration(ckpt)


def legacy_calibration(ckpt: dict) -> Calibration | None:
    """A record from an older weights file's `train_scores` (location statistics and frame scores; no appearance,
    no detector)."""
    from vadgpu.models.registry import model_config_from_dict
    from vadgpu.scoring.location import KEY as LOCATION_KEY
    from vadgpu.scoring.train_scores import location_kind

    stored = ckpt.get("train_scores") or {}
    location = LocationStats.from_record(stored.get(LOCATION_KEY), OBJECT_SCORE)
    if location is None or "model_config" not in ckpt:
        return None
    cfg = model_config_from_dict(ckpt["model_config"], ckpt.get("model_name"))
    scores = [np.asarray(s, np.float64) for s in stored.get(location_kind(OBJECT_SCORE)) or []]
    dataset = {"name": stored.get("dataset"), "variant": stored.get("variant")}
    return Calibration(cfg.window, cfg.size[0], None, location, scores, list(stored.get("names") or []), dataset)


def calibrate(model, videos, boxes, *, dataset: str, variant: str | None = None, device: torch.device,
              features=None, weight: float = DEFAULT_WEIGHT, batch_size: int = 16, progress: bool = True,
              loader: str = "auto", max_bank: int = MAX_BANK) -> Calibration:
    """Fit the calibration record of object model `model` on its training `videos` (PreparedVideo) with the boxes
    of the box cache at `boxes` (its train split), in one scoring pass; `features` (a BoxFeatures) adds the
    appearance term with `weight`."""
    from vadgpu.objects.boxes import read_box_cache
    from vadgpu.objects.tubes import FrameBoxes, native_frame_size
    from vadgpu.scoring.run import score_videos

    videos = list(videos)
    if features is not None:
        features = features.to(device)
    frame_boxes = FrameBoxes.load(boxes, videos, split="train", dataset=dataset)
    cfg = model.config
    scorer = TubeScorer(frame_boxes, cfg.window, cfg.size[0], OBJECT_SCORE, MIX_WEIGHT, features=features)
    score_videos(model, videos, scorer, device, batch_size, progress, desc="calibrating on the training videos",
                 loader=loader)
    location = fit_from_records(scorer.records, OBJECT_SCORE, grid_for(native_frame_size(videos), cfg.window))
    records = scorer.records
    video = np.concatenate([r.video for r in records])
    frame = np.concatenate([r.frame for r in records])
    tubes = location.apply(torch.from_numpy(np.concatenate([r.boxes for r in records])),
                           torch.from_numpy(np.concatenate([r.raw for r in records]))).double().numpy()
    appearance = None
    if features is not None and len(np.unique(video)) < 2:
        logger.warning(f"the appearance term needs boxes in at least two training videos (a box's distance to the "
                       f"training objects is measured against the other videos); {dataset}'s training videos give "
                       f"boxes in {len(np.unique(video))}: calibrated without it")
        features = None
    if features is not None:
        vectors = torch.cat(scorer.kept_features)
        bank = AppearanceBank.fit(vectors, torch.from_numpy(video), max_rows=max_bank)
        looks = bank.score(vectors, torch.from_numpy(video)).double().numpy()  # leave-one-video-out
        tubes = tubes + weight * np.where(np.isfinite(looks), looks, 0.0)
        appearance = AppearanceTerm(features.to(torch.device("cpu")), bank, weight)
    maxima = frame_maxima(video, frame, tubes, [v.num_frames for v in videos])
    detector = str(read_box_cache(boxes)["detector"])
    return Calibration(cfg.window, cfg.size[0], detector, location,
                       [fill_frames_without_objects(m)[0] for m in maxima], [v.name for v in videos],
                       {"name": dataset, "variant": variant}, appearance, background=scene_background(videos))


def scene_background(videos) -> np.ndarray | None:
    """The training videos' empty scene for live background subtraction (the record's `background`), or None when
    they differ in frame size (then no one scene stands for the camera)."""
    from vadgpu.objects.detectors import BackgroundSubtractionDetector
    from vadgpu.objects.frames import FrameSource

    if len({(v.height, v.width) for v in videos}) != 1:
        logger.info("the training videos differ in frame size: no scene background is stored for live scoring")
        return None
    return BackgroundSubtractionDetector().scene_background([FrameSource(v.video, v.num_frames) for v in videos])


def box_detector(boxes: str | Path) -> str:
    """The detector a box cache's boxes come from."""
    from vadgpu.objects.boxes import read_box_cache

    return str(read_box_cache(boxes)["detector"])


def requested_features(protocol: Protocol):
    """The BoxFeatures of `--appearance WEIGHTS`, or None."""
    if not protocol.uses_appearance_file():
        return None
    from vadgpu.objects.appearance import BoxFeatures

    return BoxFeatures.from_darknet(protocol.appearance)


def for_scoring(calibration: Calibration | None, protocol: Protocol, boxes, source) -> Calibration | None:
    """The record as `protocol` asks to score with it, checked against the boxes' detector and any
    `--appearance WEIGHTS`: without its appearance term for `--appearance none`, with another weight for
    `--appearance-weight` (its training frame scores are then unknown)."""
    if calibration is None:
        return None
    calibration.check_detector(box_detector(boxes), boxes)
    if protocol.uses_appearance_file():
        if calibration.appearance is None:
            raise VadgpuError(f"--appearance {protocol.appearance}: {source} has no appearance term in its "
                              f"calibration record; add it with `vadgpu calibrate --checkpoint {source} "
                              f"--appearance {protocol.appearance}`")
        calibration.check_features(requested_features(protocol).identity(), protocol.appearance)
    if protocol.appearance == NO_APPEARANCE:
        return calibration.without_appearance()
    weight = protocol.appearance_weight
    if calibration.appearance is not None and weight is not None and weight != calibration.appearance.weight:
        term = AppearanceTerm(calibration.appearance.features, calibration.appearance.bank, weight)
        return replace(calibration, appearance=term, frame_scores=[])
    return calibration
