"""The frame-level protocol: which frames count, temporal smoothing, normalisation.

Published numbers on these benchmarks differ as much by protocol as by model, so every choice is a field of
`Protocol` and lands in metrics.json. Per video, in this order:

1. Edges. Every frame is scored (frames near the ends come from edge-replicated clips). With `drop_edges` the
   first and last T // 2 frames of each video are removed from scores *and* labels, as DDL's reference code does;
   with `full_clips` only frames whose clip lies wholly inside the video count: T // 2 dropped at the start and
   T - 1 - T // 2 at the end (the dual-path authors' frames 8 .. len - 8 at T = 16).
2. Smoothing (scipy.ndimage, edges extended with the nearest value): `median` over a window of 17 frames (DDL),
   `gaussian` with standard deviation `sigma` frames (the dual-path code), or `none`.
3. Normalisation: `video` = min-max over the test video (the papers' protocol; it uses the video's own range, which
   a live system would not have), `train` = z-score with the mean and std of the (smoothed) training-set scores
   (needs a scoring pass over the training videos), or `none`. A constant curve normalises to zeros under `video`:
   it carries no ranking information. The default depends on the model (`for_model`): `video` for frame models,
   `none` for object models, whose tube scores are already normalised by the training tubes at the same place
   (`tube_norm="location"`, tube_location.py) and so share one scale across videos.
Smoothing comes before normalisation (`order="smooth-first"`) so that per-video min-max scores end in [0, 1];
`order="normalise-first"` swaps the two, as the dual-path authors' scripts do (min-max, then gaussian_filter1d).
`patch_size`, `patch_grid`, `patch_stride`: patch-max's patch (pixels at the model's size; None: scaled from DDL's
16 at 256) and grid (scores.py). `name` says which named protocol set the fields (authors_protocol.py), `numbers`
whose published numbers it took; both land in metrics.json with the rest. `appearance` (object models): None uses
the appearance term of the model's calibration record when it has one (scoring/calibration.py), "none" leaves it
out, a path names Darknet weights to calibrate with where the record has no appearance term (evaluation only; the
record's own must be the same network); `appearance_weight` (None: the record's) is its weight.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

from vadgpu.errors import VadgpuError
from vadgpu.scoring.kinds import DEFAULT_SCORE, MIX_WEIGHT, OBJECT_SCORE, PATCH_GRIDS, check_score_kind
from vadgpu.scoring.location import TUBE_NORMS

NORMALISATIONS = ("video", "train", "none")
SMOOTHINGS = ("median", "gaussian", "none")
MEDIAN_WINDOW = 17  # DDL
GAUSSIAN_SIGMA = 3.0  # frames
ORDERS = ("smooth-first", "normalise-first")
NO_APPEARANCE = "none"  # `appearance`: leave the calibration record's appearance term out


@dataclass(frozen=True)
class Protocol:
    """Every choice between raw reconstruction errors and the scores the metrics see."""

    score: str | None = DEFAULT_SCORE
    norm: str | None = None  # None: the model's default (`for_model`)
    smooth: str = "median"
    window: int = MEDIAN_WINDOW
    sigma: float = GAUSSIAN_SIGMA
    drop_edges: bool = False
    mix_weight: float = MIX_WEIGHT
    full_clips: bool = False
    order: str = "smooth-first"
    patch_size: int | None = None
    patch_grid: str = "offset"
    patch_stride: int | None = None
    name: str = "vadgpu"
    numbers: str | None = None
    tube_norm: str | None = None  # object models: "location" or "none"; None: the model's default
    appearance: str | None = None  # object models: None = the calibration record's term, "none" = off, or weights
    appearance_weight: float | None = None  # weight of the appearance z-score; None: the calibration record's

    def __post_init__(self) -> None:
        if self.score is not None:  # None: the model's default (`for_model`)
            check_score_kind(self.score)
        if self.norm is not None and self.norm not in NORMALISATIONS:
            raise VadgpuError(f"--norm {self.norm!r} is not a normalisation (choose from {', '.join(NORMALISATIONS)})")
        if self.tube_norm is not None and self.tube_norm not in TUBE_NORMS:
            raise VadgpuError(f"--tube-norm {self.tube_norm!r}: choose from {', '.join(TUBE_NORMS)}")
        if self.smooth not in SMOOTHINGS:
            raise VadgpuError(f"--smooth {self.smooth!r} is not a smoothing (choose from {', '.join(SMOOTHINGS)})")
        if self.window < 1 or self.window % 2 == 0:
            raise VadgpuError(f"--window {self.window} must be a positive odd number of frames")
        if not self.sigma > 0 or math.isinf(self.sigma):
            raise VadgpuError(f"--sigma {self.sigma} must be a positive number of frames")
        if self.drop_edges and self.full_clips:
            raise VadgpuError("--drop-edges and full_clips are two edge rules: choose one")
        if self.order not in ORDERS:
            raise VadgpuError(f"protocol order {self.order!r}: choose from {', '.join(ORDERS)}")
        if self.order == "normalise-first" and self.norm == "train":
            raise VadgpuError("--norm train fits its statistics on smoothed scores; it goes with order smooth-first")
        if self.patch_grid not in PATCH_GRIDS:
            raise VadgpuError(f"patch grid {self.patch_grid!r}: choose from {', '.join(PATCH_GRIDS)}")
        if self.appearance_weight is not None and (not self.appearance_weight > 0
                                                   or math.isinf(self.appearance_weight)):
            raise VadgpuError(f"--appearance-weight {self.appearance_weight} must be a positive number")
        if self.uses_appearance_file() and self.tube_norm == "none":
            raise VadgpuError("--appearance adds a z-score to each tube's location-normalised score: it needs "
                              "--tube-norm location")
        for field in ("patch_size", "patch_stride"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise VadgpuError(f"protocol {field} {value}: must be at least 1 pixel")

    def uses_appearance_file(self) -> bool:
        """Whether `appearance` names Darknet weights (rather than the record's term or none)."""
        return self.appearance not in (None, NO_APPEARANCE)

    def grid(self) -> dict:
        """patch-max's patch, grid and stride, as `scores.scores_from_errors` takes them."""
        return {"patch": self.patch_size, "grid": self.patch_grid, "stride": self.patch_stride}

    def to_dict(self) -> dict:
        return asdict(self)

    def for_model(self, config) -> "Protocol":
        """This protocol with the model's defaults filled in where nothing was chosen. Frame models: patch-max,
        min-max per video. Object models: the tube's mean squared error, normalised by the training tubes at the
        same place (tube_location.py), and no per-video normalisation (those scores are on one scale in every
        video). A frame model cannot take `tube_norm="location"` (it has no tubes)."""
        objects = getattr(config, "clips", "frames") == "objects"
        if not objects and self.tube_norm == "location":
            raise VadgpuError("--tube-norm location normalises the tubes of an object model; this is a frame model")
        if not objects and self.uses_appearance_file():
            raise VadgpuError("--appearance scores the objects of an object model's tubes; this is a frame model")
        chosen = {"score": self.score or (OBJECT_SCORE if objects else DEFAULT_SCORE),
                  "norm": self.norm or ("none" if objects else "video"),
                  "tube_norm": self.tube_norm or ("location" if objects else "none")}
        return replace(self, **chosen)


@dataclass(frozen=True)
class TrainStats:
    """Mean and standard deviation of the smoothed training-set scores (for `norm="train"`)."""

    mean: float
    std: float
    frames: int


def kept_frames(num_frames: int, temporal: int, drop_edges: bool, name: str = "") -> slice:
    """The frames of a video (named `name` in errors) that the metrics see: all, or all but T // 2 at each end."""
    margin = temporal // 2 if drop_edges else 0
    if num_frames - 2 * margin < 1:
        raise VadgpuError(f"--drop-edges: video {name or '?'} has {num_frames} frames, none left after dropping "
                          f"{margin} at each end")
    return slice(margin, num_frames - margin)


def scored_frames(num_frames: int, temporal: int, protocol: Protocol, name: str = "") -> slice:
    """The frames of a video that the metrics see under `protocol`'s edge rule (module docstring, step 1)."""
    if not protocol.full_clips:
        return kept_frames(num_frames, temporal, protocol.drop_edges, name)
    start, end = temporal // 2, num_frames - (temporal - 1 - temporal // 2)
    if end - start < 1:
        raise VadgpuError(f"full clips only: video {name or '?'} has {num_frames} frames, fewer than one "
                          f"{temporal}-frame clip")
    return slice(start, end)


def edge_frames(temporal: int, protocol: Protocol) -> tuple[int, int]:
    """How many frames the edge rule drops at the start and at the end of each video."""
    if protocol.full_clips:
        return temporal // 2, temporal - 1 - temporal // 2
    margin = temporal // 2 if protocol.drop_edges else 0
    return margin, margin


def median_smooth(scores: np.ndarray, window: int, causal: bool = False) -> np.ndarray:
    """The median over a window of frames, edges extended with the nearest value: centred (each frame with the
    window // 2 frames on either side, as offline evaluation smooths) or causal (each frame with the window - 1
    frames before it, as a live stream allows). Offline and live scoring both smooth with this."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.copy()
    before, after = (window - 1, 0) if causal else (window // 2, window // 2)
    padded = np.concatenate([np.full(before, scores[0]), scores, np.full(after, scores[-1])])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def smooth_scores(scores: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Temporal smoothing of one video's scores (1-D), centred, edges extended with the nearest value."""
    scores = np.asarray(scores, dtype=np.float64)
    if protocol.smooth == "median":
        return median_smooth(scores, protocol.window)
    if protocol.smooth == "gaussian":
        return ndimage.gaussian_filter1d(scores, sigma=protocol.sigma, mode="nearest")
    return scores.copy()


def normalise_scores(scores: np.ndarray, protocol: Protocol, stats: TrainStats | None = None) -> np.ndarray:
    """Normalise one video's (smoothed) scores; `stats` is required for `norm="train"`. A protocol whose norm was
    left to the model and not resolved (`for_model`) normalises as frame models do, per video."""
    scores = np.asarray(scores, dtype=np.float64)
    if (protocol.norm or "video") == "video":
        low, high = scores.min(), scores.max()
        return np.zeros_like(scores) if high <= low else (scores - low) / (high - low)
    if protocol.norm == "train":
        if stats is None:
            raise VadgpuError("--norm train needs training-set statistics (a scoring pass over the training videos)")
        return (scores - stats.mean) / stats.std
    return scores.copy()


def trailing_smooth(scores: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Causal smoothing: each frame's value from it and the frames before it only, as a live stream allows.

    `median`: the median of the last `window` scores, the video's first score standing in for the frames before
    it (`median_smooth(causal=True)`); `none`: unchanged. A gaussian is not causal (an error)."""
    scores = np.asarray(scores, dtype=np.float64)
    if protocol.smooth == "none":
        return scores.copy()
    if protocol.smooth != "median":
        raise VadgpuError(f"--smooth {protocol.smooth}: causal (live) scoring smooths with a trailing median or "
                          "none; a gaussian needs the frames after each one")
    return median_smooth(scores, protocol.window, causal=True)


def fit_train_stats(train_scores: list[np.ndarray], protocol: Protocol, smooth=None) -> TrainStats:
    """Mean/std of the training videos' scores after the same edge handling and smoothing as the test scores
    (`smooth(scores, protocol)`: another smoothing than the protocol's centred one, e.g. `trailing_smooth`)."""
    if not train_scores:
        raise VadgpuError("--norm train: the dataset has no training videos to take statistics from")
    smooth = smooth or smooth_scores
    pooled = np.concatenate([smooth(s, protocol) for s in train_scores])
    std = float(pooled.std())
    if not std > 0:
        raise VadgpuError("--norm train: every training frame has the same score, so the std is 0; use --norm video")
    return TrainStats(mean=float(pooled.mean()), std=std, frames=int(pooled.size))


def apply_protocol(raw: np.ndarray, protocol: Protocol, stats: TrainStats | None = None) -> np.ndarray:
    """Smooth then normalise (or the other way round, `order`) one video's raw scores (after any edge drop):
    (frames,) -> (frames,) float64."""
    if protocol.order == "normalise-first":
        return smooth_scores(normalise_scores(raw, protocol, stats), protocol)
    return normalise_scores(smooth_scores(raw, protocol), protocol, stats)
