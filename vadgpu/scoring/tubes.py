"""How an object model scores a frame: one tube per box, each tube scored, the frame takes its best tube.

For each batch (clips at the video's resolution, centred on consecutive frames) the boxes of every centre frame
come from a FrameBoxes table (a box cache, or the boxes a live stream just found); each box gives a tube
(objects/tubes.py), the model reconstructs or predicts the tube's centre frame, and the tube's score is

    tube score = location z of its error (scoring/location.py: against the training tubes at the same place)
                 + weight * appearance z of its box (scoring/appearance.py: against the training objects' looks)

(each term where the calibration record has it; without location statistics the raw error). A frame's raw score is
the max over its tubes. A frame without any box has nothing to be anomalous: `finish` gives it the lowest score of
its video, so that it ranks as normal without inventing a scale. Every box keeps its scores in `records`, so that a
user can see *what* was flagged (`objects.csv`), and calibration can fit its statistics from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from vadgpu.bench.stages import stage
from vadgpu.objects.tubes import FrameBoxes, centre_frames, clip_pieces, crop_piece_tubes, tube_windows
from vadgpu.pipelines.loader import FramePiece
from vadgpu.precision import DEFAULT_PRECISION, inference_autocast
from vadgpu.scoring.appearance import AppearanceTerm
from vadgpu.scoring.kinds import error_map, scores_from_errors
from vadgpu.scoring.location import LocationStats

TUBE_CHUNK = 512  # tubes per model call at most: a crowded frame batch must not take the device's memory at once
CPU_TUBE_CHUNK = 32  # on the host: the activations take ~0.75 MiB a tube (512 at once: 390 MiB), and calls that
# small run at least as fast (they stay in the caches; measured alone, 32 tubes a call took less time a tube than
# 512). A batch's tubes are split into calls of equal size (161 tubes: 6 of 26-27, not 5 of 32 and one of 1): a
# call of a single tube takes other kernels, whose last bits differ, while larger calls give the scores of one
# call over all the tubes


class TubeRecord(NamedTuple):
    """Every tube of one batch, on the host: (M,) each, boxes (M, 4) frame-normalised xyxy."""

    video: np.ndarray
    frame: np.ndarray
    boxes: np.ndarray
    raw: np.ndarray  # the tube's error score
    score: np.ndarray  # the tube's score as the frame's max takes it (module docstring)


@dataclass
class TubeScorer:
    """Turns a batch of native-resolution clips into per-frame raw scores via the tubes of its centre frames."""

    boxes: FrameBoxes
    window: int
    size: int
    score: str
    mix_weight: float
    location: LocationStats | None = None
    appearance: AppearanceTerm | None = None
    features: object = None  # a BoxFeatures whose vectors of every tube are kept in `kept_features` (calibration)
    precision: str = DEFAULT_PRECISION  # the tube network's and the appearance backbone's (vadgpu/precision.py)
    records: list[TubeRecord] = field(default_factory=list)
    kept_features: list[torch.Tensor] = field(default_factory=list)
    takes_frame_pieces = True  # score_videos hands it each batch's decoded frames (frame_pieces), not float clips

    def __call__(self, model, clips: torch.Tensor | list[FramePiece], video: torch.Tensor, frame: torch.Tensor
                 ) -> torch.Tensor:
        """(N,) raw frame scores for clips centred at (video, frame), (N, C, T, H, W) or the frames they are cut
        from (a loader batch's `frame_pieces()`); -inf where a frame has no box. Records every tube (TubeRecord)."""
        pieces = clips if isinstance(clips, list) else clip_pieces(clips)
        height, width = pieces[0].frames.shape[-2:]
        device = pieces[0].frames.device
        with stage("boxes"):
            video_np, frame_np = video.cpu().numpy(), frame.cpu().numpy()
            owner_np, rows_np = self.boxes.select_rows(video_np, frame_np)
            boxes_np = self.boxes.boxes[rows_np]
            best = torch.full((len(video_np),), float("-inf"), device=device)
            if owner_np.size == 0:
                return best
            owner = torch.from_numpy(owner_np).to(device)
            centres = torch.from_numpy(boxes_np).to(device)
        with stage("tube cut"):
            windows = tube_windows(centres, (height, width), self.window)  # (M, 4) pixels
        scores = []
        count = len(owner_np)
        calls = -(-count // (CPU_TUBE_CHUNK if device.type == "cpu" else TUBE_CHUNK))
        for call in range(calls):
            part = slice(call * count // calls, (call + 1) * count // calls)
            with stage("tube cut"):
                tubes = crop_piece_tubes(pieces, owner_np[part], windows[part], self.size, self.window)  # (m, C, T, ..)
            with stage("network"):
                with inference_autocast(self.precision, tubes.device):
                    target, recon = model.reconstruct(tubes)
                errors = error_map(target.float(), recon.float())  # float32 whatever the network's precision
                scores.append(scores_from_errors(errors, self.score, self.mix_weight))
        with stage("tube scores"):
            raw = torch.cat(scores)  # (M,)
            tube_scores = raw if self.location is None else self.location.apply(centres, raw)
        if self.appearance is not None or self.features is not None:
            with stage("appearance"):
                middle = centre_frames(pieces)  # (N, C, H, W)
                if self.appearance is not None:
                    tube_scores = tube_scores + self.appearance.weight * self.appearance(
                        middle, owner, centres, precision=self.precision)
                if self.features is not None:
                    self.kept_features.append(self.features(middle, owner, centres, precision=self.precision).cpu())
        with stage("tube scores"):
            best = best.scatter_reduce(0, owner, tube_scores.to(best.dtype), reduce="amax")
            self.records.append(TubeRecord(video_np[owner_np], frame_np[owner_np], boxes_np, raw.cpu().numpy(),
                                           tube_scores.cpu().numpy()))
        return best

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """One video's placed frame scores with the frames without a box filled (`fill_frames_without_objects`)."""
        return fill_frames_without_objects(raw)[0]

    def tubes_scored(self) -> int:
        return sum(len(r.raw) for r in self.records)


def frame_maxima(video: np.ndarray, frame: np.ndarray, values: np.ndarray, num_frames: list[int]
                 ) -> list[np.ndarray]:
    """Per video, each frame's max of `values` over its tubes (tubes at `video`, `frame`); -inf where a frame has
    no tube."""
    out = [np.full(n, -np.inf) for n in num_frames]
    for index in np.unique(video):
        mine = video == index
        np.maximum.at(out[int(index)], frame[mine], values[mine])
    return out


def fill_frames_without_objects(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Give frames scored -inf (no box) the lowest finite score of the video (0 if none has a box); returns the
    filled scores and how many frames had no box."""
    empty = ~np.isfinite(raw)
    filled = raw.copy()
    filled[empty] = raw[~empty].min() if (~empty).any() else 0.0
    return filled, int(empty.sum())
