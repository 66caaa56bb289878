"""Alarm rules: a stream of frame scores -> events, the same for `vadgpu score` (live) and `vadgpu.Detector`.

A frame is *active* when its score is at least the on-threshold, or when the frame before it was active and its
score is at least the off-threshold (hysteresis; the off-threshold defaults to the on-threshold, which is no
hysteresis). Active frames group into one event while the dips between them (inactive frames) are at most
`merge_gap` frames long. A group becomes an event (the alarm goes on) at its `min_duration`-th active frame: a
shorter flicker is never an event. The event ends at its last active frame, and is reported finished once
`merge_gap` inactive frames have followed it (or the stream ends). While an event is open, the alarm stays on,
through its short dips too.

`false_alarm_threshold` picks the on-threshold from the training videos' scores (normal footage): each video is
a stream at `fps` frames per second, and the threshold is the lowest one such that it and every higher threshold
give at most `rate` events per hour of those videos under the same rules.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from vadgpu.errors import VadgpuError

LIVE_WINDOW = 3  # frames of the trailing median live by default (offline: 17; benchmarks/live_alarms.py)
DEFAULT_MERGE_GAP = 50  # frames: 2 s at 25 fps (benchmarks/live_alarms.py)
MAX_CANDIDATES = 2000  # thresholds tried by false_alarm_threshold (quantiles of the training scores)


@dataclass
class Event:
    start_frame: int
    start_time: float  # stream time, seconds since the first frame
    end_frame: int
    end_time: float
    peak_frame: int
    peak_score: float
    frames: int = 1  # active frames (at or above the thresholds)
    ended_by: str = "score below threshold"
    peak_boxes: list | None = None  # object models: the peak frame's best boxes, [x1, y1, x2, y2, tube score]
    alarm_frame: int | None = None  # the frame whose score raised the alarm (start_frame + min_duration - 1 or later)
    start_wall_time: str | None = None  # ISO 8601 UTC, when the start frame arrived
    end_wall_time: str | None = None
    alarm_wall_time: str | None = None  # when the alarm was raised (the alarm frame's score was out)
    source: str | None = None
    model: str | None = None
    threshold: float | None = None
    threshold_off: float | None = None


def wall_iso(seconds: float | None) -> str | None:
    """Unix seconds as an ISO 8601 UTC string with milliseconds."""
    if seconds is None:
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class EventRules:
    """When scores make an event (module docstring). `threshold` None: no events."""

    threshold: float | None = None
    threshold_off: float | None = None  # None: the on-threshold
    min_duration: int = 1  # active frames before the alarm goes on
    merge_gap: int = 0  # longest dip (frames) that does not split an event (the CLI and Detector: 50)

    def __post_init__(self) -> None:
        if self.min_duration < 1 or self.merge_gap < 0:
            raise VadgpuError(f"--min-duration {self.min_duration} must be >= 1 and --merge-gap {self.merge_gap} >= 0")
        for name, value in (("threshold", self.threshold), ("threshold-off", self.threshold_off)):
            if value is not None and not math.isfinite(value):
                raise VadgpuError(f"--{name} {value} must be a finite number")
        if self.threshold is not None and self.threshold_off is not None and self.threshold_off > self.threshold:
            raise VadgpuError(f"--threshold-off {self.threshold_off:g} must not be above the on-threshold "
                              f"{self.threshold:g}")

    @property
    def off(self) -> float | None:
        return self.threshold if self.threshold_off is None else self.threshold_off


class EventTracker:
    """Scores -> events under `rules`, one frame at a time; `on_start(event)` when the alarm goes on, `on_end(event)`
    when an event is finished. `describe` fills an event's source, model and thresholds."""

    def __init__(self, rules: EventRules, on_start: Callable[[Event], None] = lambda e: None,
                 on_end: Callable[[Event], None] = lambda e: None, source: str | None = None,
                 model: str | None = None):
        self.rules, self.on_start, self.on_end = rules, on_start, on_end
        self.source, self.model = source, model
        self.group: Event | None = None  # the open group of active frames (an event once confirmed)
        self.confirmed = False
        self.last_active: int | None = None
        self.was_active = False
        self.walls: dict[int, float] = {}  # the open group's frames' wall times (start, end)
        self.events: list[Event] = []

    @property
    def alarm(self) -> bool:
        return self.group is not None and self.confirmed

    def update(self, frame: int, when: float, score: float, boxes: list | None = None,
               wall: float | None = None) -> bool:
        """Feed one frame's score; returns whether the alarm is on at this frame."""
        rules = self.rules
        if rules.threshold is None:
            return False
        active = score >= rules.threshold or (self.was_active and score >= rules.off)
        self.was_active = active
        if not active:
            if self.group is not None and frame - self.last_active > rules.merge_gap:
                self.close("score below threshold")
            return self.alarm
        if self.group is None:
            self.group = Event(frame, when, frame, when, frame, score, frames=0, peak_boxes=boxes,
                               source=self.source, model=self.model, threshold=rules.threshold,
                               threshold_off=rules.off, start_wall_time=wall_iso(wall))
            self.confirmed = False
        event = self.group
        event.end_frame, event.end_time, event.end_wall_time = frame, when, wall_iso(wall)
        event.frames += 1
        self.last_active = frame
        if score > event.peak_score:
            event.peak_frame, event.peak_score, event.peak_boxes = frame, score, boxes
        if not self.confirmed and event.frames >= rules.min_duration:
            self.confirmed = True
            event.alarm_frame, event.alarm_wall_time = frame, wall_iso(wall)
            self.on_start(event)
        return self.alarm

    def close(self, reason: str) -> None:
        """End the open group: an event (confirmed) is finished with `reason`, a flicker is dropped."""
        group, confirmed = self.group, self.confirmed
        self.group, self.confirmed, self.was_active = None, False, False
        if group is not None and confirmed:
            group.ended_by = reason
            self.events.append(group)
            self.on_end(group)


def active_frames(scores: np.ndarray, rules: EventRules) -> np.ndarray:
    """Which frames are active (module docstring), vectorised: within each run of frames at or above the
    off-threshold, the frames from its first one at or above the on-threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    above_off = scores >= rules.off
    index = np.arange(scores.size)
    run_start = np.maximum.accumulate(np.where(above_off & ~np.r_[False, above_off[:-1]], index, -1))
    last_on = np.maximum.accumulate(np.where(scores >= rules.threshold, index, -1))
    return above_off & (last_on >= run_start) & (last_on >= 0)


def count_events(scores: np.ndarray, rules: EventRules) -> int:
    """How many events one video's scores make under `rules` (EventTracker's count, vectorised)."""
    if rules.threshold is None:
        return 0
    frames = np.flatnonzero(active_frames(scores, rules))
    if frames.size == 0:
        return 0
    breaks = np.flatnonzero(np.diff(frames) - 1 > rules.merge_gap)
    sizes = np.diff(np.r_[0, breaks + 1, frames.size])  # active frames per group
    return int((sizes >= rules.min_duration).sum())


def false_alarm_threshold(videos: Sequence[np.ndarray], rate: float, fps: float, rules: EventRules) -> float:
    """The on-threshold for at most `rate` events per hour on `videos` (normal footage, each a stream at `fps`):
    the lowest candidate such that it and every higher candidate stay within the rate (module docstring). The
    candidates are the videos' scores (quantiles of them when there are many), and just above the highest one;
    `rules.threshold_off`, when given, is the lowest candidate."""
    if not rate >= 0 or not fps > 0:
        raise VadgpuError(f"--false-alarms-per-hour {rate} must be >= 0 (at {fps} frames/s)")
    videos = [np.asarray(v, dtype=np.float64) for v in videos if len(v)]
    if not videos:
        raise VadgpuError("--false-alarms-per-hour needs the training videos' scores, and there are none")
    pooled = np.concatenate(videos)
    hours = pooled.size / fps / 3600.0
    allowed = math.floor(rate * hours + 1e-9)
    values = np.unique(pooled)
    if values.size > MAX_CANDIDATES:
        values = np.unique(np.quantile(pooled, np.linspace(0, 1, MAX_CANDIDATES)))
    if rules.threshold_off is not None:
        values = values[values >= rules.threshold_off]
    best = float(np.nextafter(pooled.max(), np.inf))  # no training frame reaches it: no event
    for candidate in values[::-1]:
        trial = EventRules(float(candidate), rules.threshold_off, rules.min_duration, rules.merge_gap)
        if sum(count_events(v, trial) for v in videos) > allowed:
            break
        best = float(candidate)
    return best


@dataclass
class AlarmOptions:
    """What the user asks of alarms: a fixed on-threshold or a false-alarm rate, and the event rules."""

    threshold: float | None = None
    threshold_off: float | None = None
    min_duration: int = 1
    merge_gap: int = DEFAULT_MERGE_GAP
    false_alarms_per_hour: float | None = None
    fps: float | None = None  # the rate's frame rate when the stream does not say (default 25)

    def rules(self, default_threshold: float | None, train: Sequence[np.ndarray] | None, fps: float | None
              ) -> EventRules:
        """The rules for a stream at `fps`: the on-threshold given, or for the false-alarm rate on the training
        videos' scores `train` (normalised as the stream's scores), or `default_threshold`."""
        if self.threshold is not None and self.false_alarms_per_hour is not None:
            raise VadgpuError("give --threshold or --false-alarms-per-hour, not both")
        base = EventRules(None, None, self.min_duration, self.merge_gap)
        threshold = self.threshold
        if self.false_alarms_per_hour is not None:
            if not train:
                raise VadgpuError("--false-alarms-per-hour sets the threshold from the training videos' scores, and "
                                  "the model file has none (`--norm train` needs them too)")
            rules = EventRules(None, self.threshold_off, self.min_duration, self.merge_gap)
            threshold = false_alarm_threshold(train, self.false_alarms_per_hour, fps or self.fps or 25.0, rules)
        elif threshold is None:
            threshold = default_threshold
        if threshold is None:
            if self.threshold_off is not None:
                raise VadgpuError("--threshold-off needs an on-threshold (--threshold, or --norm train's default)")
            return base
        return EventRules(threshold, self.threshold_off, self.min_duration, self.merge_gap)
