"""Event rules on synthetic score sequences (live/events.py): merge gap, minimum duration, hysteresis, the
false-alarm-rate threshold, and the vectorised count against the frame-by-frame tracker."""

from __future__ import annotations

import numpy as np
import pytest

from vadgpu.errors import VadgpuError
from vadgpu.live.events import (AlarmOptions, EventRules, EventTracker, count_events, false_alarm_threshold)


def _run(scores, rules):
    """(events, per-frame alarm states, starts) of `scores` fed one by one."""
    starts = []
    tracker = EventTracker(rules, on_start=lambda e: starts.append(e.alarm_frame))
    alarms = [tracker.update(i, i / 25, float(s), wall=1e9 + i / 25) for i, s in enumerate(scores)]
    tracker.close("end of stream")
    return tracker.events, alarms, starts


def test_a_short_dip_does_not_split_an_event_with_a_merge_gap():
    scores = [0] * 5 + [3] * 10 + [0] * 3 + [3] * 10 + [0] * 10
    split, _, _ = _run(scores, EventRules(1.0))
    assert [(e.start_frame, e.end_frame) for e in split] == [(5, 14), (18, 27)]
    merged, alarms, _ = _run(scores, EventRules(1.0, merge_gap=3))
    assert [(e.start_frame, e.end_frame, e.frames) for e in merged] == [(5, 27, 20)]
    assert all(alarms[5:28]) and not any(alarms[:5]) and not any(alarms[31:])  # on through the dip
    assert _run(scores, EventRules(1.0, merge_gap=2))[0][0].end_frame == 14  # a dip of 3 > 2: split


def test_a_one_frame_spike_is_no_event_with_a_minimum_duration():
    scores = [0] * 10 + [5] + [0] * 10 + [2] * 4 + [0] * 5
    assert len(_run(scores, EventRules(1.0))[0]) == 2
    events, alarms, starts = _run(scores, EventRules(1.0, min_duration=3))
    assert [(e.start_frame, e.alarm_frame, e.end_frame) for e in events] == [(21, 23, 24)]
    assert starts == [23] and not alarms[10] and not alarms[21] and alarms[23]


def test_hysteresis_holds_an_event_between_the_two_thresholds():
    scores = [0, 0, 3, 1.5, 1.2, 1.6, 0.5, 1.5, 0]
    plain, _, _ = _run(scores, EventRules(2.0))
    assert [(e.start_frame, e.end_frame) for e in plain] == [(2, 2)]
    held, alarms, _ = _run(scores, EventRules(2.0, threshold_off=1.0))
    assert [(e.start_frame, e.end_frame, e.threshold, e.threshold_off) for e in held] == [(2, 5, 2.0, 1.0)]
    assert alarms == [False, False, True, True, True, True, False, False, False]  # 1.5 at frame 7 opens nothing
    with pytest.raises(VadgpuError, match="threshold-off"):
        EventRules(1.0, threshold_off=2.0)


def test_events_carry_their_times_boxes_and_settings():
    tracker = EventTracker(EventRules(1.0), source="cam", model="ped2-ddl")
    tracker.update(0, 0.0, 0.5, wall=0.0)
    tracker.update(1, 0.04, 2.0, boxes=[[1, 2, 3, 4, 9.0]], wall=1.5)
    tracker.update(2, 0.08, 0.0, wall=2.0)
    (event,) = tracker.events
    assert (event.source, event.model, event.peak_boxes, event.peak_score) == ("cam", "ped2-ddl",
                                                                               [[1, 2, 3, 4, 9.0]], 2.0)
    assert event.start_wall_time == "1970-01-01T00:00:01.500+00:00" and event.alarm_frame == 1


@pytest.mark.parametrize("seed", range(5))
def test_the_vectorised_count_equals_the_tracker(seed):
    rng = np.random.default_rng(seed)
    scores = np.convolve(rng.normal(0, 1, 600), np.ones(4) / 2, mode="same")
    for rules in (EventRules(1.0), EventRules(1.0, 0.5), EventRules(0.8, 0.2, 3, 2), EventRules(1.2, None, 2, 5)):
        assert count_events(scores, rules) == len(_run(scores, rules)[0]), rules


def test_the_false_alarm_threshold_is_monotone_and_respects_the_rate():
    rng = np.random.default_rng(0)
    videos = [np.convolve(rng.normal(0, 1, n), np.ones(5) / 5, mode="same") for n in (3000, 5000, 4000)]
    fps, hours = 25.0, 12000 / 25 / 3600  # 8 minutes of training video
    for base in (EventRules(), EventRules(None, None, 3, 10), EventRules(None, -0.5, 1, 0)):
        found = []
        for rate in (0, 7.5, 30, 120, 600):
            threshold = false_alarm_threshold(videos, rate, fps, base)
            rules = EventRules(threshold, base.threshold_off, base.min_duration, base.merge_gap)
            assert sum(count_events(v, rules) for v in videos) <= rate * hours + 1e-9
            found.append(threshold)
        assert found == sorted(found, reverse=True), found  # a higher rate never raises the threshold
        assert found[-1] < found[0]
    # and the lowest: one candidate lower would break the rate (here, where counts grow as the threshold falls)
    threshold = false_alarm_threshold(videos, 120, fps, EventRules())
    lower = np.unique(np.concatenate(videos))
    lower = lower[lower < threshold].max()
    assert sum(count_events(v, EventRules(float(lower))) for v in videos) > 120 * hours


def test_alarm_options_choose_the_threshold():
    videos = [np.linspace(-1, 1, 100)]
    assert AlarmOptions().rules(2.5, videos, 25).threshold == 2.5  # the default
    assert AlarmOptions(threshold=1.0).rules(2.5, videos, 25).threshold == 1.0
    assert AlarmOptions(false_alarms_per_hour=0).rules(2.5, videos, 25).threshold > 1.0
    with pytest.raises(VadgpuError, match="not both"):
        AlarmOptions(threshold=1.0, false_alarms_per_hour=1).rules(None, videos, 25)
    with pytest.raises(VadgpuError, match="training videos"):
        AlarmOptions(false_alarms_per_hour=1).rules(None, [], 25)
