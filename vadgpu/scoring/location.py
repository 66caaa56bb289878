"""Location-normalised tube scores: each tube's error against the training tubes seen at the same place.

A fixed camera sees an object near it large and moving many pixels per frame, a far one small and slow, so the raw
error of predicting a tube's centre frame depends on where the object stands as much as on what it does: a
pedestrian close to the camera can score above a cyclist far from it, and videos whose people walk in different
parts of the scene end up on different scales. Object models therefore score a tube by how unusual its error is
*for that place*: the frame is cut into a grid of cells (columns x rows, `grid_for` below), every training tube (one
per box of every training frame, the same tubes evaluation cuts) falls in the cell of its box centre, and a tube's
score is

    (f(s) - mean[cell]) / std[cell],     f = log for the error scores (mse, patch-max, mixed),
                                         identity for psnr (already a log of the mse)

with the mean and std of f over the cell's training tubes. A cell with few training tubes borrows from the whole
frame: its statistics are those of its own tubes plus `SHRINK` pseudo-tubes that have the global mean and
variance, so an empty cell uses the global statistics. The statistics are part of the model's calibration record
(calibration.py), fitted in a scoring pass over the training videos at the end of training or by `vadgpu
calibrate`; `vadgpu eval` fits them again when the record was fitted on another dataset. A frame's score is then
the max over its tubes of these normalised scores, on a scale that is the same in every video, which is why object
models need no per-video normalisation (their default `--norm none`; docs/models.md, object mode).

The grid follows the camera: cells about CELL_PER_WINDOW tube windows on a side, so a cell holds a few object
widths whatever the frame's size and the objects' (the window is sized from them, objects/window.py):

    columns = round(W / (CELL_PER_WINDOW x window)),  rows = round(H / (CELL_PER_WINDOW x window)),
    each clamped to 1 .. MAX_CELLS

CELL_PER_WINDOW = 1.25 gives UCSD Ped2's 360 x 240 frames with their 48-pixel window the 6 x 4 grid measured there
(docs/results/ped2.md). The grid is chosen where the statistics are fitted and stored with them: a record keeps the
grid it was fitted on (records written before the rule hold 6 x 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vadgpu.errors import VadgpuError

CELL_PER_WINDOW = 1.25  # a grid cell's side in tube windows
MAX_CELLS = 12  # per axis
SHRINK = 20.0  # pseudo-tubes with the global statistics added to every cell
TUBE_NORMS = ("location", "none")
KEY = "tube_location"  # under train_scores in model.pt
LOG_FREE_KINDS = ("psnr",)  # scores already on a log scale
MIN_ERROR = 1e-12  # floor before the log (an exact prediction)


def transform(scores: torch.Tensor, kind: str) -> torch.Tensor:
    """f(score) of the module docstring, in float64."""
    scores = scores.double()
    return scores if kind in LOG_FREE_KINDS else scores.clamp_min(MIN_ERROR).log()


def grid_for(frame_hw: tuple[int, int], window: int) -> tuple[int, int]:
    """(columns, rows) of the location grid of frames of (H, W) pixels and tubes of `window` pixels (module
    docstring); halves round up."""
    side = CELL_PER_WINDOW * window
    height, width = frame_hw
    return tuple(int(min(max(math.floor(extent / side + 0.5), 1), MAX_CELLS)) for extent in (width, height))


def cells(boxes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The grid cell (row-major, int64) of each frame-normalised xyxy box's centre: (M, 4) -> (M,)."""
    columns, rows = grid
    cx = ((boxes[:, 0] + boxes[:, 2]) / 2).double()
    cy = ((boxes[:, 1] + boxes[:, 3]) / 2).double()
    col = (cx * columns).floor().long().clamp(0, columns - 1)
    row = (cy * rows).floor().long().clamp(0, rows - 1)
    return row * columns + col


@dataclass(frozen=True)
class LocationStats:
    """Per-cell mean and std of f(score) over the training tubes (module docstring)."""

    kind: str
    grid: tuple[int, int]
    mean: torch.Tensor  # (rows * columns,) float64
    std: torch.Tensor  # (rows * columns,) float64
    count: torch.Tensor  # (rows * columns,) int64: training tubes per cell

    @classmethod
    def fit(cls, boxes, scores, kind: str, grid: tuple[int, int], shrink: float = SHRINK) -> "LocationStats":
        """Statistics of training tubes with frame-normalised centre boxes (M, 4) and scores (M,) of `kind`, by
        cell of `grid` (columns, rows)."""
        boxes, scores = torch.as_tensor(boxes), torch.as_tensor(scores)
        if scores.numel() < 2:
            raise VadgpuError(f"location-normalised tube scores need training tubes: the training videos gave "
                              f"{scores.numel()} (are there boxes in the box cache's train split?)")
        value = transform(scores, kind)
        cell = cells(boxes, grid)
        size = grid[0] * grid[1]
        count = torch.bincount(cell, minlength=size)
        total = torch.zeros(size, dtype=torch.float64).index_add_(0, cell, value)
        squares = torch.zeros(size, dtype=torch.float64).index_add_(0, cell, value * value)
        mu, var = value.mean(), value.var(unbiased=False)
        mean = (total + shrink * mu) / (count + shrink)
        second = (squares + shrink * (var + mu * mu)) / (count + shrink)
        std = (second - mean * mean).clamp_min(0).sqrt()
        if not bool((std > 0).all()):
            raise VadgpuError("location-normalised tube scores: every training tube has the same score, so the "
                              "std is 0; use --tube-norm none")
        return cls(kind, tuple(grid), mean, std, count)

    def apply(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Normalised scores (M,) of tubes with centre boxes (M, 4) and raw scores (M,), on their device."""
        cell = cells(boxes, self.grid)
        mean, std = self.mean.to(scores.device), self.std.to(scores.device)
        return ((transform(scores, self.kind) - mean[cell]) / std[cell]).to(scores.dtype)

    def to_record(self) -> dict:
        """For model.pt (tensors and plain values only: loadable with weights_only)."""
        return {"kind": self.kind, "grid": list(self.grid), "mean": self.mean, "std": self.std,
                "count": self.count}

    @classmethod
    def from_record(cls, record: dict | None, kind: str) -> "LocationStats | None":
        """The stored statistics (a `to_record` dict, tensors or lists), or None when absent or of another kind."""
        if not record or record.get("kind") != kind:
            return None
        grid = tuple(int(g) for g in record["grid"])
        mean, std = (torch.as_tensor(record[k], dtype=torch.float64) for k in ("mean", "std"))
        count = torch.as_tensor(record["count"], dtype=torch.int64)
        if len(grid) != 2 or not all(t.shape == (grid[0] * grid[1],) for t in (mean, std, count)):
            raise VadgpuError(f"the stored location statistics do not fit their grid {grid}")
        return cls(kind, grid, mean, std, count)


def fit_from_records(records, kind: str, grid: tuple[int, int]) -> LocationStats:
    """LocationStats on `grid` from a TubeScorer's records of the training videos (raw tube scores)."""
    if not records:
        raise VadgpuError("location-normalised tube scores need training tubes: the training videos gave none")
    boxes = np.concatenate([r[2] for r in records])
    scores = np.concatenate([r[3] for r in records])
    return LocationStats.fit(torch.from_numpy(boxes), torch.from_numpy(scores.astype(np.float64)), kind, grid)
