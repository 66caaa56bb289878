"""The appearance term of a tube's score: how far its object's features lie from every object of the training videos.

Each box has a unit feature vector from a pretrained detector's backbone (objects/appearance.py). Its appearance
score is the cosine distance to its `k`-th nearest training box, on a log scale, as a z-score against the same
distance of the training boxes themselves, each measured against the training boxes of the *other* training
videos (a box's neighbours in its own video are the same person a frame earlier, and would make every training
distance ~0):

    a(x) = (log d_k(x, bank) - mean) / std,     mean, std of log d_k(y, bank \\ video(y)) over training boxes y

The bank is the training boxes' features, or a greedy k-centre coreset of them when there are more than
`max_rows` (each kept row is the training box farthest from those kept before it, so the bank still covers every
look the training videos show); the statistics are taken against the bank as stored, over every training box. A
tube's score is its location-normalised error plus `weight` times a(x): both are z-scores against the training
tubes, so they add on one scale (scoring/tubes.py). The bank and its statistics live in the model's calibration
record (scoring/calibration.py) and score on the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from vadgpu.bench.stages import stage
from vadgpu.errors import VadgpuError
from vadgpu.objects.appearance import BoxFeatures
from vadgpu.precision import DEFAULT_PRECISION

NEIGHBOURS = 1  # k: the distance to the nearest training box
MIN_DISTANCE = 1e-6  # floor before the log (a duplicate of a training box)
CHUNK = 2048  # query rows per distance matrix
MAX_BANK = 4096  # bank rows kept in the calibration record (a coreset beyond)
DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True)
class AppearanceBank:
    """The training boxes' features (or a coreset of them) and the statistics of their leave-one-video-out
    distances."""

    features: torch.Tensor  # (B, D) float unit vectors
    video: torch.Tensor  # (B,) int64: training video of each row
    mean: float
    std: float
    k: int = NEIGHBOURS
    boxes: int = 0  # training boxes the bank was made from

    @classmethod
    def fit(cls, features: torch.Tensor, video: torch.Tensor, k: int = NEIGHBOURS, max_rows: int = MAX_BANK
            ) -> "AppearanceBank":
        """From every training box's features (N, D) and training video (N,)."""
        features = torch.as_tensor(features).float()
        video = torch.as_tensor(video).long()
        if k < 1:
            raise VadgpuError(f"appearance: k = {k} neighbours, must be >= 1")
        if len(torch.unique(video)) < 2 or len(features) <= k:
            raise VadgpuError(f"appearance scores need boxes in at least two training videos (more than {k}); the "
                              f"training videos gave {len(features)} boxes in {len(torch.unique(video))} videos")
        keep = k_centre(features, max_rows) if len(features) > max_rows else torch.arange(len(features))
        bank, bank_video = features[keep], video[keep]
        own = log_distances(features, bank, k, video, bank_video)
        own = own[torch.isfinite(own)]
        std = float(own.std()) if own.numel() > 1 else 0.0
        if not std > 0:
            raise VadgpuError("appearance scores: every training box lies at the same distance from the others")
        return cls(bank.half(), bank_video, float(own.mean()), std, k, len(features))

    def to(self, device: torch.device) -> "AppearanceBank":
        return AppearanceBank(self.features.to(device), self.video.to(device), self.mean, self.std, self.k,
                              self.boxes)

    def score(self, features: torch.Tensor, video: torch.Tensor | None = None) -> torch.Tensor:
        """a(x) of the module docstring for query features (M, D) on the bank's device: (M,) float32. With
        `video` (M,) (training boxes), each query leaves out the bank rows of its own video."""
        if len(features) == 0:
            return features.new_zeros(0, dtype=torch.float32)
        if features.shape[1] != self.features.shape[1]:
            raise VadgpuError(f"appearance: query features have {features.shape[1]} values, the training boxes' "
                              f"{self.features.shape[1]}")
        bank_video = None if video is None else self.video
        distances = log_distances(features.float(), self.float_features, self.k, video, bank_video)
        return ((distances - self.mean) / self.std).float()

    @cached_property
    def float_features(self) -> torch.Tensor:
        """The rows as float32 (they are stored in half precision), converted once, not for every query."""
        return self.features.float()

    def to_record(self) -> dict:
        return {"features": self.features.cpu(), "video": self.video.cpu(), "mean": self.mean, "std": self.std,
                "k": self.k, "boxes": self.boxes}

    @classmethod
    def from_record(cls, record: dict) -> "AppearanceBank":
        try:
            features, video = torch.as_tensor(record["features"]), torch.as_tensor(record["video"]).long()
            mean, std, k = float(record["mean"]), float(record["std"]), int(record["k"])
            boxes = int(record.get("boxes", len(features)))
        except (KeyError, TypeError, ValueError) as exc:
            raise VadgpuError(f"the stored appearance bank is incomplete or malformed ({exc!r})") from exc
        if features.dim() != 2 or video.shape != (len(features),) or not std > 0 or k < 1 or len(features) <= k:
            raise VadgpuError(f"the stored appearance bank does not fit together: features {tuple(features.shape)}, "
                              f"videos {tuple(video.shape)}, std {std}, k {k}")
        if not bool(torch.isfinite(features.float()).all()):
            raise VadgpuError("the stored appearance bank holds values that are not finite")
        return cls(features, video, mean, std, k, boxes)


def log_distances(query: torch.Tensor, bank: torch.Tensor, k: int, query_video: torch.Tensor | None = None,
                  bank_video: torch.Tensor | None = None) -> torch.Tensor:
    """log of each query's cosine distance to its k-th nearest bank row, leaving out bank rows of the query's own
    video when videos are given: (M,) float64 (inf where no row is left)."""
    out = []
    for start in range(0, len(query), CHUNK):
        part = slice(start, start + CHUNK)
        distance = (1.0 - query[part] @ bank.T).clamp_min(MIN_DISTANCE)  # (m, B)
        if query_video is not None:
            distance = distance.masked_fill(query_video[part, None] == bank_video[None], float("inf"))
        out.append(distance.topk(k, dim=1, largest=False).values[:, -1].double().log())
    return torch.cat(out)


def k_centre(features: torch.Tensor, count: int) -> torch.Tensor:
    """Greedy k-centre coreset: `count` row indices of `features` (unit vectors), each the row farthest (cosine)
    from those picked before it, starting from row 0."""
    picked = torch.empty(count, dtype=torch.int64)
    nearest = torch.full((len(features),), float("inf"), dtype=features.dtype, device=features.device)
    row = 0
    for i in range(count):
        picked[i] = row
        nearest = torch.minimum(nearest, 1.0 - features @ features[row])
        row = int(nearest.argmax())
    return picked


class AppearanceTerm:
    """What a tube scorer needs to add the appearance term: the features, the bank and the term's weight, on one
    device. `__call__(frames, owner, boxes, precision)` -> (M,) a(x) of each box (`precision`: the backbone's)."""

    def __init__(self, features: BoxFeatures, bank: AppearanceBank, weight: float = DEFAULT_WEIGHT):
        if not weight > 0 or weight == float("inf"):
            raise VadgpuError(f"appearance weight {weight} must be a positive number")
        self.features, self.bank, self.weight = features, bank, float(weight)

    def to(self, device: torch.device) -> "AppearanceTerm":
        self.features = self.features.to(device)
        self.bank = self.bank.to(device)
        return self

    def __call__(self, frames: torch.Tensor, owner: torch.Tensor, boxes: torch.Tensor,
                 precision: str = DEFAULT_PRECISION) -> torch.Tensor:
        features = self.features(frames, owner, boxes, precision=precision)
        with stage("appearance.bank"):
            return self.bank.score(features)
