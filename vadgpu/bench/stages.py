"""Stage timing: where a scoring run spends its time, at no cost when nothing measures it.

The scoring path marks its stages where they happen (a block per batch, per frame or per file; never per box):

    from vadgpu.bench.stages import stage, timed

    with stage("network"):
        target, recon = model.reconstruct(tubes)
    for batch in timed(loader, "decode"):   # each next() counted as "decode"
        ...

Both do nothing unless a `StageClock` is installed in the current context (`with StageClock() as clock:`, which
`vadgpu bench score` does): `stage` then returns one shared do-nothing context and `timed` the iterable itself,
so the normal path pays one ContextVar lookup per marked block. Time is exclusive: a stage entered inside another
pauses the outer one, and time outside every stage is `OTHER`, so the clock's stages add up to its wall time.
A name with a dot (`appearance.backbone`) is a part of the stage before the dot. With `sync` (on CUDA,
`torch.cuda.synchronize`), the clock waits for the device at every stage boundary, so each stage is charged with
its own kernels; nothing synchronises when no clock is installed.
"""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Callable, Iterable, Iterator, TypeVar

OTHER = "other"  # time inside the clock but outside every marked stage

T = TypeVar("T")
_CLOCK: ContextVar["StageClock | None"] = ContextVar("vadgpu_stage_clock", default=None)
_NOTHING = contextlib.nullcontext()  # reusable and re-entrant: the one context `stage` returns without a clock


class StageClock:
    """Exclusive seconds and entries per stage while installed (`with clock:`); see the module docstring."""

    def __init__(self, sync: Callable[[], None] | None = None):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.sync = sync
        self._stack: list[str] = [OTHER]
        self._since = 0.0
        self._token = None

    def __enter__(self) -> "StageClock":
        if self._token is not None:
            raise RuntimeError("a StageClock is installed once at a time")
        if self.sync is not None:
            self.sync()
        self._token = _CLOCK.set(self)
        self._since = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._charge()
        _CLOCK.reset(self._token)
        self._token = None

    @property
    def total(self) -> float:
        """Seconds counted so far, every stage and `OTHER` together."""
        return sum(self.seconds.values())

    def _charge(self) -> None:
        """Charge the time since the last boundary to the stage running now."""
        if self.sync is not None:
            self.sync()
        now = time.perf_counter()
        top = self._stack[-1]
        self.seconds[top] = self.seconds.get(top, 0.0) + (now - self._since)
        self._since = now

    def enter(self, name: str) -> None:
        self._charge()
        self._stack.append(name)
        self.calls[name] = self.calls.get(name, 0) + 1

    def leave(self) -> None:
        self._charge()
        self._stack.pop()


class _Stage:
    """The context `stage(name)` returns while a clock is installed."""

    __slots__ = ("clock", "name")

    def __init__(self, clock: StageClock, name: str):
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.clock.enter(self.name)

    def __exit__(self, *exc) -> None:
        self.clock.leave()


def stage(name: str):
    """A context charging its block to stage `name` of the installed clock; a shared no-op without one."""
    clock = _CLOCK.get()
    return _NOTHING if clock is None else _Stage(clock, name)


def timed(iterable: Iterable[T], name: str) -> Iterable[T]:
    """`iterable` with each of its next() calls charged to stage `name` of the installed clock; the iterable itself
    without one."""
    clock = _CLOCK.get()
    return iterable if clock is None else _timed(iter(iterable), clock, name)


def _timed(items: Iterator[T], clock: StageClock, name: str) -> Iterator[T]:
    while True:
        clock.enter(name)
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            clock.leave()
        yield item
