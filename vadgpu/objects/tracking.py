"""Track ids across a video's frames: an IoU tracker (Hungarian matching), or the detector's own tracker.

DDL perturbs one object tracked through all T frames of a clip, so the cache needs ids that persist across
frames. Ultralytics detectors track with ByteTrack (`detector.tracks_objects`); the others go through
`IoUTracker`, which suits fixed cameras where an object moves little between frames. scipy's matching is imported
where it runs: scoring, which reads cached boxes, does not load it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from vadgpu.objects.detectors import Detections, Detector


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (M, 4) and b (K, 4) -> (M, K)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]  # (M, 1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]  # (1, K, 4)
    iw = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(min=0)
    ih = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]).clip(min=0) * (a[..., 3] - a[..., 1]).clip(min=0)
    area_b = (b[..., 2] - b[..., 0]).clip(min=0) * (b[..., 3] - b[..., 1]).clip(min=0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class IoUTracker:
    """Assign track ids frame by frame: optimal one-to-one matching of boxes to live tracks by IoU.

    A detection joins the track whose last box overlaps it most (Hungarian assignment on 1 - IoU, pairs below
    `iou_threshold` never match); unmatched detections start new tracks. A track survives `max_age` frames
    without a detection (a missed detection should not split an object in two) and is then closed.
    Classes are ignored by default because detectors flip between related classes (car / truck) of one object.
    Defaults measured on Ped2's training set with yolov3-tiny: against (0.3, 2) they give 16% fewer, longer tracks
    (tracks of 16+ frames hold 11.7k instead of 9.4k of the 22.6k boxes), the loss being mostly flickering
    low-confidence detections rather than motion.
    """

    def __init__(self, iou_threshold: float = 0.2, max_age: int = 4, match_classes: bool = False) -> None:
        self.iou_threshold, self.max_age, self.match_classes = iou_threshold, max_age, match_classes
        self.reset()

    def reset(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._boxes = np.zeros((0, 4), np.float32)
        self._classes = np.zeros(0, np.int64)
        self._age = np.zeros(0, np.int64)  # frames since the track was last matched
        self._next_id = 0

    def update(self, boxes: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Track ids (K,) int64 for this frame's boxes (K, 4)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        classes = np.zeros(len(boxes), np.int64) if classes is None else np.asarray(classes, np.int64)
        ids = np.full(len(boxes), -1, np.int64)
        matched_tracks = np.zeros(len(self._ids), bool)
        if len(boxes) and len(self._ids):
            from scipy.optimize import linear_sum_assignment

            iou = iou_matrix(self._boxes, boxes)  # (tracks, detections)
            if self.match_classes:
                iou = np.where(self._classes[:, None] == classes[None, :], iou, 0.0)
            rows, cols = linear_sum_assignment(1.0 - iou)
            ok = iou[rows, cols] >= self.iou_threshold
            rows, cols = rows[ok], cols[ok]
            ids[cols] = self._ids[rows]
            self._boxes[rows] = boxes[cols]
            self._classes[rows] = classes[cols]
            matched_tracks[rows] = True
        self._age = np.where(matched_tracks, 0, self._age + 1)
        alive = self._age <= self.max_age
        new = ids < 0
        ids[new] = self._next_id + np.arange(new.sum())
        self._next_id += int(new.sum())
        self._ids = np.concatenate([self._ids[alive], ids[new]])
        self._boxes = np.concatenate([self._boxes[alive], boxes[new]])
        self._classes = np.concatenate([self._classes[alive], classes[new]])
        self._age = np.concatenate([self._age[alive], np.zeros(new.sum(), np.int64)])
        return ids


def track_video(
    detector: Detector,
    source,
    chunk: int = 16,
    tracker: IoUTracker | None = None,
    on_frames: Callable[[int], None] | None = None,
) -> list[Detections]:
    """Detect and track every frame of `source` (an objects.frames.FrameSource): one Detections per frame, with
    `tracks` set. Uses the detector's own tracker where it has one, else `tracker` (a fresh IoUTracker by default).
    `on_frames(n)` is called after each chunk (progress bars)."""
    detector.begin_video(source)
    if not detector.tracks_objects:
        tracker = tracker or IoUTracker()
        tracker.reset()
    out: list[Detections] = []
    for frames in source.chunks(chunk):
        if detector.tracks_objects:
            dets = detector.track(frames)
        else:
            dets = detector.detect(frames)
            for det in dets:
                det.tracks = tracker.update(det.boxes, det.classes)
        out.extend(dets)
        if on_frames is not None:
            on_frames(len(frames))
    return out
