"""Frames from a live source, one at a time, with PyAV: a network stream (rtsp://, http(s)://, any URL FFmpeg
reads), a capture device (/dev/video0, read with v4l2), `-` (a stream on stdin: MPEG-TS, MJPEG AVI, Matroska,
fragmented MP4 ... anything FFmpeg reads without seeking) or a local file.

A network stream or device that fails (cannot be opened, or a read error mid-way) is reopened up to `retries`
times in a row, `retry_delay` seconds apart, each time with a message (a reopened stream that delivers frames gets
its retries back); then it is an error naming the source. Frames keep
their running index across a reconnect; the gap is reported to the caller (a `Gap` item), which restarts its clips
there. A clean end of stream ends the iteration: a file or stdin simply ends, and so does a server that closes
the stream properly. An MP4 URL that opens but fails before its first frame is an error at once, without
retries, with what to do: such a file usually has its index at the end and sits on a server without HTTP range
requests, and reopening it would fail the same way. A finite stream ends too when its end looks like a drop: a
file served over HTTP without a length (or cut half-way) fails at its end, and reopened it starts again from its
first frame (the same timestamp, the same pixels), which a live source never does; that replay ends the iteration
with a message instead of scoring the same content again and again.

`Frame.time` never goes back: where the stream's timestamps restart (a looped MPEG-TS, a spliced stream, a
reconnect) time goes on from the last frame, one frame interval later.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from vadgpu.errors import VadgpuError
from vadgpu.optional import require

log = logging.getLogger("vadgpu")

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
KINDS = ("url", "device", "stdin", "file")
OPEN_TIMEOUT_S, READ_TIMEOUT_S = 10.0, 10.0
STDIN_PROBE = {"probesize": "32768", "analyzeduration": "500000"}  # bytes, microseconds


@dataclass
class Frame:
    index: int  # running frame number from the start of scoring
    time: float  # seconds since the first frame (the stream's timestamps when it has them)
    image: np.ndarray  # (H, W, 3) uint8 BGR, as decoded
    wall: float | None = None  # Unix seconds when it was read (live/reader.py sets it)


@dataclass
class Gap:
    """The frames before and after are not consecutive: the stream dropped and was reopened, or frames were dropped
    because scoring fell behind (live/reader.py)."""

    reason: str


def source_kind(source: str) -> str:
    """'url', 'device', 'stdin' or 'file' for a SOURCE argument."""
    if source == "-":
        return "stdin"
    if _URL.match(source):
        return "url"
    if source.startswith("/dev/"):
        return "device"
    return "file"


def is_live_source(source: str) -> bool:
    return source_kind(source) != "file"


def source_name(source: str) -> str:
    """A short name for outputs: the file's stem, 'stdin', the device's name, or the URL's last path part."""
    kind = source_kind(source)
    if kind == "stdin":
        return "stdin"
    tail = re.sub(r"[?#].*$", "", source).rstrip("/").rsplit("/", 1)[-1]
    tail = tail.rsplit(".", 1)[0] if "." in tail else tail
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tail) or "stream"


class FrameStream:
    """Iterate `Frame`s (and `Gap`s after a reconnect) from `source`; see the module docstring."""

    def __init__(self, source: str, retries: int = 3, retry_delay: float = 2.0):
        if retries < 0 or retry_delay < 0:
            raise VadgpuError(f"--retries {retries} and --retry-delay {retry_delay} must be >= 0")
        self.av = require("av", f"reading the stream {source}")
        self.source, self.kind = source, source_kind(source)
        self.retries, self.retry_delay = retries, retry_delay
        self.fps: float | None = None
        self._container = None

    def _open(self):
        av = self.av
        try:
            if self.kind == "stdin":  # probe little: a pipe gives its first frames as they come
                # unbuffered: a read returns what the pipe holds instead of waiting to fill PyAV's buffer
                return av.open(open(sys.stdin.fileno(), "rb", buffering=0, closefd=False), mode="r",
                               options=STDIN_PROBE)
            if self.kind == "device":
                return av.open(self.source, format="v4l2")
            if self.kind == "url":
                options = {"rtsp_transport": "tcp"} if self.source.lower().startswith("rtsp") else {}
                return av.open(self.source, options=options, timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
            return av.open(self.source)
        except (av.error.FFmpegError, OSError) as exc:
            raise _StreamFailed(f"cannot open {self.source}: {exc}") from exc

    def _frames(self, container) -> Iterator[tuple[float | None, np.ndarray]]:
        av = self.av
        if not container.streams.video:
            raise VadgpuError(f"{self.source} holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if stream.average_rate:
            self.fps = float(stream.average_rate)
        decoded = False
        try:
            for frame in container.decode(stream):
                decoded = True
                yield frame.time, frame.to_ndarray(format="bgr24")
            return
        except (av.error.FFmpegError, OSError) as exc:
            if isinstance(exc, av.error.EOFError):
                return
            if not decoded and self.kind == "url" and _is_mp4(container):  # reopening would fail the same way
                raise VadgpuError(unstreamable_mp4_message(self.source, exc)) from exc
            failed = exc
        # a failed read leaves the frames the decoder still holds (a few, with frame threads or B-frames): drain them
        try:
            for frame in stream.codec_context.decode(None):
                yield frame.time, frame.to_ndarray(format="bgr24")
        except (av.error.FFmpegError, OSError, ValueError):
            pass
        raise _StreamFailed(f"reading failed ({failed})") from failed

    def __iter__(self) -> Iterator[Frame | Gap]:
        index, failures, offset, last = 0, 0, 0.0, None
        first = None  # (timestamp, digest) of the source's very first frame: a replay starts with it again
        while True:
            try:
                self._container = self._open()
                start, previous, count = None, None, 0
                for stamp, image in self._frames(self._container):
                    step = 1.0 / (self.fps or 25.0)
                    stamp = count * step if stamp is None else stamp
                    if count == 0:
                        mark = (stamp, hashlib.sha1(image.tobytes()).digest())
                        if first is None:
                            first = mark
                        elif mark == first:  # reopened, it started over: a finite file, not a live stream
                            log.warning(f"stream {self.source}: reopened after the drop, it started again from its "
                                        f"first frame, so it is a file (complete, or cut where it dropped), not a "
                                        f"live stream; scoring ends after its {index} frames")
                            return
                    if start is None or stamp < previous:  # timestamps reset (a looped or spliced stream):
                        offset = 0.0 if last is None else last + step  # time goes on from the last frame
                        start = stamp
                    last = offset + (stamp - start)
                    previous = stamp
                    failures, count = 0, count + 1
                    yield Frame(index, last, image)
                    index += 1
                return
            except _StreamFailed as exc:
                failures += 1
                if self.kind in ("file", "stdin") or failures > self.retries:
                    tried = f" after {self.retries} retries" if self.kind in ("url", "device") else ""
                    raise VadgpuError(f"stream {self.source} failed{tried}: {exc}") from exc
                log.warning(f"stream {self.source} dropped ({exc}); reopening in {self.retry_delay:g} s (attempt "
                            f"{failures} of {self.retries})")
                time.sleep(self.retry_delay)
                if index:
                    yield Gap(str(exc))
            finally:
                self.close()

    def close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception:  # closing a broken network stream can fail again; nothing is left to save
                pass


def _is_mp4(container) -> bool:
    """Whether FFmpeg opened `container` with its MP4 / QuickTime demuxer."""
    return "mp4" in (getattr(container.format, "name", "") or "").split(",")


def unstreamable_mp4_message(source: str, exc: BaseException) -> str:
    """The error for an MP4 URL that opened but gave no frame: most often a file whose index (the moov atom) comes
    after the media data, served by a server that ignores HTTP range requests."""
    return (f"cannot read frames from {source} ({exc}). It is an MP4 file: when its index (the moov atom) is at the "
            "end of the file, the reader has to jump back to the media data, which needs a server that answers "
            "HTTP range requests. Serve it from one that does, or move the index to the front once with `ffmpeg -i "
            "IN.mp4 -c copy -movflags +faststart OUT.mp4` (or stream MPEG-TS or fragmented MP4)")


class _StreamFailed(Exception):
    """A failure a reconnect may cure (internal)."""
