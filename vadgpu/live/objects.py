"""Live scoring of object models: boxes found as the frames arrive, one tube per box, the frame's max.

Offline, background subtraction takes its background as the median of frames spread over the whole video; a
stream has only the frames so far. `LiveBoxes` keeps every `BACKGROUND_STRIDE`-th frame, up to the detector's
`background_frames` (the most recent ones once full), and the background is their median, refreshed whenever a
frame is kept. It starts from the camera's empty scene stored in the model's calibration record (the training
videos' background, `Calibration.background`): the pool of `background_frames` starts as that many copies of it,
and each kept frame replaces one, so the background is the stored scene until the stream has given half the pool
(with the defaults 30 kept frames: 150 frames, 6 s at 25 fps) and the stream's own median once the pool is full.
Without a stored scene of the stream's frame size, the background starts as the first frame alone, so whoever is
in the picture then shows as a moving object until the background has seen the scene without them (a few seconds
at 25 fps). Boxes are found on each clip's centre frame, which has arrived T // 2 frames before the score is due.

Each box gives a tube scored by the same TubeScorer as offline scoring (scoring/tubes.py, built from the model's
calibration record: the same window, crop, model, location and appearance terms), and the frame's raw score is the
max over its tubes. A frame without a box takes the lowest raw score of the stream so far (offline it takes its
video's lowest; a stream has no end to wait for), or, before any frame had a box, the lowest of the training
videos' frames. A file replayed live with its box cache (`boxes`) takes each frame's boxes from the cache instead
of background subtraction, and then scores every frame exactly as `vadgpu score` does.
"""

from __future__ import annotations

import numpy as np
import torch

from vadgpu.bench.stages import stage
from vadgpu.errors import VadgpuError
from vadgpu.log import logger
from vadgpu.objects.detectors import BackgroundSubtractionDetector
from vadgpu.objects.tubes import FrameBoxes

BACKGROUND_STRIDE = 5  # keep every 5th frame for the background
TOP_BOXES = 3  # boxes reported per scored frame (best first)


class LiveBoxes:
    """Background subtraction on a stream (module docstring)."""

    def __init__(self, detector: BackgroundSubtractionDetector | None = None, scene: np.ndarray | None = None):
        self.detector = detector or BackgroundSubtractionDetector()
        self.scene = scene  # (H, W) uint8: the stored empty scene the background starts from, or None
        self.kept: list[np.ndarray] = []  # the kept frames as the detector compares them (gray, blurred)
        self.seen = 0

    def observe(self, image: np.ndarray) -> None:
        """Every arriving frame (H, W, 3) BGR uint8, in order."""
        if self.seen % BACKGROUND_STRIDE == 0:
            pool = self.detector.background_frames
            gray = self.detector.gray(image)
            if self.scene is not None and self.scene.shape != gray.shape:
                logger.info(f"the stream's frames ({gray.shape[1]}x{gray.shape[0]}) are not the size of the "
                            f"model's stored scene ({self.scene.shape[1]}x{self.scene.shape[0]}): the live "
                            "background starts from the stream alone")
                self.scene = None
            self.kept = (self.kept + [gray])[-pool:]
            if self.scene is None:
                self.detector.set_gray_background(self.kept)
            elif 2 * len(self.kept) > pool:  # the stream's frames are the pool's majority
                self.detector.set_gray_background(self.kept + [self.scene] * (pool - len(self.kept)))
            elif self.detector.background is None:  # the scene is the majority: the median is the scene itself
                self.detector.background = self.scene.astype(np.float32)
        self.seen += 1

    def boxes(self, image: np.ndarray) -> np.ndarray:
        """Frame-normalised xyxy boxes (M, 4) float32 of the moving objects in `image`."""
        found = self.detector.detect([image])[0]
        height, width = image.shape[:2]
        return (found.boxes / np.array([width, height, width, height], np.float32)).astype(np.float32)


class LiveObjectScorer:
    """The raw score of one native-resolution clip from the tubes around its centre frame's boxes.

    `make_scorer(frame_boxes)` builds the TubeScorer for a FrameBoxes table (runner.object_input_scorer's);
    `cached`: the stream's boxes from a box cache (one video, frames numbered as the stream's), else background
    subtraction on the stream, starting from `scene` (the calibration record's empty scene) where given."""

    def __init__(self, model, make_scorer, floor: float, cached: FrameBoxes | None = None,
                 scene: np.ndarray | None = None):
        self.model, self.make_scorer, self.cached = model, make_scorer, cached
        self.scorer = make_scorer(cached) if cached is not None else None
        self.lowest = floor  # what a frame without a box scores until one with a box has been seen
        self.seen_box = False
        self.boxes = LiveBoxes(scene=scene)

    def observe(self, image: np.ndarray) -> None:
        if self.cached is None:
            with stage("boxes"):
                self.boxes.observe(image)

    def score(self, clip: torch.Tensor, centre_image: np.ndarray, centre: int) -> tuple[float, list[list[float]]]:
        """(raw score, the TOP_BOXES best boxes as [x1, y1, x2, y2, tube score] in pixels) of clip (1, C, T, H, W)
        centred on stream frame `centre`."""
        index = torch.zeros(1, dtype=torch.int64, device=clip.device)
        if self.cached is not None:
            scorer = self.scorer
            if centre >= self.cached.num_frames[0]:
                raise VadgpuError(f"the stream has more frames than the {self.cached.num_frames[0]} of its box cache")
            frame = torch.full((1,), centre, dtype=torch.int64, device=clip.device)
        else:
            with stage("boxes"):
                boxes = self.boxes.boxes(centre_image)
                scorer = self.make_scorer(FrameBoxes(np.zeros(len(boxes), np.int64), np.zeros(len(boxes), np.int64),
                                                     boxes, [1]))
            frame = index
        before = len(scorer.records)
        raw = float(scorer(self.model, clip, index, frame)[0])
        if len(scorer.records) == before:  # no box in this frame
            return self.lowest, []
        self.lowest = raw if not self.seen_box else min(self.lowest, raw)
        self.seen_box = True
        record = scorer.records.pop()
        height, width = centre_image.shape[:2]
        order = np.argsort(-record.score)[:TOP_BOXES]
        pixels = record.boxes[order] * np.array([width, height, width, height])
        return raw, [[*(round(float(v), 1) for v in box), float(s)] for box, s in zip(pixels, record.score[order])]
