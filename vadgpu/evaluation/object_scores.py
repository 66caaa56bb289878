"""Scores in object mode: one tube per box of a frame, the frame's score is the largest of its tubes' scores.

For each test batch (clips at the video's resolution, centred on consecutive frames) the boxes of every centre frame
come from the box cache; each box gives a tube (objects/tubes.py), the model reconstructs or predicts the tube's
centre frame, and the tube's score is the chosen score of that error map, normalised by the training tubes at its
place in the frame where the protocol says so (`tube_norm="location"`, tube_location.py), plus a weighted z-score of
how unlike the training objects the box looks where the protocol names an appearance model (tube_appearance.py).
A frame's raw score is the max over its tubes. A frame without any box has nothing to be anomalous: it gets the
lowest score of its video, so that it ranks as normal without inventing a scale (documented in the README). Every
box keeps its score, so that a user can see *what* was flagged (`objects.csv`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vadgpu.errors import VadgpuError
from vadgpu.evaluation.scores import error_map, scores_from_errors
from vadgpu.evaluation.tube_location import LocationStats
from vadgpu.log import logger
from vadgpu.objects.tubes import FrameBoxes, crop_tubes, tube_windows

TUBE_CHUNK = 512  # tubes per model call: a crowded frame batch must not take the device's memory at once


@dataclass
class ObjectScorer:
    """Turns a batch of native-resolution clips into per-frame scores via the tubes of its centre frames."""

    boxes: FrameBoxes
    window: int
    size: int
    score: str
    mix_weight: float
    location: LocationStats | None = None
    appearance: np.ndarray | None = None  # (rows of `boxes`,) appearance z-score of each box (tube_appearance.py)
    appearance_weight: float = 1.0
    records: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def __call__(self, model, clips: torch.Tensor, video: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """(N,) raw frame scores for clips (N, C, T, H, W) centred at (video, frame); -inf where a frame has no box.

        Also records (video, frame, box, raw score, score) of every tube for the per-object report; the score is
        the location-normalised one when `location` is set, else the raw one, plus `appearance_weight` times the
        box's appearance z-score when `appearance` is set."""
        height, width = clips.shape[-2:]
        video_np, frame_np = video.cpu().numpy(), frame.cpu().numpy()
        owner_np, rows_np = self.boxes.select_rows(video_np, frame_np)
        boxes_np = self.boxes.boxes[rows_np]
        best = torch.full((clips.shape[0],), float("-inf"), device=clips.device)
        if owner_np.size == 0:
            return best
        owner = torch.from_numpy(owner_np).to(clips.device)
        centres = torch.from_numpy(boxes_np).to(clips.device)
        windows = tube_windows(centres, (height, width), self.window)  # (M, 4) pixels
        scores = []
        for start in range(0, owner.shape[0], TUBE_CHUNK):
            part = slice(start, start + TUBE_CHUNK)
            tubes = crop_tubes(clips, owner[part], windows[part], self.size)  # (m, C, T, S, S)
            target, recon = model.reconstruct(tubes)
            scores.append(scores_from_errors(error_map(target, recon), self.score, self.mix_weight))
        raw = torch.cat(scores)  # (M,)
        tube_scores = raw if self.location is None else self.location.apply(centres, raw)
        if self.appearance is not None:
            looks = torch.from_numpy(self.appearance[rows_np]).to(tube_scores)
            tube_scores = tube_scores + self.appearance_weight * looks
        best = best.scatter_reduce(0, owner, tube_scores, reduce="amax")
        self.records.append((video_np[owner_np], frame_np[owner_np], boxes_np, raw.cpu().numpy(),
                             tube_scores.cpu().numpy()))
        return best


def write_object_csvs(out_dir, video_names: list[str], records, frame_hw: tuple[int, int]) -> list:
    """One CSV per video in `out_dir`: every scored box, frame by frame, best first (frame, rank, score, raw_score,
    x1, y1, x2, y2 in the video's pixels, the window's centre box). Returns the paths written."""
    import csv
    import io

    from vadgpu.evaluation.report import safe_names
    from vadgpu.io import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = frame_hw
    if records:
        video, frame, boxes, raw, score = (np.concatenate(part) for part in zip(*records))
    else:
        video = frame = raw = score = np.zeros(0)
        boxes = np.zeros((0, 4))
    pixels = boxes * np.array([width, height, width, height])
    paths, file_names = [], safe_names(video_names)  # distinct: two videos never share a CSV
    for index, name in enumerate(video_names):
        mine = np.flatnonzero(video == index)
        mine = mine[np.lexsort((-score[mine], frame[mine]))]  # by frame, then best first
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["frame", "rank", "score", "raw_score", "x1", "y1", "x2", "y2"])
        rank = 0
        for j, row in enumerate(mine):
            rank = rank + 1 if j and frame[mine[j - 1]] == frame[row] else 1
            writer.writerow([int(frame[row]), rank, f"{score[row]:.6g}", f"{raw[row]:.6g}",
                             *(f"{v:.1f}" for v in pixels[row])])
        path = out_dir / f"{file_names[index]}.csv"
        atomic_write_text(path, text.getvalue())
        paths.append(path)
    return paths


def fill_frames_without_objects(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Give frames scored -inf (no box) the lowest finite score of the video (0 if none has a box); returns the
    filled scores and how many frames had no box."""
    empty = ~np.isfinite(raw)
    filled = raw.copy()
    filled[empty] = raw[~empty].min() if (~empty).any() else 0.0
    return filled, int(empty.sum())


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
    logger.info(f"--boxes {NO_BOXES}: {checkpoint} holds a frame model ({name}), which scores whole frames and "
                "reads no boxes at evaluation; nothing to turn off")
    return None
