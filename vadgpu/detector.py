"""`vadgpu.Detector`: live scoring from Python, one result per frame.

    from vadgpu import Detector

    detector = Detector.load("ped2-ddl", min_duration=3, merge_gap=25)
    for result in detector.stream("rtsp://camera.local/stream"):   # or a file, a frame folder, /dev/video0,
        if result.alarm:                                           # "-", or an iterable of BGR numpy frames
            cv2.imwrite(f"alarm-{result.frame}.jpg", result.plot())

The scores are those of `vadgpu score SOURCE` live (the same causal clips, trailing smoothing, training
normalisation: live/scoring.py's CausalScorer) and the alarms follow live/events.py's rules; `vadgpu score`'s
live mode is a loop over this class.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from vadgpu.errors import VadgpuError
from vadgpu.live.events import DEFAULT_MERGE_GAP, LIVE_WINDOW, AlarmOptions, Event, EventRules, EventTracker, wall_iso
from vadgpu.precision import DEFAULT_PRECISION

DEFAULT_FPS = 25.0  # frames pushed by the caller, frame folders, and the false-alarm rate when a stream has none


@dataclass
class Result:
    """One frame's score as soon as its clip is complete."""

    frame: int  # running frame number from the start of the stream
    time: float  # stream time, seconds since the first frame
    wall_time: float  # Unix seconds when the frame arrived
    score: float  # normalised, smoothed: what the thresholds apply to
    raw_score: float
    boxes: list  # object models: the frame's best boxes [x1, y1, x2, y2, tube score] in pixels, best first
    alarm: bool  # whether an alarm (an event) is on at this frame
    threshold: float | None = None
    started: list[Event] = field(default_factory=list)  # events whose alarm went on at this frame
    ended: list[Event] = field(default_factory=list)  # events reported finished at this frame
    image: np.ndarray | None = field(default=None, repr=False)  # the frame, (H, W, 3) uint8 BGR

    def plot(self) -> np.ndarray:
        """The frame (BGR uint8, a copy) with its boxes, its score against the threshold, and a red border while
        the alarm is on."""
        from vadgpu.live.scoring import draw_frame

        if self.image is None:
            raise VadgpuError("this result holds no image (stream(..., keep_images=False))")
        return draw_frame(self.image, self.frame, self.score, self.alarm, self.threshold, self.boxes)

    def to_dict(self) -> dict:
        return {"frame": self.frame, "time": self.time, "wall_time": wall_iso(self.wall_time), "score": self.score,
                "raw_score": self.raw_score, "boxes": self.boxes, "alarm": self.alarm, "threshold": self.threshold}


class _Frames:
    """Frames from a frame folder or from the caller's arrays, as FrameStream gives them (Frame items)."""

    def __init__(self, images: Iterable, fps: float | None, what: str):
        self.images, self.fps, self.what = images, fps or DEFAULT_FPS, what

    def __iter__(self):
        from vadgpu.live.stream import Frame

        for index, image in enumerate(self.images):
            if isinstance(image, (str, Path)):
                import cv2

                path, image = image, cv2.imread(str(image), cv2.IMREAD_COLOR)
                if image is None:
                    raise VadgpuError(f"cannot read the frame {path}")
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                    and image.shape[2] == 3):
                raise VadgpuError(f"{self.what}: frame {index} is not an (H, W, 3) uint8 BGR array "
                                  f"({getattr(image, 'shape', type(image).__name__)}, "
                                  f"{getattr(image, 'dtype', '')})")
            yield Frame(index, index / self.fps, image)

    def close(self) -> None:
        close = getattr(self.images, "close", None)
        if callable(close):
            close()


def open_frames(source, fps: float | None = None, retries: int = 3, retry_delay: float = 2.0):
    """Frames of `source`: a frame folder (read in name order, `fps` or 25 frames/s), a video file, URL, device or
    "-" (live/stream.py's FrameStream), or an iterable of (H, W, 3) uint8 BGR arrays (`fps` or 25 frames/s)."""
    from vadgpu.live.stream import FrameStream, is_live_source

    if isinstance(source, (str, Path)):
        if not is_live_source(str(source)) and Path(source).is_dir():
            from vadgpu.data.catalog import list_frames

            return _Frames(list_frames(Path(source)), fps, str(source))
        if not is_live_source(str(source)) and not Path(source).is_file():
            raise VadgpuError(f"{source} does not exist (a stream is rtsp://..., http(s)://..., /dev/videoN or -)")
        return FrameStream(str(source), retries=retries, retry_delay=retry_delay)
    if isinstance(source, np.ndarray) and source.ndim == 3:
        raise VadgpuError("give an iterable of frames (a list, a generator, or an (N, H, W, 3) array), not one frame")
    return _Frames(source, fps, "the frames given")


class Detector:
    """A model with its scoring and alarm settings; `stream(source)` scores a source live (module docstring)."""

    def __init__(self, model, ckpt: dict, name: str, protocol, norm: str, device, alarms: AlarmOptions,
                 precision: str = DEFAULT_PRECISION):
        from vadgpu.live.parts import live_parts
        from vadgpu.live.scoring import live_settings

        self.model, self.ckpt, self.name, self.protocol, self.norm = model, ckpt, name, protocol, norm
        self.device, self.alarms, self.precision = device, alarms, precision
        _, train, names = live_parts(model, ckpt, name, protocol, None, None, device, precision)
        self.stats, self.default_threshold, self.train_videos = live_settings(model, protocol, norm, train, names)
        self._rules: dict[float, EventRules] = {}
        self.rules(alarms.fps)  # settings errors now, not at the first frame

    @classmethod
    def load(cls, model: str | Path = "ped2-ddl", device: str = "auto", *, protocol=None, norm: str = "train",
             score: str | None = None, smooth: str = "median", window: int | None = None,
             tube_norm: str | None = None, threshold: float | None = None, threshold_off: float | None = None,
             min_duration: int = 1, merge_gap: int = DEFAULT_MERGE_GAP, false_alarms_per_hour: float | None = None,
             fps: float | None = None, precision: str = DEFAULT_PRECISION) -> "Detector":
        """A model file (RUN/model.pt or a checkpoint), shipped weights by name ("ped2-ddl") or an exported .onnx
        file, on `device` (auto, cpu, cuda, cuda:N; an ONNX file runs on the CPU).

        Scoring: `norm` "train" (z-score against the training videos) or "none"; `score`, `smooth` ("median" or
        "none"), `window` (frames of the trailing median, default 9), `tube_norm` as for `vadgpu score` (or a whole
        `protocol`). Alarms (live/events.py): `threshold` (default with norm "train": the 99.5th percentile of the
        training videos' scores) or `false_alarms_per_hour` (the threshold for at most that many events per hour
        of the training videos, at the stream's frame rate, else `fps`, else 25), `threshold_off` (hysteresis),
        `min_duration` and `merge_gap` in frames (defaults 1 and 50, chosen with benchmarks/live_alarms.py).
        `precision`: "fp32" or "bf16", the networks' arithmetic (vadgpu/precision.py: bf16 is faster on CPUs with
        bfloat16 instructions and on GPUs, and moves the scores slightly; not for an ONNX file)."""
        from vadgpu.bench.stages import stage
        from vadgpu.checkpoint import checkpoint_file, load_checkpoint
        from vadgpu.device import resolve_device
        from vadgpu.evaluation.runner import load_model, open_onnx_model
        from vadgpu.precision import check_precision
        from vadgpu.scoring.protocol import Protocol

        torch_device = resolve_device(device)
        onnx = str(model).lower().endswith(".onnx")
        check_precision(precision, torch_device, onnx=onnx)
        with stage("model load"):
            if onnx:
                net, ckpt = open_onnx_model(model), {}
            else:
                ckpt = load_checkpoint(checkpoint_file(model), map_location="cpu")
                net = load_model(ckpt, torch_device)
        if protocol is None:
            protocol = Protocol(score=score, norm=norm, smooth=smooth, window=window or LIVE_WINDOW,
                                tube_norm=tube_norm)
        protocol = protocol.for_model(net.config)
        alarms = AlarmOptions(threshold, threshold_off, min_duration, merge_gap, false_alarms_per_hour, fps)
        return cls(net, ckpt, str(model), protocol, norm, torch_device, alarms, precision)

    def rules(self, fps: float | None = None) -> EventRules:
        """The event rules for a stream at `fps` frames per second (the false-alarm rate's threshold depends on
        it)."""
        fps = fps or self.alarms.fps or DEFAULT_FPS
        if fps not in self._rules:
            self._rules[fps] = self.alarms.rules(self.default_threshold, self.train_videos, fps)
        return self._rules[fps]

    @property
    def delay_frames(self) -> int:
        """How many frames after its frame each score is out (the clip's frames after its centre)."""
        temporal = self.model.config.temporal
        return temporal - 1 - temporal // 2

    def stream(self, source, *, fps: float | None = None, boxes: str | Path | None = None, retries: int = 3,
               retry_delay: float = 2.0, max_frames: int | None = None, keep_images: bool = True,
               on_event: Callable[[str, Event], None] | None = None, name: str | None = None,
               drop_frames: str = "auto", signals=None) -> "LiveStream":
        """Score `source` live: a video file, frame folder, URL, device, "-" (stdin), or an iterable of (H, W, 3)
        uint8 BGR frames; iterate the returned LiveStream for one Result per frame. `fps`: the frame rate of
        frames without timestamps (folders, arrays; default 25). `boxes`: an object model replays a file with
        the boxes of a box cache. `on_event(kind, event)`: called with "start" when an alarm goes on and "end"
        when its event is finished. `max_frames`: stop after that many frames (of the source). The frames are read
        ahead on a worker thread; when scoring falls behind a live source, `drop_frames` "auto" (a URL or a
        device), "always" (also stdin and arrays, e.g. a camera read by the caller) or "never" drops the oldest
        waiting frame, counted in `summary.dropped_frames` (live/reader.py)."""
        from vadgpu.live.parts import live_parts
        from vadgpu.live.reader import ReadAhead, drops_frames
        from vadgpu.live.scoring import CausalScorer
        from vadgpu.live.stream import source_name

        drop = drops_frames(drop_frames, source)
        if boxes is not None and not isinstance(source, (str, Path)):
            raise VadgpuError("boxes: a box cache replays a file, not frames given as arrays")
        objects, _, _ = live_parts(self.model, self.ckpt, self.name, self.protocol,
                                   str(source) if boxes is not None else None, boxes, self.device, self.precision)
        scorer = CausalScorer(self.model, self.protocol, self.stats, self.device, objects, self.precision)
        label = name or (str(source) if isinstance(source, (str, Path)) else "frames")
        frames = ReadAhead(open_frames(source, fps, retries, retry_delay), drop, label)
        return LiveStream(self, scorer, frames, label, max_frames, keep_images, on_event, signals,
                          source_name(label) if name is None else name)


class LiveStream:
    """Iterate for one `Result` per frame; `events` holds the finished events, `summary` the run's numbers.
    `close(reason)` ends the open event with the reason and closes the source (done at the end of the iteration,
    on an error, or leaving a `with` block)."""

    def __init__(self, detector: Detector, scorer, frames, source: str, max_frames, keep_images, on_event,
                 signals, short_name: str):
        from vadgpu.live.scoring import LiveSummary

        self.detector, self.scorer, self.frames, self.source = detector, scorer, frames, source
        self.max_frames, self.keep_images, self.signals = max_frames, keep_images, signals
        self.name = short_name
        self.on_event = on_event or (lambda kind, event: None)
        self.rules: EventRules | None = None
        self.tracker: EventTracker | None = None
        self.summary = LiveSummary(delay_frames=scorer.ahead)
        self._started: list[Event] = []
        self._ended: list[Event] = []
        self._closed = self._iterated = False
        self._begun = time.perf_counter()

    @property
    def events(self) -> list[Event]:
        return [] if self.tracker is None else self.tracker.events

    @property
    def fps(self) -> float | None:
        return self.frames.fps

    def _start(self) -> None:
        self.rules = self.detector.rules(self.frames.fps)
        self.summary.threshold, self.summary.stats = self.rules.threshold, self.detector.stats
        self.tracker = EventTracker(self.rules, self._on_start, self._on_end, source=self.source,
                                    model=self.detector.name)

    def _on_start(self, event: Event) -> None:
        self._started.append(event)
        self.on_event("start", event)

    def _on_end(self, event: Event) -> None:
        self._ended.append(event)
        self.on_event("end", event)

    def __enter__(self) -> "LiveStream":
        return self

    def __exit__(self, _type, exc, _tb) -> None:
        self.close(self._reason(exc))

    def _reason(self, exc: BaseException | None) -> str:
        from vadgpu.live.session import StopSignals, ended_by

        return ended_by(exc, self.signals or StopSignals())

    def __iter__(self) -> Iterator[Result]:
        from vadgpu.bench.stages import timed
        from vadgpu.live.stream import Gap

        if self._closed or self._iterated:
            raise VadgpuError("a live stream is scored once; call detector.stream(source) again for another pass")
        self._iterated = True
        waiting: deque[tuple[int, float, float, np.ndarray]] = deque()  # frames whose score is not out yet

        def results(scored) -> Iterator[Result]:
            for index, raw, score, found in scored:
                frame, when, wall, image = waiting.popleft()
                assert frame == index
                alarm = self.tracker.update(index, when, score, found, wall)
                started, self._started = self._started, []
                ended, self._ended = self._ended, []
                self.summary.frames += 1
                yield Result(index, when, wall, score, raw, found or [], alarm, self.rules.threshold, started,
                             ended, image if self.keep_images else None)

        try:
            for item in timed(self.frames, "decode"):
                if isinstance(item, Gap):
                    yield from results(self.scorer.finish())
                    continue
                if self.tracker is None:
                    self._start()
                if self.summary.fps is None and self.frames.fps:
                    self.summary.fps = self.frames.fps
                waiting.append((item.index, item.time, item.wall or time.time(), item.image))
                yield from results(self.scorer.push(item.index, item.image))
                if self.max_frames is not None and item.index + 1 >= self.max_frames:
                    break
            yield from results(self.scorer.finish())
        except GeneratorExit:  # the caller left the loop (a break, or an exception in its body)
            if self.signals is None:  # else the caller closes with the reason (live/scoring.py's score_stream)
                self.close("stopped by the caller")
            raise
        except BaseException as exc:
            self.close(self._reason(exc))
            raise
        self.close(self._reason(None))

    def close(self, reason: str = "stopped by the caller") -> None:
        """End the open event with `reason` (signals held off while it is reported) and close the source."""
        if self._closed:
            return
        self._closed = True
        from vadgpu.live.session import no_signals

        try:
            if self.tracker is not None:
                with no_signals():
                    self.tracker.close(reason)
        finally:
            self.frames.close()
            self._finish_summary()

    def _finish_summary(self) -> None:
        summary = self.summary
        summary.events = self.events
        summary.dropped_frames = self.frames.dropped
        summary.seconds = time.perf_counter() - self._begun
        summary.frames_per_s = summary.frames / max(summary.seconds, 1e-9)
        if self.scorer.compute_s:
            ms = 1000 * np.asarray(self.scorer.compute_s)
            summary.compute_ms_mean, summary.compute_ms_p95 = float(ms.mean()), float(np.percentile(ms, 95))
        if summary.fps:
            summary.delay_ms = 1000 * self.scorer.ahead / summary.fps
