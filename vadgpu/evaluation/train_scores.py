"""The training videos' scores, computed once at the end of training and stored in the weights file (model.pt).

A trained model's raw scores have no natural scale; normalising by what the model gives on normal data (its
training videos) does not need the video being scored to be finished, so a live system can use it, and so can
`vadgpu eval --norm train` without another pass over the training split. Training (engine/train.py) runs the
trained model over every training video in test order (every frame once as a centre, edges replicated: the same
`score_videos` that evaluation uses) and stores the raw per-frame scores, per video, under `train_scores`:

    names      the training videos, in order
    patch-max, psnr, mse   one float64 tensor of raw scores per video (frame models: all three from one pass;
               the dual-path `mixed` score is w * patch-max + (1 - w) * mse of these, for any w)
    score kinds of object models: only `mse`, the object default (their frame score is a max over tubes, which
               has to be taken per kind), and `mse-location`, the same max over the location-normalised tubes
    tube_location  object models: the training tubes' statistics by place (tube_location.py)
    dataset, root, variant   where they come from, so a reader can tell whether they fit its data

Stored raw, the scores give the statistics of any smoothing and edge handling exactly (`stats_for`): the same
numbers `fit_train_stats` computes from a fresh pass. The file grows by 24 bytes per training frame (Ped2: 61 kB).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from vadgpu.data.types import PreparedVideo
from vadgpu.evaluation.protocol import Protocol, TrainStats, fit_train_stats, kept_frames
from vadgpu.evaluation.scores import OBJECT_SCORE, negated_psnr, patch_max

STORED_KINDS = ("patch-max", "psnr", "mse")
KEY = "train_scores"


def compute_train_scores(model: torch.nn.Module, videos: Sequence[PreparedVideo], device: torch.device, *,
                         loader: str = "auto", objects=None, batch_size: int = 16, progress: bool = False,
                         source: dict | None = None) -> dict:
    """Raw scores of every frame of the training `videos` (see the module docstring for the layout)."""
    from vadgpu.evaluation.runner import _place, score_videos

    videos = list(videos)
    record = {"names": [v.name for v in videos], **(source or {})}
    if model.config.clips == "objects":
        from vadgpu.evaluation.object_scores import fill_frames_without_objects
        from vadgpu.evaluation.tube_location import KEY as LOCATION_KEY
        from vadgpu.evaluation.tube_location import fit_from_records, frame_maxima

        raw = score_videos(model, videos, Protocol(score=OBJECT_SCORE), device, batch_size, progress,
                           desc="scoring the training videos", objects=objects, loader=loader)
        record[OBJECT_SCORE] = [torch.from_numpy(r) for r in raw]
        location = fit_from_records(objects.records, OBJECT_SCORE)
        record[LOCATION_KEY] = location.to_record()
        normalised = frame_maxima(objects.records, [v.num_frames for v in videos], location)
        record[location_kind(OBJECT_SCORE)] = [torch.from_numpy(fill_frames_without_objects(r)[0])
                                               for r in normalised]
        return record
    extra: dict[str, list[torch.Tensor]] = {"patch-max": [], "psnr": []}
    ids: list[tuple[torch.Tensor, torch.Tensor]] = []

    def collect(_target, errors, video, frame) -> None:  # the other kinds from the same error maps
        extra["patch-max"].append(patch_max(errors))
        extra["psnr"].append(negated_psnr(errors))
        ids.append((video, frame))

    mse = score_videos(model, videos, Protocol(score="mse"), device, batch_size, progress,
                       desc="scoring the training videos", on_batch=collect, loader=loader)
    video_ids, frame_ids = torch.cat([v for v, _ in ids]), torch.cat([f for _, f in ids])
    for kind, parts in extra.items():
        record[kind] = [torch.from_numpy(r) for r in _place(videos, torch.cat(parts), video_ids, frame_ids)]
    record["mse"] = [torch.from_numpy(r) for r in mse]
    return record


def location_kind(kind: str) -> str:
    """The stored key of an object model's frame scores from location-normalised tubes of score `kind`."""
    return f"{kind}-location"


def raw_train_scores(stored: dict | None, protocol: Protocol) -> list[np.ndarray] | None:
    """The stored raw training scores of `protocol.score` (mixed: from patch-max and mse), or None if absent."""
    if not stored:
        return None
    kind = protocol.score
    if protocol.tube_norm == "location":
        kind = location_kind(kind)
    if kind == "mixed":
        if "patch-max" not in stored or "mse" not in stored:
            return None
        w = protocol.mix_weight
        return [w * np.asarray(p, dtype=np.float64) + (1 - w) * np.asarray(m, dtype=np.float64)
                for p, m in zip(stored["patch-max"], stored["mse"])]
    if kind not in stored:
        return None
    return [np.asarray(s, dtype=np.float64) for s in stored[kind]]


def stats_for(stored: dict | None, protocol: Protocol, temporal: int,
              smooth: Callable[[np.ndarray, Protocol], np.ndarray] | None = None) -> TrainStats | None:
    """Training statistics for `protocol` from stored scores (None when the file has none for its score kind).

    `smooth` replaces the protocol's (centred) smoothing, e.g. with live scoring's trailing one."""
    raw = raw_train_scores(stored, protocol)
    if raw is None:
        return None
    kept = [s[kept_frames(s.size, temporal, protocol.drop_edges, name)]
            for s, name in zip(raw, stored.get("names") or [""] * len(raw))]
    return fit_train_stats(kept, protocol, smooth=smooth)


def smoothed_train_scores(stored: dict, protocol: Protocol,
                          smooth: Callable[[np.ndarray, Protocol], np.ndarray]) -> np.ndarray | None:
    """Every training frame's smoothed score, pooled (for thresholds), or None when the kind is not stored."""
    raw = raw_train_scores(stored, protocol)
    return None if raw is None else np.concatenate([smooth(s, protocol) for s in raw])
