"""What a source is: codec, frame count, frame rate and size of a video file (PyAV) or a frame folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import cv2

from vadgpu.errors import VadgpuError

# Image formats of frame folders, by extension; the name is what PreparedVideo.codec reports.
IMAGE_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp"}
FOLDER_FPS = 25.0  # frame folders carry no rate; only logs and the manifest use it


@dataclass(frozen=True)
class Probe:
    codec: str  # canonical FFmpeg codec name ("mjpeg", "h264", "vp9", ...) or an image format ("jpeg", "tiff")
    num_frames: int
    fps: float
    width: int
    height: int


def probe_video(path: str | Path, decode: bool = False) -> Probe:
    """Probe a video file with PyAV.

    The frame count comes from the container when it states one; with `decode=True`, or when it does not, every
    frame is decoded and counted (this also proves the file decodes to the end). A file that is missing,
    unreadable, corrupt, has no video stream or no frames raises VadgpuError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise VadgpuError(f"video {path} does not exist or is not a file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VadgpuError(f"{path} has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.codec.canonical_name
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            stated = num_frames = stream.frames
            if decode or num_frames <= 0:
                stream.thread_type = "AUTO"
                num_frames = sum(1 for _ in container.decode(stream))
            if 0 < num_frames < stated:
                raise VadgpuError(f"video {path}: the container states {stated} frames but only {num_frames} decode "
                                  "(the file is truncated or damaged)")
    except VadgpuError:
        raise
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VadgpuError(f"video {path} cannot be read: {exc}") from exc
    if num_frames <= 0:
        raise VadgpuError(f"video {path} holds no decodable frames")
    if not width or not height:
        raise VadgpuError(f"video {path}: the stream states no frame size")
    if not rate:
        raise VadgpuError(f"video {path}: the stream states no frame rate")
    return Probe(codec, int(num_frames), float(rate), int(width), int(height))


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
