"""Warm-up, then timed repeats of a stream of work; a rate is units (frames or clips) per second.

A *stream* is an iterator whose every `next()` does one piece of work and returns how many units it produced.
Streams run continuously across repeats (a loader's next epoch starts where the last ended), so a repeat times
steady state, including whatever per-epoch cost the real loop pays (pipeline builds, worker start-up).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

from vadgpu.errors import VadgpuError


@dataclass
class Rate:
    """Units per second over the repeats: median, min, max, and every repeat's value."""

    median: float
    min: float
    max: float
    repeats: list[float]
    units: int  # units counted over all timed repeats (warm-up excluded)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("median", "min", "max"):
            out[key] = round(out[key], 2)
        out["repeats"] = [round(r, 2) for r in self.repeats]
        return out


def measure_rate(stream: Iterator[int], seconds: float, repeats: int, warmup: float,
                 sync: Callable[[], None] = lambda: None, min_steps: int = 1) -> Rate:
    """Pull from `stream` for `warmup` s, then `repeats` windows of >= `seconds` s and >= `min_steps` pieces each.

    `sync` waits for queued device work (CUDA) so a window counts only finished work.
    """
    if seconds <= 0 or repeats < 1 or warmup < 0:
        raise VadgpuError(f"--seconds {seconds} must be > 0, --repeats {repeats} >= 1, warm-up {warmup} >= 0")
    _run_window(stream, warmup, 1, sync)
    rates, total = [], 0
    for _ in range(repeats):
        units, elapsed = _run_window(stream, seconds, min_steps, sync)
        rates.append(units / elapsed)
        total += units
    return Rate(statistics.median(rates), min(rates), max(rates), rates, total)


def _run_window(stream: Iterator[int], seconds: float, min_steps: int, sync: Callable[[], None]) -> tuple[int, float]:
    units = steps = 0
    start = time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        try:
            units += next(stream)
        except StopIteration:
            raise VadgpuError("a benchmark stream ended early: the data gave no work to time") from None
        steps += 1
    sync()
    return units, max(time.perf_counter() - start, 1e-9)

