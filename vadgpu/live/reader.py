"""Frames read ahead on a worker thread while the scorer works, and dropped, counted, where a live source would
otherwise wait for a scorer that falls behind.

`ReadAhead(frames, drop)` iterates the items of `frames` (live/stream.py's FrameStream, or the frames of a folder or
of the caller's arrays: `Frame` and `Gap` items) on a thread of its own into a queue of `QUEUE_FRAMES` frames; the
caller iterates the `ReadAhead` for the same items. Decoding (PyAV) and scoring (torch) release the GIL, so on
several cores the next frame is decoded while the current one is scored.

When the queue is full:

- `drop` off (files, frame folders, stdin, the caller's arrays by default): the reader waits for the scorer, and
  every frame is scored, as without the worker. Such input has no real-time clock (a pipe holds its writer back).
- `drop` on (a URL or a device: a camera that will not wait): the OLDEST queued frame is dropped and counted
  (`dropped`), so the frame scored next is at most `QUEUE_FRAMES` frames old and the delay stays bounded; dropping
  the newest instead would leave old frames waiting ever longer. A `Gap` stands where frames were dropped, so the
  caller restarts its clips there as after a reconnect (no clip glues frames across a gap), and the frames keep
  their source indices (the gap shows in scores.csv). The first drop is logged, then at most one line every
  `WARN_EVERY_S` seconds.

The worker ends on every exit path: at the end of the source; on an error in the source, which the caller gets
(the same exception, after the frames read before it); and on `close` (the caller broke out of its loop, an
error or a signal in the caller), which wakes the worker, waits up to `JOIN_S` seconds for it, and the worker
closes the source itself (in the thread that reads it). SIGINT and SIGTERM are blocked on the worker, so they
reach the main thread, where live/session.py handles them, even while it waits for a frame.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from pathlib import Path

from vadgpu.errors import VadgpuError
from vadgpu.live.stream import Frame, Gap, source_kind

log = logging.getLogger("vadgpu")

DROP_CHOICES = ("auto", "always", "never")
QUEUE_FRAMES = 4  # frames read ahead: at 25 fps at most 160 ms of extra delay when scoring falls behind
WARN_EVERY_S = 30.0
JOIN_S = 2.5  # longer than a live frame's interval and the default reconnect delay (2 s)


def drops_frames(choice: str, source) -> bool:
    """Whether live scoring of `source` drops frames when it falls behind: `choice` "auto" drops on a URL or a
    device (a live camera, paced in real time), "always" on any live source (also stdin and frames pushed as
    arrays, e.g. from a camera read by the caller), "never" on none; a file or frame folder is never dropped from."""
    if choice not in DROP_CHOICES:
        raise VadgpuError(f"drop frames {choice!r}: give one of {', '.join(DROP_CHOICES)}")
    kind = source_kind(str(source)) if isinstance(source, (str, Path)) else "arrays"
    if choice == "always" and kind == "file":
        raise VadgpuError(f"--drop-frames always: {source} is a file or frame folder, read as fast as scoring goes "
                          "with no real-time clock; its frames are never dropped")
    return choice == "always" or (choice == "auto" and kind in ("url", "device"))


class ReadAhead:
    """Iterate `frames` on a worker thread, `QUEUE_FRAMES` ahead; see the module docstring."""

    def __init__(self, frames, drop: bool, name: str = "the source", capacity: int = QUEUE_FRAMES):
        self.frames, self.drop, self.name, self.capacity = frames, drop, name, capacity
        self.dropped = 0  # frames dropped so far
        self._items: deque = deque()  # Frame and Gap items read and not yet taken
        self._queued = 0  # the Frames among them (a Gap takes no place)
        self._ready = threading.Condition()
        self._stop = self._done = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._warned_at: float | None = None
        self._warned_count = 0

    @property
    def fps(self) -> float | None:
        return self.frames.fps

    def __iter__(self):
        with self._ready:
            if self._thread is not None or self._stop:
                raise VadgpuError(f"{self.name} is read once")
            self._thread = threading.Thread(target=self._work, name="vadgpu-reader", daemon=True)
        self._thread.start()
        try:
            while True:
                with self._ready:
                    while not self._items and not self._done:
                        self._ready.wait()
                    if not self._items:
                        if self._error is not None:
                            raise self._error
                        return
                    item = self._items.popleft()
                    if isinstance(item, Frame):
                        self._queued -= 1
                        self._ready.notify_all()
                yield item
        finally:
            self.close()

    def _work(self) -> None:
        if hasattr(signal, "pthread_sigmask"):  # signals go to the main thread (live/session.py)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        items = iter(self.frames)
        try:
            for item in items:
                if isinstance(item, Frame):
                    item.wall = time.time()
                with self._ready:
                    if isinstance(item, Frame):
                        while self._queued >= self.capacity and not self._stop:
                            if self.drop:
                                self._drop_oldest()
                                break
                            self._ready.wait()
                    if self._stop:
                        break
                    self._items.append(item)
                    self._queued += isinstance(item, Frame)
                    self._ready.notify_all()
        except BaseException as exc:  # noqa: BLE001  the caller gets it
            self._error = exc
        finally:
            try:
                close = getattr(items, "close", None)  # a generator: its own cleanup, in this thread
                if callable(close):
                    close()
                self.frames.close()
            except Exception as exc:  # noqa: BLE001
                if self._error is None and not self._stop:
                    self._error = exc
            with self._ready:
                self._done = True
                self._ready.notify_all()

    def _drop_oldest(self) -> None:
        """Drop the oldest queued frame (the lock held); a Gap stands in its place."""
        at = next(i for i, item in enumerate(self._items) if isinstance(item, Frame))
        del self._items[at]
        self._queued -= 1
        self.dropped += 1
        if not (at > 0 and isinstance(self._items[at - 1], Gap)) and not (
                at < len(self._items) and isinstance(self._items[at], Gap)):
            self._items.insert(at, Gap("frames dropped: scoring fell behind"))
        now = time.monotonic()
        if self._warned_at is None:
            log.warning(f"{self.name}: scoring is slower than the stream, so the oldest waiting frame is dropped to "
                        "keep the delay bounded (each drop is counted, and the clips restart after it); a file served "
                        "over a URL keeps every frame with --drop-frames never (drop_frames=\"never\")")
        elif now - self._warned_at >= WARN_EVERY_S:
            log.warning(f"{self.name}: {self.dropped - self._warned_count} more frame(s) dropped in the last "
                        f"{now - self._warned_at:.0f} s ({self.dropped} in all)")
        else:
            return
        self._warned_at, self._warned_count = now, self.dropped

    def close(self) -> None:
        """Stop the worker and let it close the source; waits up to JOIN_S seconds for it (a read that blocks
        longer ends by its own timeout, and the worker then closes the source)."""
        with self._ready:
            self._stop = True
            self._ready.notify_all()
            thread = self._thread
        if thread is None:
            self.frames.close()
            return
        if thread is not threading.current_thread():
            thread.join(JOIN_S)
            if thread.is_alive():
                log.warning(f"{self.name}: the reader is still waiting for the source; it stops when that read "
                            "returns or times out")
