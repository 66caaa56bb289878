"""An MP4 (H.264, PyAV) written while scoring: the source frame beside its reconstruction-error map, the score
curve so far under them.

    +--------------------------+--------------------------+
    | source frame             | error map over the frame |
    +--------------------------+--------------------------+
    | frame 123 / 240                    raw score 0.0123 |
    | the raw scores so far, the current frame marked     |
    +-----------------------------------------------------+

Both panels keep the source's aspect ratio (a 360x240 video gives two 360x240 panels, whatever size the model
reads): the panel is the source scaled so that its shorter side is at least `MIN_SIDE` and its longer side at
most `MAX_SIDE`, with even sides for H.264. The model's error map (at its input size, e.g. 64x64, which was
resized from the whole frame) is resized back over the panel. Frames arrive batch by batch in frame order, so the
video is encoded as it goes: the source is decoded alongside (objects/frames.py), and nothing but the scores so
far is kept. Because the writer never sees the whole video first:

- the colour scale is fixed: the absolute error |x - f(x)| maps onto the "inferno" colours, saturating
  at `HEAT_MAX_ERROR` of the pixel range, blended over the gray frame with an opacity that grows with the error;
- the curve shows the raw per-frame score (before smoothing and normalisation; NAME.png has the final curve) on
  the whole video's frame axis, its height scaled to the lowest and highest score seen so far.

Drawing is OpenCV (resize, applyColorMap, blendLinear, polylines, putText): 1.8 ms for a 720x336 frame on a
2-core CPU, where matplotlib's Agg canvas took 65 ms for the same layout with its figure reused; a whole frame,
with decoding the source and the H.264 encoder ("veryfast"), about 15 ms.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from vadgpu.colour_bar import draw_colour_bar
from vadgpu.data.types import PreparedVideo
from vadgpu.errors import VadgpuError
from vadgpu.objects.frames import iter_frames
from vadgpu.video_file import Mp4Writer

HEAT_MAX_ERROR = 0.3
MAX_OPACITY = 0.75
MIN_SIDE = 240
MAX_SIDE = 640
STRIP_HEIGHT = 96
CODEC = "libx264"
# x264's "medium" default spent about 80 % of the writing time encoding; "veryfast" is 3x quicker, a little larger
CODEC_OPTIONS = {"preset": "veryfast"}
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT, _CURVE, _MARK, _BACK = (235, 235, 235), (255, 170, 60), (60, 60, 255), (40, 40, 40)  # BGR


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def panel_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of one panel for a `height` x `width` source: the same aspect ratio, the shorter side at
    least MIN_SIDE and the longer at most MAX_SIDE (the longer bound wins for very elongated frames), even sides."""
    scale = max(1.0, MIN_SIDE / min(height, width))
    scale = min(scale, MAX_SIDE / max(height, width)) if max(height, width) * scale > MAX_SIDE else scale
    return _even(height * scale), _even(width * scale)


class HeatmapLayout:
    """Draws one output frame (BGR uint8) from a source frame, its error map and the scores so far."""

    def __init__(self, source_height: int, source_width: int, num_frames: int):
        self.panel = panel_size(source_height, source_width)
        self.num_frames = num_frames
        height, width = self.panel
        self.size = (height + STRIP_HEIGHT, 2 * width)  # (H, W) of the video
        # the curve's box inside the strip: below one line of text, a margin on every side
        self._x0, self._x1 = 8, 2 * width - 8
        self._y0, self._y1 = height + 30, height + STRIP_HEIGHT - 8
        self._blank = np.full((*self.size, 3), _BACK, np.uint8)
        cv2.line(self._blank, (self._x0, self._y1), (self._x1, self._y1), (110, 110, 110), 1)

    def draw(self, source: np.ndarray, heat: np.ndarray, index: int, scores: np.ndarray) -> np.ndarray:
        """`source` (h, w, 3) BGR uint8, `heat` (h', w') float in [0, 1] (the error over HEAT_MAX_ERROR),
        `scores` the raw scores of frames 0..index."""
        height, width = self.panel
        image = self._blank.copy()
        left = cv2.resize(source, (width, height), interpolation=cv2.INTER_AREA
                          if source.shape[0] > height else cv2.INTER_LINEAR)
        heat = np.clip(cv2.resize(heat.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)
        colour = cv2.applyColorMap(cv2.convertScaleAbs(heat, alpha=255.0), cv2.COLORMAP_INFERNO)
        gray = cv2.cvtColor(cv2.cvtColor(left, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        alpha = MAX_OPACITY * heat
        image[:height, :width] = left
        image[:height, width:] = cv2.blendLinear(colour, gray, alpha, 1 - alpha)
        self._draw_curve(image, index, scores)
        return image

    def _draw_curve(self, image: np.ndarray, index: int, scores: np.ndarray) -> None:
        height = self.panel[0]
        cv2.putText(image, f"frame {index} / {self.num_frames - 1}", (8, height + 20), _FONT, 0.5, _TEXT, 1,
                    cv2.LINE_AA)
        label = f"raw score {scores[-1]:.4g}"
        (text_width, _), _ = cv2.getTextSize(label, _FONT, 0.5, 1)
        cv2.putText(image, label, (self._x1 - text_width, height + 20), _FONT, 0.5, _TEXT, 1, cv2.LINE_AA)
        low, high = float(scores.min()), float(scores.max())
        span = high - low
        xs = self._x0 + np.arange(len(scores)) * (self._x1 - self._x0) / max(self.num_frames - 1, 1)
        level = (scores - low) / span if span > 0 else np.full(len(scores), 0.5)
        ys = self._y1 - level * (self._y1 - self._y0)
        points = np.stack([xs, ys], axis=1).round().astype(np.int32)
        cv2.polylines(image, [points], False, _CURVE, 1, cv2.LINE_AA)
        x, y = (int(v) for v in points[-1])
        cv2.line(image, (x, self._y0), (x, self._y1), (90, 90, 90), 1)
        cv2.circle(image, (x, y), 3, _MARK, -1, cv2.LINE_AA)


class HeatmapVideoWriter:
    """Encode the heatmap video of `video` as scored batches come (`write`, a FrameScorer's `on_errors`: the error
    maps and the scores the scorer gave); the file appears (atomically) on `close()`."""

    def __init__(self, path: str | Path, video: PreparedVideo):
        self.path = Path(path)
        self.video = video
        self.fps = video.fps if video.fps and video.fps > 0 else 25.0
        self._file = Mp4Writer(self.path, "the heatmap video", options=CODEC_OPTIONS)  # errors name the file
        self._source = iter_frames(video.video)
        self._scores = np.empty(video.num_frames, np.float64)
        self._layout: HeatmapLayout | None = None
        self.frames = 0

    def _next_source(self) -> np.ndarray:
        frame = next(self._source, None)
        if frame is None:
            raise VadgpuError(f"{self.video.video.path}: the source ended after {self.frames} frames, but "
                              f"{self.video.num_frames} were scored; cannot draw the heatmap video")
        return frame

    def write(self, target: torch.Tensor, errors: torch.Tensor, scores: torch.Tensor, video: torch.Tensor,
              frame: torch.Tensor) -> None:
        """Append a batch: (N, C, H, W) model frames, their (N, 1, H, W) squared errors, their raw scores, video and
        frame ids (N,); the frames must follow on from the last batch (the test loader's order)."""
        expected = torch.arange(self.frames, self.frames + len(frame))
        if not torch.equal(frame.cpu(), expected) or self.frames + len(frame) > self.video.num_frames:
            raise VadgpuError(f"{self.video.decode_path}: the loader gave frames out of order; cannot stream the "
                              "heatmap video")
        heat = (errors[:, 0].float().sqrt() / HEAT_MAX_ERROR).clamp(0, 1).cpu().numpy()  # (N, H, W)
        self._scores[self.frames:self.frames + len(frame)] = scores.double().cpu().numpy()
        for map_ in heat:
            source = self._next_source()
            if self._layout is None:
                self._layout = HeatmapLayout(source.shape[0], source.shape[1], self.video.num_frames)
            self._file.write(self._layout.draw(source, map_, self.frames, self._scores[:self.frames + 1]), self.fps)
            self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place."""
        if self._file.frames == 0:
            self.abort()
            raise VadgpuError(f"heatmap video {self.path}: no frames were written")
        self._source.close()
        return self._file.close()

    def abort(self) -> None:
        """Drop the partial file (on an error while scoring)."""
        self._file.abort()
        self._source.close()


def write_object_heatmap(path: str | Path, video: PreparedVideo, records, raw_scores: np.ndarray) -> Path:
    """The heatmap video of an object model, written once the video is scored: each source frame with its scored
    boxes (the best one red, the others white) beside the same frame with every box filled by its tube's score,
    and the raw score curve under them (the HeatmapLayout of frame models). `records` are a TubeScorer's
    (video, frame, boxes, raw, score) of this one video, `raw_scores` the per-frame raw scores. The colours span
    the video's own range of tube scores (lowest transparent, highest opaque yellow; a colour bar in the right
    panel gives the range): unlike the frame models' writer this one sees the whole video first."""
    path = Path(path)
    if records:
        _, frames, boxes, _, scores = (np.concatenate(part) for part in zip(*records))
    else:
        frames, boxes, scores = np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0)
    low, high = (float(scores.min()), float(scores.max())) if scores.size else (0.0, 1.0)
    level = (scores - low) / (high - low) if high > low else np.ones_like(scores)
    fps = video.fps if video.fps and video.fps > 0 else 25.0
    layout = None
    source_frames = iter_frames(video.video)
    writer = Mp4Writer(path, "the heatmap video", options=CODEC_OPTIONS)
    try:
        for index in range(video.num_frames):
            source = next(source_frames, None)
            if source is None:
                raise VadgpuError(f"{video.video.path}: the source ended after {index} frames, but "
                                  f"{video.num_frames} were scored; cannot draw the heatmap video")
            if layout is None:
                layout = HeatmapLayout(source.shape[0], source.shape[1], video.num_frames)
            height, width = source.shape[:2]
            heat = np.zeros((height, width), np.float32)
            mine = np.flatnonzero(frames == index)
            mine = mine[np.argsort(level[mine])]  # the best box drawn last, on top
            drawn = source.copy()
            for rank, row in enumerate(mine[::-1]):
                x1, y1, x2, y2 = (int(round(v)) for v in boxes[row] * np.array([width, height, width, height]))
                region = heat[max(y1, 0):y2, max(x1, 0):x2]
                np.maximum(region, level[row], out=region)
                colour = (60, 60, 255) if rank == 0 else (235, 235, 235)
                cv2.rectangle(drawn, (x1, y1), (x2, y2), colour, 1)
            image = layout.draw(drawn, heat, index, np.asarray(raw_scores[:index + 1], np.float64))
            draw_colour_bar(image, 2 * layout.panel[1] - 6, 8, layout.panel[0] - 8, low, high, MAX_OPACITY,
                            "tube score")  # the right panel's legend
            writer.write(image, fps)
        source_frames.close()
        return writer.close()
    except BaseException:
        writer.abort()
        source_frames.close()
        raise
