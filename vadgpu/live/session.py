"""The one way live scoring ends, whatever ends it: the open event is closed with the reason and written to
events.jsonl, the files are flushed and closed, and the command's exit status says why.

| what ends it                               | the open event's `ended_by`    | exit status |
|--------------------------------------------|--------------------------------|-------------|
| the stream ends (or --max-frames)          | end of stream                  | 0           |
| SIGINT (Ctrl-C)                            | interrupted                    | 130         |
| SIGTERM (kill, systemd, docker stop)       | terminated                     | 143         |
| an error: the stream fails for good, the   | error: MESSAGE                 | 1           |
| frame size changes, a full disk ...        |                                |             |

`StopSignals` turns SIGINT and SIGTERM into `Stopped` (a KeyboardInterrupt carrying the signal) while scoring, so
the scoring loop has one exception path for both; `ended_by` names the reason for an exception (or None: the
stream ended); `close_all` closes the outputs, raising a closing error only when nothing else failed first.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterable

from vadgpu.errors import VadgpuError

SIGNAL_REASONS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Stopped(KeyboardInterrupt):
    """A signal asked live scoring to stop."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """While held (main thread only): SIGINT and SIGTERM raise `Stopped`; `seen` keeps the first signal."""

    def __init__(self) -> None:
        self.seen: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, _frame) -> None:
        if self.seen is None:
            self.seen = signum
        raise Stopped(signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_REASONS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int | None:
        """128 + the signal that stopped scoring (130 for SIGINT, 143 for SIGTERM), None when none did."""
        return None if self.seen is None else 128 + self.seen


def ended_by(exc: BaseException | None, signals: StopSignals) -> str:
    """Why scoring ended, as an event's `ended_by`: a signal (also one that PyAV turned into an end of stream),
    an error, or the end of the stream."""
    if signals.seen is not None:
        return SIGNAL_REASONS[signals.seen]
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if exc is None:
        return "end of stream"
    message = exc.format_message() if isinstance(exc, VadgpuError) else f"{type(exc).__name__}: {exc}"
    return f"error: {message[:300]}"


def close_all(closers: Iterable[Callable[[], object]], failing: bool) -> None:
    """Call every closer; the first error is raised unless another error is already on its way (`failing`)."""
    first = None
    for close in closers:
        try:
            close()
        except Exception as exc:  # noqa: BLE001  every file gets its chance to close
            first = first or exc
    if first is not None and not failing:
        raise first


@contextlib.contextmanager
def no_signals() -> "contextlib.AbstractContextManager[None]":
    """Hold SIGINT and SIGTERM off while the open event is written (a second Ctrl-C must not cut that line)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in SIGNAL_REASONS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
