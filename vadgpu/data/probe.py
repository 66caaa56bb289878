"""What a source is: codec, frame count, frame rate and size of a video file or a frame folder.

Video files are probed with PyAV where it is installed, else with OpenCV (which has no codec details and counts
frames by decoding them all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from vadgpu.errors import VadgpuError
from vadgpu.log import logger
from vadgpu.optional import available

# Image formats of frame folders, by extension; the name is what PreparedVideo.codec reports.
IMAGE_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp"}
FOLDER_FPS = 25.0  # frame folders carry no rate; only logs and the manifest use it
# OpenCV reports a stream's FourCC; the canonical FFmpeg names PyAV would give for the common ones
FOURCC_CODECS = {"mjpg": "mjpeg", "avc1": "h264", "h264": "h264", "x264": "h264", "hvc1": "hevc", "hev1": "hevc",
                 "hevc": "hevc", "vp80": "vp8", "vp90": "vp9", "av01": "av1", "fmp4": "mpeg4", "mp4v": "mpeg4",
                 "xvid": "mpeg4", "divx": "mpeg4"}


@dataclass(frozen=True)
class Probe:
    codec: str  # canonical FFmpeg codec name ("mjpeg", "h264", "vp9", ...) or an image format ("jpeg", "tiff")
    num_frames: int
    fps: float
    width: int
    height: int
    pix_fmt: str | None = None  # decoded pixel format ("yuv420p", "yuv420p10le", ...); None: not known (OpenCV)


def probe_video(path: str | Path, decode: bool = False) -> Probe:
    """Probe a video file (PyAV, or OpenCV where PyAV is not installed).

    The frame count comes from the container when it states one; with `decode=True`, or when it does not, every
    frame is decoded and counted (this also proves the file decodes to the end). A file that is missing,
    unreadable, corrupt, has no video stream or no frames raises VadgpuError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise VadgpuError(f"video {path} does not exist or is not a file")
    if not available("av"):
        return probe_video_opencv(path)
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VadgpuError(f"{path} has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.codec.canonical_name
            width, height = stream.codec_context.width, stream.codec_context.height
            pix_fmt = stream.codec_context.pix_fmt
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            stated = num_frames = stream.frames
            if decode or num_frames <= 0:
                stream.thread_type = "AUTO"
                num_frames, end, complaints = _decode_all(container, stream)
                _check_complete(path, container, stream, num_frames, end, float(rate or 0), complaints)
            if 0 < num_frames < stated:
                raise VadgpuError(f"video {path}: the container states {stated} frames but only {num_frames} decode "
                                  "(the file is truncated or damaged)")
    except VadgpuError:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VadgpuError(f"video {path} cannot be read: {exc}") from exc
    return _checked(path, codec, num_frames, rate, width, height, pix_fmt)


def key_frame_interval(path: str | Path) -> int | None:
    """The most frames from one key frame to the next (or to the end), read from the packets without decoding;
    None where PyAV is not installed. A reader seeking to a frame decodes up to this many frames first."""
    if not available("av"):
        return None
    import av

    longest = run = 0
    try:
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                run = 1 if packet.is_keyframe else run + 1
                longest = max(longest, run)
    except (av.error.FFmpegError, OSError) as exc:
        raise VadgpuError(f"video {path} cannot be read: {exc}") from exc
    return longest


def probe_video_opencv(path: Path) -> Probe:
    """The OpenCV probe: codec from the FourCC, every frame decoded and counted (OpenCV's stated count is an
    estimate for many containers), and the count checked against the one the container states."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VadgpuError(f"video {path} cannot be read: OpenCV cannot open it")
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
        tag = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ").lower()
        codec = FOURCC_CODECS.get(tag, tag or "unknown")
        stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        rate = capture.get(cv2.CAP_PROP_FPS)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        num_frames = 0
        while capture.grab():
            num_frames += 1
    finally:
        capture.release()
    if 0 < num_frames < stated:
        raise VadgpuError(f"video {path}: the container states {stated} frames but only {num_frames} decode "
                          "(the file is truncated or damaged)")
    return _checked(path, codec, num_frames, rate, width, height)


def _checked(path: Path, codec: str, num_frames: int, rate, width: int, height: int,
             pix_fmt: str | None = None) -> Probe:
    if num_frames <= 0:
        raise VadgpuError(f"video {path} holds no decodable frames")
    if not width or not height:
        raise VadgpuError(f"video {path}: the stream states no frame size")
    if not rate:
        raise VadgpuError(f"video {path}: the stream states no frame rate")
    return Probe(codec, int(num_frames), float(rate), int(width), int(height), pix_fmt)


def _decode_all(container, stream) -> tuple[int, float | None, list[str]]:
    """Decode every frame: (count, time in seconds where the last frame ends less the stream's start, the errors
    FFmpeg's demuxer and decoder reported on the way)."""
    import av.logging

    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    count, last, step = 0, None, None
    try:
        with av.logging.Capture(True) as logs:
            for frame in container.decode(stream):
                count += 1
                if frame.pts is not None and frame.time_base:
                    last = frame.pts * frame.time_base
    finally:
        av.logging.set_level(previous)
    rate = stream.average_rate or stream.guessed_rate
    step = 1 / rate if rate else 0
    start = (stream.start_time or 0) * stream.time_base if stream.time_base else 0
    end = None if last is None else float(last - start + step)
    complaints = [" ".join(str(text).split()) for level, _, text in logs if level <= av.logging.ERROR]
    return count, end, complaints


def _check_complete(path: Path, container, stream, count: int, end: float | None, rate: float,
                    complaints: list[str]) -> None:
    """A container without a frame count (WebM, MKV, MPEG-PS) is checked by time instead: the decoded frames must
    reach the duration it states for the video stream (a truncated file keeps its header). Where no duration
    decides it and FFmpeg reported errors, the user is warned with the numbers."""
    import av

    stated = None
    if stream.duration and stream.time_base:
        stated = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:  # the container's duration is this stream's
        stated = container.duration / av.time_base
    if stated and end is not None and rate and stated - end > max(2 / rate, 0.02 * stated):
        raise VadgpuError(f"video {path}: the container states {stated:.2f} s of video but the {count} frames that "
                          f"decode end at {end:.2f} s (about {round((stated - end) * rate)} frames at {rate:g} fps "
                          "missing): the file is truncated or damaged")
    if complaints:
        seen = f"{count} frames decoded" + (f", {end:.2f} s" if end is not None else "")
        logger.warning(f"video {path}: FFmpeg reported {len(complaints)} error(s) while decoding it "
                       f"({complaints[0]}); it may be truncated or damaged ({seen}"
                       + (f" of {stated:.2f} s stated" if stated else "") + ")")


def frame_file_problem(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(why the frame file does not decode completely, or None; its (width, height)). Decoded once with OpenCV;
    a JPEG must also end with its end-of-image marker, since OpenCV fills a truncated one with gray and only
    warns."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})", None
    if data.size == 0:
        return "is empty", None
    if IMAGE_FORMATS.get(path.suffix.lower()) == "jpeg":
        if data[:2].tobytes() != b"\xff\xd8":
            return "is not a JPEG file (no start-of-image marker)", None
        if b"\xff\xd9" not in data[-64:].tobytes():
            return "is a truncated JPEG (no end-of-image marker)", None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        return "cannot be decoded as an image", None
    return None, (int(image.shape[1]), int(image.shape[0]))


def check_frame_files(frame_files: Sequence[Path], width: int, height: int) -> None:
    """Decode every frame of a folder once (in threads: OpenCV releases the GIL); the first damaged file, or one
    of another size than the first frame, is a VadgpuError naming it."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for path, (problem, size) in zip(frame_files, pool.map(frame_file_problem, map(Path, frame_files))):
            if problem is not None:
                raise VadgpuError(f"frame {path} {problem}")
            if size != (width, height):
                raise VadgpuError(f"frame {path} is {size[0]}x{size[1]} but the folder's first frame is "
                                  f"{width}x{height}")


def probe_frames(frame_files: Sequence[Path]) -> Probe:
    """Probe a frame folder from its sorted file list: format from the extension, size from the first frame."""
    if not frame_files:
        raise VadgpuError("frame folder has no frames")
    first = Path(frame_files[0])
    image = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise VadgpuError(f"frame {first} cannot be decoded as an image")
    codec = IMAGE_FORMATS.get(first.suffix.lower())
    if codec is None:
        raise VadgpuError(f"frame {first}: unknown image extension {first.suffix!r}")
    return Probe(codec, len(frame_files), FOLDER_FPS, int(image.shape[1]), int(image.shape[0]))
