"""Alarm latency and false alarms of live scoring on Ped2, through `vadgpu.Detector` with the shipped `ped2-ddl`.

    python benchmarks/live_alarms.py --root $PED2 [--out benchmarks/results/live-alarms-ped2-cpu.json]
    (or stream the splits in two processes first: --split test & --split train, then without --split)

The 12 test videos and the 16 training videos (frame folders) are streamed through `Detector.stream` as if at
25 fps (stream time = frame index / 25), each as its own stream (the live background starts afresh). The raw scores
are kept (`--scores`, reused when present), and every setting is then applied to them the way the Detector applies
it: its trailing median and training normalisation (`live_settings`, the functions the Detector's CausalScorer uses),
its threshold (`Detector.rules`), and live/events.py's EventTracker frame by frame. Per setting:

- latency: for each anomalous interval of the test labels (a run of anomalous frames), the first frame of the
  interval with the alarm on, minus the interval's first frame, plus the clip delay (the frames after a frame that
  its score waits for): frames of video between the anomaly's start and the alarm; median and worst over the
  intervals that got an alarm;
  also over the intervals that begin after the stream's first frame (the others are in view from the first
  frame, while the live background is still forming);
  and, stricter, the latency of the first alarm *raised* during such an interval (an alarm already on when it
  begins, held from an event before it, does not count; None: no alarm raised in it);
- events per interval: how many events overlap each anomalous interval (one anomaly split into several events);
- alarmed: the share of anomalous intervals with the alarm on during them;
- false alarms per hour: events on the training videos (normal footage) per hour of them at 25 fps; also the test
  videos' events raised on a normal frame (before an anomaly came into view, or after it left; an event raised
  early and held on into the anomaly by the merge gap counts here, not as an alarm of the anomaly).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from vadgpu.threads import prefer_passive_omp_waiting

FPS = 25.0
SETTINGS = {  # name: Detector.load options (the defaults: window 3, percentile threshold, min 1, merge gap 50)
    "defaults": {},
    "window 9 (the defaults before)": {"window": 9},
    "window 17, no merge gap (the first live defaults)": {"window": 17, "merge_gap": 0},
    "window 1, min duration 2": {"window": 1, "min_duration": 2},
    "window 5": {"window": 5},
    "defaults, no merge gap": {"merge_gap": 0},
    "defaults, min duration 3": {"min_duration": 3},
    "defaults, hysteresis 1.0": {"threshold_off_below": 1.0},
    "defaults, 1 false alarm/h": {"false_alarms_per_hour": 1},
}
DEV = ("01", "02", "03", "04", "05", "06")  # the test videos the defaults were chosen on (all 12 are reported)


def score_videos(root: Path, model: str, split: str) -> dict:
    """{"delay_frames": ..., "seconds": ..., split: {video: {"raw": [...], "labels": [...] or None}}} from
    streaming each frame folder of the split."""
    from vadgpu import Detector
    from vadgpu.data.catalog import open_dataset

    dataset = open_dataset("ped2", root)
    detector = Detector.load(model, "cpu", norm="none", smooth="none")
    out, started = {"delay_frames": detector.delay_frames}, time.perf_counter()
    for videos in [dataset.test if split == "test" else dataset.train]:
        out[split] = {}
        for video in videos:
            begun = time.perf_counter()
            raw = [r.raw_score for r in detector.stream(video.path, fps=FPS, keep_images=False)]
            out[split][video.name] = {"raw": raw, "labels": None if video.labels is None else
                                      [int(v) for v in video.labels]}
            print(f"{split} {video.name}: {len(raw)} frames in {time.perf_counter() - begun:.1f} s", flush=True)
    out["seconds"] = time.perf_counter() - started
    return out


def intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.r_[0, labels.astype(int), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def alarms_of(detector, raw: np.ndarray) -> tuple[np.ndarray, list]:
    """Per-frame alarm states and the events of one video's raw scores under the detector's settings."""
    from vadgpu.live.events import EventTracker
    from vadgpu.scoring.protocol import trailing_smooth

    scores = trailing_smooth(raw, detector.protocol)
    if detector.stats is not None:
        scores = (scores - detector.stats.mean) / detector.stats.std
    tracker = EventTracker(detector.rules(FPS))
    states = np.array([tracker.update(i, i / FPS, float(s)) for i, s in enumerate(scores)])
    tracker.close("end of stream")
    return states, tracker.events


def measure(scored: dict, model: str, options: dict | None) -> dict:
    from vadgpu import Detector

    options = dict(options or {})
    below = options.pop("threshold_off_below", None)
    detector = Detector.load(model, "cpu", **options)
    if below is not None:  # hysteresis: off this much below the on-threshold
        on = detector.rules(FPS).threshold
        detector = Detector.load(model, "cpu", threshold_off=on - below, **options)
    rules = detector.rules(FPS)
    delay = scored["delay_frames"]
    latencies, late, missed, test_false, split, raised = [], [], 0, 0, [], []
    for video in scored["test"].values():
        labels = np.asarray(video["labels"])
        states, events = alarms_of(detector, np.asarray(video["raw"]))
        for start, end in intervals(labels):
            on = np.flatnonzero(states[start:end + 1])
            if on.size:
                latencies.append(int(on[0]) + delay)
                if start > 0:  # the stream was running before the anomaly came into view
                    late.append(latencies[-1])
            else:
                missed += 1
            split.append(sum(1 for e in events if e.start_frame <= end and e.end_frame >= start))
            new = [e.alarm_frame for e in events if start <= e.alarm_frame <= end]
            if start > 0:  # strict: only an alarm raised during the interval, none held from before it
                raised.append(int(min(new) - start + delay) if new else None)
        test_false += sum(1 for e in events if not labels[e.alarm_frame])  # raised on a normal frame
    train_events, train_frames = 0, 0
    for video in scored["train"].values():
        train_events += len(alarms_of(detector, np.asarray(video["raw"]))[1])
        train_frames += len(video["raw"])
    hours = train_frames / FPS / 3600
    total = len(latencies) + missed
    return {"options": options | ({"threshold_off_below": below} if below is not None else {}),
            "window": detector.protocol.window, "threshold": rules.threshold, "threshold_off": rules.off,
            "min_duration": rules.min_duration, "merge_gap": rules.merge_gap,
            "latency_median": float(np.median(latencies)) if latencies else None,
            "latency_worst": int(max(latencies)) if latencies else None, "latencies": latencies,
            "latency_median_after_start": float(np.median(late)) if late else None,
            "latency_worst_after_start": int(max(late)) if late else None,
            "events_per_interval": split, "raised_after_start": raised,
            "raised_median_after_start": float(np.median([r for r in raised if r is not None]))
            if any(r is not None for r in raised) else None,
            "intervals": total, "alarmed": len(latencies) / total, "train_events": train_events,
            "train_hours": hours, "false_alarms_per_hour": train_events / hours, "test_false_events": test_false}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="Ped2 root")
    parser.add_argument("--model", default="ped2-ddl")
    parser.add_argument("--scores", default="benchmarks/results/live-alarms-ped2-raw-{split}.json",
                        help="raw scores per split: written after streaming, reused when present")
    parser.add_argument("--split", choices=("test", "train"), help="only stream this split (no table)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/live-alarms-ped2-cpu.json"))
    args = parser.parse_args(argv)
    prefer_passive_omp_waiting()
    splits = [args.split] if args.split else ["test", "train"]
    if not all(Path(args.scores.format(split=s)).is_file() for s in splits) and not args.root.is_dir():
        parser.error(f"--root {args.root}: no such folder")
    scored = {"seconds": 0.0}
    for split in splits:
        path = Path(args.scores.format(split=split))
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(score_videos(args.root, args.model, split)))
        part = json.loads(path.read_text())
        scored.update({split: part[split], "delay_frames": part["delay_frames"],
                       "seconds": scored["seconds"] + part["seconds"]})
    if args.split:
        return 0
    dev = {**scored, "test": {name: v for name, v in scored["test"].items() if name in DEV}}
    results = {}
    for name, options in SETTINGS.items():
        results[name] = measure(scored, args.model, options)
        chosen_on = measure(dev, args.model, options)
        results[name]["dev"] = {k: chosen_on[k] for k in ("latency_median", "latency_worst", "alarmed",
                                                           "test_false_events")}
    record = {"model": args.model, "fps": FPS, "delay_frames": scored["delay_frames"],
              "streaming_seconds": scored.get("seconds"), "machine": platform.machine(),
              "python": sys.version.split()[0], "settings": results}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print("| setting | window | threshold (off) | min | gap | videos 01-06: latency median (worst), alarms on normal "
          "frames | latency median (worst) | after frame 0 | raised after frame 0 | alarmed | events per interval "
          "(max) | false alarms/h (train events) | test alarms raised on normal frames |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        off = "" if r["threshold_off"] == r["threshold"] else f" ({r['threshold_off']:.2f})"
        d = r["dev"]
        print(f"| {name} | {r['window']} | {r['threshold']:.2f}{off} | {r['min_duration']} | {r['merge_gap']} | "
              f"{d['latency_median']:g} ({d['latency_worst']}), {d['test_false_events']} | "
              f"{r['latency_median']:g} ({r['latency_worst']}) | {r['latency_median_after_start']:g} "
              f"({r['latency_worst_after_start']}) | {', '.join(str(v) for v in r['raised_after_start'])} | "
              f"{r['alarmed']:.0%} of {r['intervals']} | "
              f"{np.mean(r['events_per_interval']):.2f} ({max(r['events_per_interval'])}) | "
              f"{r['false_alarms_per_hour']:.1f} ({r['train_events']} in {r['train_hours'] * 60:.1f} min) | "
              f"{r['test_false_events']} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
