"""Appearance scores of tubes: how far an object's features lie from every object of the training videos.

Each test box has a unit feature vector from a pretrained detector (objects/appearance.py). Its appearance score is
the cosine distance to its `k`-th nearest training box, on a log scale, as a z-score against the same distance of
the training boxes themselves, each measured against the training boxes of the *other* training videos (a box's
neighbours in its own video are the same person a frame earlier, and would make every training distance ~0):

    a(x) = (log d_k(x, train) - mean) / std,     mean, std of log d_k(y, train \\ video(y)) over training boxes y

With `tube_norm="location"` a tube's score is then its location-normalised error plus `weight` times a(x): both
are z-scores against the training tubes, so they add on one scale, and the frame's score stays the max over its
tubes (object_scores.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vadgpu.errors import VadgpuError

NEIGHBOURS = 1  # k: the distance to the nearest training box
MIN_DISTANCE = 1e-6  # floor before the log (a duplicate of a training box)
CHUNK = 2048  # query rows per distance matrix


@dataclass(frozen=True)
class AppearanceBank:
    """The training boxes' features and the statistics of their own leave-one-video-out distances."""

    features: torch.Tensor  # (N, D) float32 unit vectors
    mean: float
    std: float
    k: int

    @classmethod
    def fit(cls, features: np.ndarray, video: np.ndarray, k: int = NEIGHBOURS) -> "AppearanceBank":
        """From the training boxes' features (N, D) and the training video of each (N,)."""
        bank = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        video = torch.as_tensor(np.asarray(video), dtype=torch.int64)
        if k < 1:
            raise VadgpuError(f"appearance: k = {k} neighbours, must be >= 1")
        if len(torch.unique(video)) < 2 or len(bank) <= k:
            raise VadgpuError(f"appearance scores need boxes in at least two training videos (more than {k}); the "
                              f"box cache's train split gave {len(bank)} boxes in {len(torch.unique(video))} videos")
        own = _log_distances(bank, bank, k, video, video)
        std = float(own.std())
        if not std > 0:
            raise VadgpuError("appearance scores: every training box lies at the same distance from the others")
        return cls(bank, float(own.mean()), std, k)

    def score(self, features: np.ndarray) -> np.ndarray:
        """a(x) of the module docstring for query features (M, D): (M,) float32."""
        query = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        if len(query) == 0:
            return np.zeros(0, np.float32)
        if query.shape[1] != self.features.shape[1]:
            raise VadgpuError(f"appearance: query features have {query.shape[1]} values, the training boxes' "
                              f"{self.features.shape[1]}")
        return ((_log_distances(query, self.features, self.k) - self.mean) / self.std).float().numpy()


def _log_distances(query: torch.Tensor, bank: torch.Tensor, k: int, query_video: torch.Tensor | None = None,
                   bank_video: torch.Tensor | None = None) -> torch.Tensor:
    """log of each query's cosine distance to its k-th nearest bank row, leaving out bank rows of the query's own
    video when videos are given: (M,) float64."""
    out = []
    for start in range(0, len(query), CHUNK):
        part = slice(start, start + CHUNK)
        distance = (1.0 - query[part] @ bank.T).clamp_min(MIN_DISTANCE)  # (m, N)
        if query_video is not None:
            distance[query_video[part, None] == bank_video[None]] = float("inf")
        out.append(distance.topk(k, dim=1, largest=False).values[:, -1].double().log())
    return torch.cat(out)


def appearance_scores(weights, boxes_path, train: list, test: list, test_boxes, dataset, progress: bool = True
                      ) -> tuple[np.ndarray, dict]:
    """The appearance z-score of every box of `test_boxes` (the FrameBoxes of the `test` videos, in its row order)
    against the boxes of the `train` videos in the box cache at `boxes_path`, with features of the Darknet
    `weights` (objects/appearance.py), each split's features read from the dataset's cache folder when computed
    before. Returns (scores, a record for metrics.json)."""
    from vadgpu.data.prepare import cache_dir_for
    from vadgpu.objects.appearance import DarknetFeatures, cached_box_features
    from vadgpu.objects.tubes import FrameBoxes

    extractor = DarknetFeatures(weights)
    cache_dir = cache_dir_for(dataset, "cpu").parent  # the dataset's folder, beside its default box cache
    record = {"model": str(Path(weights).resolve()), "features": extractor.describe(), "neighbours": NEIGHBOURS}
    tables = {"train": FrameBoxes.load(boxes_path, train, "train", dataset.name), "test": test_boxes}
    features = {}
    for split, videos in (("train", train), ("test", test)):
        features[split], path, cached = cached_box_features(extractor, boxes_path, videos, tables[split], split,
                                                            cache_dir, progress)
        record[f"{split}_features"] = {"file": str(path), "boxes": len(features[split]), "cached": cached}
    bank = AppearanceBank.fit(features["train"], tables["train"].video)
    record["train_log_distance"] = {"mean": bank.mean, "std": bank.std}
    return bank.score(features["test"]), record
