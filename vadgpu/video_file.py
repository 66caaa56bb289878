"""The MP4 files vadgpu writes frame by frame (the heatmap video, live scoring's --video-out): H.264 through PyAV,
tagged as vadgpu's (outputs.video_metadata), and every failure one VadgpuError naming the file.

PyAV writing to a path hands the bytes to FFmpeg's own file protocol, which drops a failed write: on a full disk the
command finished, said "wrote", and left a file that does not decode. Here the container writes into a Python file
object instead, so a failed write (ENOSPC, EFBIG, EIO) raises where it happens, and closing fsyncs the file.

    video = Mp4Writer(path, "--video-out", fragmented=True)   # opened now: an unwritable target fails at once
    video.write(bgr_image, fps)                                # the stream is added on the first frame
    video.close()                                              # or video.abort() on an error elsewhere

`atomic=True` writes to a hidden temporary that replaces `path` on `close()` (io.atomic_path); a fragmented file
(`fragmented=True`, playable at any moment, even after a kill) is written in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np

from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path
from vadgpu.optional import require
from vadgpu.outputs import video_metadata

CODEC = "libx264"
CODEC_OPTIONS = {"preset": "veryfast"}
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


class Mp4Writer:
    """One H.264 MP4 written frame by frame (see the module docstring); `what` names it in messages."""

    def __init__(self, path: str | os.PathLike, what: str, *, fragmented: bool = False, atomic: bool = True,
                 options: dict | None = None):
        self.path, self.what = Path(path), what
        self.av = av = require("av", f"writing {what} {path}")
        self.options = dict(CODEC_OPTIONS if options is None else options)
        self.frames = 0
        self._stream = self._fh = self._container = None
        self._atomic = atomic_path(self.path) if atomic else None
        try:
            if self._atomic is not None:
                target = self._atomic.__enter__()  # a VadgpuError naming the path when it cannot be made
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = self.path
            self._fh = open(target, "wb")
            self._container = av.open(self._fh, mode="w", format="mp4", options=FRAGMENTED if fragmented else {})
            self._container.metadata.update(video_metadata())
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            raise self._error(exc) from exc
        except BaseException:
            self.abort()
            raise

    def _error(self, exc: BaseException) -> VadgpuError:
        reason = getattr(exc, "strerror", None) or str(exc)
        free = ""
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            with contextlib.suppress(OSError):
                free = f" (is the disk full? {shutil.disk_usage(self.path.parent).free / 1e6:.0f} MB free there)"
        return VadgpuError(f"cannot write {self.what} {self.path}: {reason}{free}")

    def write(self, image: np.ndarray, fps: float | None = None) -> None:
        """Append one (H, W, 3) uint8 BGR frame (even sides); `fps`, read on the first frame, sets the rate."""
        av = self.av
        try:
            if self._stream is None:
                rate = Fraction(fps if fps and fps > 0 else 25.0).limit_denominator(1001)
                self._stream = self._container.add_stream(CODEC, rate=rate)
                self._stream.height, self._stream.width = image.shape[:2]
                self._stream.pix_fmt = "yuv420p"
                self._stream.options = dict(self.options)
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                self._container.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:
            raise self._error(exc) from exc
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder, close and fsync the file (and move it into place when atomic); returns its path."""
        av = self.av
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            container, self._container = self._container, None
            container.close()
            self._fh.flush()
            os.fsync(self._fh.fileno())
            fh, self._fh = self._fh, None
            fh.close()
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            raise self._error(exc) from exc
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Close without raising; an atomic file's temporary is dropped (a fragmented one keeps what it holds)."""
        for closing in (self._container, self._fh):
            if closing is not None:
                with contextlib.suppress(Exception):
                    closing.close()
        self._container = self._fh = None
        if self._atomic is not None:
            atomic, self._atomic = self._atomic, None
            with contextlib.suppress(Exception):
                atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
