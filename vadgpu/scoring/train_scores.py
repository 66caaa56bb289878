"""The training videos' scores, computed once at the end of training and stored in the weights file (model.pt).

A trained model's raw scores have no natural scale; normalising by what the model gives on normal data (its
training videos) does not need the video being scored to be finished, so a live system can use it, and so can
`vadgpu eval --norm train` without another pass over the training split. Training (engine/train.py) runs the
trained model over every training video in test order (every frame once as a centre, edges replicated: the same
`score_videos` that evaluation uses) and stores the raw per-frame scores, per video, under `train_scores`:

    names      the training videos, in order
    patch-max, psnr, mse   one float64 tensor of raw scores per video (all three from one pass; the dual-path
               `mixed` score is w * patch-max + (1 - w) * mse of these, for any w)
    dataset, root, variant   where they come from, so a reader can tell whether they fit its data

This is the frame models' record. Object models keep theirs in the calibration record (scoring/calibration.py:
location statistics, appearance bank, frame scores under every term); older object weights files hold the
location statistics (`tube_location`) and `mse-location` frame scores here, which calibration.py still reads.

Stored raw, the scores give the statistics of any smoothing and edge handling exactly (`frame_stats`): the same
numbers `fit_train_stats` computes from a fresh pass. The file grows by 24 bytes per training frame (Ped2: 61 kB).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from vadgpu.data.types import PreparedVideo
from vadgpu.scoring.protocol import Protocol, TrainStats, fit_train_stats, scored_frames
from vadgpu.errors import VadgpuError
from vadgpu.scoring.kinds import negated_psnr, patch_max

STORED_KINDS = ("patch-max", "psnr", "mse")
KEY = "train_scores"


def compute_train_scores(model: torch.nn.Module, videos: Sequence[PreparedVideo], device: torch.device, *,
                         loader: str = "auto", batch_size: int = 16, progress: bool = False,
                         source: dict | None = None) -> dict:
    """Raw scores of every frame of the training `videos` of a frame model (the module docstring's layout)."""
    from vadgpu.scoring.frames import FrameScorer
    from vadgpu.scoring.run import place, score_videos

    videos = list(videos)
    record = {"names": [v.name for v in videos], **(source or {})}
    extra: dict[str, list[torch.Tensor]] = {"patch-max": [], "psnr": []}
    ids: list[tuple[torch.Tensor, torch.Tensor]] = []

    def collect(_target, errors, _scores, video, frame) -> None:  # the other kinds from the same error maps
        extra["patch-max"].append(patch_max(errors))
        extra["psnr"].append(negated_psnr(errors))
        ids.append((video, frame))

    mse = score_videos(model, videos, FrameScorer(Protocol(score="mse"), on_errors=collect), device, batch_size,
                       progress, desc="scoring the training videos", loader=loader)
    video_ids, frame_ids = torch.cat([v for v, _ in ids]), torch.cat([f for _, f in ids])
    for kind, parts in extra.items():
        record[kind] = [torch.from_numpy(r) for r in place(videos, torch.cat(parts), video_ids, frame_ids)]
    record["mse"] = [torch.from_numpy(r) for r in mse]
    return record


def to_json(scores: dict | None) -> dict | None:
    """Stored training scores (tensors per video) as plain lists, for JSON metadata (an exported model)."""
    if not scores:
        return None
    return {key: [v.double().tolist() for v in value] if key in STORED_KINDS + LEGACY_KINDS else value
            for key, value in scores.items() if not isinstance(value, dict)}


def from_json(scores: dict | None) -> dict | None:
    """The inverse of `to_json`: lists of floats back to float64 tensors (malformed values: a VadgpuError)."""
    if not scores:
        return None
    if not isinstance(scores, dict):
        raise VadgpuError(f"stored training scores must be a mapping, not {type(scores).__name__}")
    out = dict(scores)
    for kind in STORED_KINDS + LEGACY_KINDS:
        if kind in out:
            try:
                out[kind] = [torch.tensor(v, dtype=torch.float64) for v in out[kind]]
            except (TypeError, ValueError, RuntimeError) as exc:
                raise VadgpuError(f"stored training scores of {kind} are not lists of numbers ({exc})") from exc
            if any(t.dim() != 1 for t in out[kind]):
                raise VadgpuError(f"stored training scores of {kind} must be one list of numbers per video")
    return out


def location_kind(kind: str) -> str:
    """The stored key of an object model's frame scores from location-normalised tubes of score `kind`."""
    return f"{kind}-location"


# object models' frame scores in weights files from before the calibration record
LEGACY_KINDS = (location_kind("mse"),)


def raw_train_scores(stored: dict | None, protocol: Protocol) -> list[np.ndarray] | None:
    """A frame model's stored raw training scores of `protocol.score` (mixed: from patch-max and mse), or None if
    absent (an object model's are in its calibration record)."""
    if not stored:
        return None
    kind = protocol.score
    if kind == "mixed":
        if "patch-max" not in stored or "mse" not in stored:
            return None
        w = protocol.mix_weight
        return [w * np.asarray(p, dtype=np.float64) + (1 - w) * np.asarray(m, dtype=np.float64)
                for p, m in zip(stored["patch-max"], stored["mse"])]
    if kind not in stored:
        return None
    return [np.asarray(s, dtype=np.float64) for s in stored[kind]]


def frame_stats(frame_scores: list[np.ndarray] | None, protocol: Protocol, temporal: int, names: list[str],
                source, smooth: Callable[[np.ndarray, Protocol], np.ndarray] | None = None) -> TrainStats:
    """Statistics of the training videos' raw frame scores (a frame model's stored kind, an object model's
    calibration record) under the protocol's edges and smoothing (`smooth` replaces its centred smoothing, e.g.
    with live scoring's trailing one); a clear error naming `source` when there are none."""
    if not frame_scores:
        raise VadgpuError(f"--norm train: {source} holds no training scores for --score {protocol.score} under "
                          "these options (written at the end of `vadgpu train`, or by `vadgpu calibrate` for an "
                          "object model); use --norm none (live: with --threshold) or --norm video")
    names = names if len(names) == len(frame_scores) else [""] * len(frame_scores)
    return fit_train_stats([s[scored_frames(s.size, temporal, protocol, n)] for s, n in zip(frame_scores, names)],
                           protocol, smooth=smooth)
