"""Causal scoring of a stream: each frame's score as soon as its clip is complete, smoothed over the frames
before it, normalised by the training videos' statistics, turned into alarms; files written as it goes.

Per frame, in order:

1. Clip. Frame t is the centre of the clip t - T//2 ... t + T - 1 - T//2 (the offline clips), so its score is
   out when frame t + T - 1 - T//2 has arrived: a delay of T // 2 frames for odd T (T//2 - 1 for even T).
   Frames before the first one are replaced by the first (edge replication, as the offline test loader does),
   and at the end of the stream the last frame stands in for the frames after it. After a reconnect, or frames
   dropped because scoring fell behind a live source (live/reader.py), the clips start again at the first new
   frame. Frames are converted as the torch loader converts them
   (`pipelines.baseline.convert_frame`) and scored with the same functions as offline evaluation
   (`model.reconstruct`, `scores.error_map`, `scores.scores_from_errors`), one clip per frame. Object models
   take clips at the stream's own resolution and score the tubes around the boxes of each centre frame
   (live/objects.py); their events carry the peak frame's best boxes.
2. Smoothing: a trailing median over the last `window` raw scores (`protocol.trailing_smooth`, the first score
   standing in for the frames before it; by default over `events.LIVE_WINDOW` frames), or none.
3. Normalisation: `train` = z-score with the mean and std of the training videos' scores under the same
   trailing smoothing (from `train_scores` in the weights file); `none` = the smoothed raw score.
4. Alarms: the event rules of live/events.py (on- and off-thresholds, minimum duration, merge gap). The default
   on-threshold (`--norm train`) is the `DEFAULT_PERCENTILE`th percentile of the training videos' normalised
   scores: training videos are normal, so about 1 normal frame in 200 like them would pass it;
   `--false-alarms-per-hour` sets it from those scores for a rate of events instead.

Outputs in the output folder, each line written and flushed as it happens (a kill leaves complete lines):
`scores.csv` (frame, time, raw_score, score, alarm), `events.jsonl` (one line per finished event: live/events.py's
Event), with `save_clips` an MP4 per event (live/clips.py), and with `video_out` an annotated H.264 MP4
(fragmented: playable even if the process is killed, and closed properly on SIGINT / SIGTERM, an error or the end of
the stream).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vadgpu.bench.stages import stage
from vadgpu.errors import VadgpuError
from vadgpu.live.events import Event
from vadgpu.precision import DEFAULT_PRECISION
from vadgpu.scoring.frames import FrameScorer
from vadgpu.scoring.protocol import Protocol, TrainStats, median_smooth, trailing_smooth
from vadgpu.model_checks import check_finite_score

log = logging.getLogger("vadgpu")

DEFAULT_PERCENTILE = 99.5
LIVE_NORMS = ("train", "none")


@dataclass
class LiveSummary:
    frames: int = 0  # scored
    dropped_frames: int = 0  # dropped because scoring fell behind a live source (live/reader.py)
    events: list[Event] = field(default_factory=list)
    seconds: float = 0.0
    frames_per_s: float = 0.0
    compute_ms_mean: float = 0.0  # per frame: conversion, model, score (decoding not included)
    compute_ms_p95: float = 0.0
    delay_frames: int = 0
    fps: float | None = None
    delay_ms: float | None = None  # delay_frames at the stream's frame rate
    interrupted: bool = False
    exit_code: int | None = None  # 130 / 143: a signal stopped scoring (live/session.py)
    threshold: float | None = None
    stats: TrainStats | None = None


def live_settings(model, protocol: Protocol, norm: str, frame_scores: list[np.ndarray] | None, names: list[str],
                  source="the model file") -> tuple[TrainStats | None, float | None, list[np.ndarray]]:
    """(training statistics, default alarm threshold, the training videos' scores as the stream's are normalised)
    for live scoring `model` with `protocol` and `norm`, from the training videos' raw frame scores (a frame
    model's stored kind, an object model's calibration record)."""
    from vadgpu.scoring.train_scores import frame_stats

    if norm not in LIVE_NORMS:
        raise VadgpuError(f"--norm {norm}: live scoring normalises by the training videos (train) or not at all "
                          "(none); min-max per video needs the whole video")
    trailing_smooth(np.zeros(1), protocol)  # a gaussian is refused here, before any frame
    stats, threshold = None, None
    if norm == "train":
        stats = frame_stats(frame_scores, protocol, model.config.temporal, names, source, smooth=trailing_smooth)
    videos = [trailing_smooth(np.asarray(s, dtype=np.float64), protocol) for s in frame_scores or []]
    if stats is not None:
        videos = [(v - stats.mean) / stats.std for v in videos]
        threshold = float(np.percentile(np.concatenate(videos), DEFAULT_PERCENTILE))
    return stats, threshold, videos


class CausalScorer:
    """Clips, raw scores, trailing smoothing and normalisation of one stream; `push` frames, `finish` at the end
    of the stream or of a segment (before a reconnect). `objects`: an object model's LiveObjectScorer
    (live/objects.py); a frame model is scored by a FrameScorer, as offline, its network in `precision`."""

    def __init__(self, model, protocol: Protocol, stats: TrainStats | None, device: torch.device,
                 objects=None, precision: str = DEFAULT_PRECISION):
        cfg = model.config
        self.model, self.protocol, self.stats, self.device = model, protocol, stats, device
        self.temporal, self.behind = cfg.temporal, cfg.temporal // 2
        self.ahead = cfg.temporal - 1 - self.behind  # frames after the centre: the delay of each score
        self.channels = cfg.channels
        self.objects = objects
        self.frame_scorer = None if objects is not None else FrameScorer(protocol, precision=precision)
        self.size: tuple[int, int] | None = None if objects is not None else tuple(cfg.size)  # objects: the stream's
        self.images: dict[int, np.ndarray] = {}  # object models: the recent frames as they came (boxes)
        self.frames: dict[int, torch.Tensor] = {}  # this segment's recent converted frames (C, H, W) in [0, 1]
        self.first: int | None = None  # the segment's first frame number
        self.pending: deque[int] = deque()  # frame numbers received whose score is not out yet
        self.recent: deque[float] = deque(maxlen=protocol.window if protocol.smooth == "median" else 1)
        self.compute_s: list[float] = []

    def _convert(self, image: np.ndarray) -> torch.Tensor:
        from vadgpu.pipelines.baseline import convert_frame

        with stage("clips"):
            frame = convert_frame(image, self.channels, self.size)  # (H, W, C) uint8
            return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div_(255.0)

    def push(self, index: int, image: np.ndarray) -> list[tuple[int, float, float, list | None]]:
        """Add frame `index`; returns the (frame, raw, score, boxes) that became ready (at most one); boxes: the
        best boxes of an object model's frame ([x1, y1, x2, y2, tube score] in pixels), else None."""
        started = time.perf_counter()
        if self.first is None:
            self.first = index
        if self.objects is not None:
            if self.size is None:
                self.size = tuple(image.shape[:2])
            elif tuple(image.shape[:2]) != self.size:
                raise VadgpuError(f"the stream's frame size changed from {self.size[1]}x{self.size[0]} to "
                                  f"{image.shape[1]}x{image.shape[0]}; an object model's tubes need one size")
            self.objects.observe(image)
            self.images[index] = image
            self.images.pop(index - self.temporal - self.ahead, None)
        self.frames[index] = self._convert(image)
        self.frames.pop(index - self.temporal - self.ahead, None)  # no pending clip reaches back that far
        self.pending.append(index)
        out = []
        if len(self.pending) > self.ahead:  # the clip centred on the oldest pending frame is complete
            out.append(self._score(self.pending.popleft(), index))
        self.compute_s.append(time.perf_counter() - started)
        return out

    def finish(self) -> list[tuple[int, float, float, list | None]]:
        """Score the frames still pending, the segment's last frame standing in for the frames after it."""
        last = max(self.frames) if self.frames else None
        out = [self._score(self.pending.popleft(), last) for _ in range(len(self.pending))]
        self.frames.clear()
        self.images.clear()
        self.first = None
        return out

    def clip_frames(self, centre: int, last: int) -> list[int]:
        """The frame numbers of the clip centred on `centre`, in this segment (`first` ... `last`)."""
        return [min(max(centre + j, self.first), last) for j in range(-self.behind, self.ahead + 1)]

    def _score(self, centre: int, last: int) -> tuple[int, float, float, list | None]:
        indices = self.clip_frames(centre, last)
        with stage("clips"):
            clips = torch.stack([self.frames[i] for i in indices], dim=1)[None].to(self.device)  # (1, C, T, H, W)
        boxes = None
        with torch.inference_mode():
            if self.objects is not None:
                raw, boxes = self.objects.score(clips, self.images[centre], centre)
            else:
                index = torch.full((1,), centre, dtype=torch.int64, device=self.device)
                raw = float(self.frame_scorer(self.model, clips, index, index)[0])
        raw = check_finite_score(raw, centre, str(getattr(self.model, "path", "the model")))
        with stage("protocol"):
            self.recent.append(raw)
            smoothed = float(median_smooth(np.asarray(self.recent), self.recent.maxlen, causal=True)[-1])
            score = smoothed if self.stats is None else (smoothed - self.stats.mean) / self.stats.std
        return centre, raw, score, boxes


class LineFiles:
    """scores.csv and events.jsonl in `out`, appended and flushed line by line."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.scores_path, self.events_path = out / "scores.csv", out / "events.jsonl"
        try:
            self._scores = open(self.scores_path, "w", newline="", encoding="utf-8")
            self._events = open(self.events_path, "w", encoding="utf-8")
        except OSError as exc:
            raise VadgpuError(f"cannot write to {out}: {exc.strerror or exc}") from exc
        self._csv = csv.writer(self._scores)
        self._csv.writerow(["frame", "time", "raw_score", "score", "alarm"])
        self._scores.flush()

    def score(self, frame: int, when: float, raw: float, score: float, alarm: bool) -> None:
        self._csv.writerow([frame, f"{when:.3f}", repr(raw), repr(score), int(alarm)])
        self._scores.flush()

    def event(self, event: Event) -> None:
        record = asdict(event)
        if record["peak_boxes"] is None:  # a frame model's event has no boxes
            del record["peak_boxes"]
        self._events.write(json.dumps(record) + "\n")
        self._events.flush()

    def close(self) -> None:
        self._scores.close()
        self._events.close()


def draw_frame(image: np.ndarray, frame: int, score: float, alarm: bool, threshold: float | None,
               boxes: list | None = None) -> np.ndarray:
    """A copy of the BGR frame with its number, score (and threshold), an object model's boxes ([x1, y1, x2, y2,
    tube score] in pixels; the best one red, the others yellow, each with its score), and a red border while the
    alarm is on."""
    import cv2

    picture = np.ascontiguousarray(image).copy()
    height, width = picture.shape[:2]
    scale = max(0.4, min(height, width) / 400)
    thick = max(1, int(2 * scale))
    for rank, box in enumerate(boxes or []):
        x1, y1, x2, y2, value = box
        colour = (0, 0, 255) if rank == 0 else (0, 255, 255)
        cv2.rectangle(picture, (int(x1), int(y1)), (int(x2), int(y2)), colour, thick)
        cv2.putText(picture, f"{value:.1f}", (int(x1), max(int(y1) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45 * scale, colour, max(1, thick - 1), cv2.LINE_AA)
    text = f"frame {frame}  score {score:.2f}" + ("" if threshold is None else f" / {threshold:.2f}")
    cv2.putText(picture, text, (6, int(22 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                (0, 0, 255) if alarm else (255, 255, 255), thick, cv2.LINE_AA)
    if alarm:
        cv2.rectangle(picture, (0, 0), (width - 1, height - 1), (0, 0, 255), max(2, int(4 * scale)))
    return picture


class AnnotatedVideo:
    """The stream's frames with their score (and a red frame while an alarm is on), H.264 in a fragmented MP4,
    opened before the first frame (video_file.Mp4Writer: an unwritable target or a full disk is a VadgpuError)."""

    def __init__(self, path: Path):
        from vadgpu.video_file import Mp4Writer

        self.path = Path(path)
        self.file = Mp4Writer(self.path, "--video-out", fragmented=True, atomic=False)

    def write(self, image: np.ndarray, frame: int, score: float, alarm: bool, threshold: float | None,
              fps: float | None = None, boxes: list | None = None) -> None:
        picture = draw_frame(image, frame, score, alarm, threshold, boxes)
        height, width = picture.shape[:2]
        self.file.write(picture[: height - height % 2, : width - width % 2], fps)  # H.264 wants even sides

    def close(self) -> None:
        self.file.close()


def score_stream(source: str, detector, *, out: Path, video_out: Path | None = None, boxes=None,
                 save_clips: float | None = None, retries: int = 3, retry_delay: float = 2.0,
                 max_frames: int | None = None, drop_frames: str = "auto",
                 echo: Callable[[str], None] = print, on_event: Callable[[str, Event], None] | None = None
                 ) -> LiveSummary:
    """Score `source` live with `detector` (vadgpu.Detector) and write the files (module docstring); returns when
    the stream ends or a signal stops it (SIGINT, SIGTERM: the summary says interrupted and its exit_code), raises
    on an error; in every case the open event ends with the reason (live/session.py) and the files are closed.
    `on_event(kind, event)`: also called with "start" and "end" (notifications). `save_clips`: seconds of pre- and
    post-roll of each event's clip in OUT/clips/ (live/clips.py). `drop_frames`: Detector.stream's."""
    from vadgpu.live.clips import EventClips
    from vadgpu.live.session import StopSignals, close_all, ended_by

    signals = StopSignals()
    live = detector.stream(source, boxes=boxes, retries=retries, retry_delay=retry_delay, max_frames=max_frames,
                           drop_frames=drop_frames,
                           on_event=lambda kind, e: event(kind, e), signals=signals,
                           keep_images=video_out is not None or save_clips is not None)  # checked before any file
    video = None if video_out is None else AnnotatedVideo(video_out)
    clips = None if save_clips is None else EventClips(Path(out) / "clips", save_clips)
    files = LineFiles(Path(out))

    def event(kind: str, event: Event) -> None:
        if kind == "start":
            echo(f"ALARM  frame {event.alarm_frame} ({event.start_time:.2f} s): score {event.peak_score:.2f}")
        else:
            files.event(event)
            echo(f"  end  frame {event.end_frame} ({event.end_time:.2f} s): {event.frames} frame(s), peak "
                 f"{event.peak_score:.2f} at frame {event.peak_frame} ({event.ended_by})")
        if on_event is not None:
            on_event(kind, event)

    # One exit path (live/session.py): whatever ends scoring, the open event is closed with the reason and written
    with signals:
        try:
            for result in live:
                files.score(result.frame, result.time, result.raw_score, result.score, result.alarm)
                if video is not None:
                    video.write(result.image, result.frame, result.score, result.alarm, result.threshold,
                                live.fps, result.boxes)
                if clips is not None:
                    clips.add(result, live.fps)
            failure = None
        except BaseException as exc:
            failure = exc
        # PyAV may end a read that a signal broke as if the stream had ended; `signals` tells the two apart
        try:
            live.close(ended_by(failure, signals))
        finally:
            closers = [files.close] + [c.close for c in (video, clips) if c is not None]
            close_all(closers, failing=failure is not None and not isinstance(failure, KeyboardInterrupt))
        summary = live.summary
        summary.interrupted = signals.seen is not None or isinstance(failure, KeyboardInterrupt)
        summary.exit_code = signals.exit_code or (130 if isinstance(failure, KeyboardInterrupt) else None)
        if failure is not None and not isinstance(failure, KeyboardInterrupt):
            raise failure
    return summary
