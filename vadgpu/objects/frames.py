"""Read a source video's frames on the host for offline detection: OpenCV for frame folders, PyAV for video files
(OpenCV where PyAV is not installed).

Detection runs once per dataset, so this path favours simplicity over speed; the training path decodes with DALI.
"""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np

from vadgpu.data.types import Video
from vadgpu.errors import VadgpuError
from vadgpu.optional import available


class FrameSource:
    """The BGR uint8 frames of one `Video`, read in order in chunks, or an evenly spaced sample. `num_frames`: the
    video file's frame count where the caller knows it already (a PreparedVideo's), saving the decode that counts
    them."""

    def __init__(self, video: Video, num_frames: int | None = None) -> None:
        self.video = video
        if video.is_folder:
            if not video.frame_files:
                raise VadgpuError(f"{video.path}: frame folder holds no frames")
            first = _read_image(video.frame_files[0])
            self.num_frames = len(video.frame_files)
        else:
            if not video.path.is_file():
                raise VadgpuError(f"{video.path}: no such video file")
            first = next(_decode(video), None)
            if first is None:
                raise VadgpuError(f"{video.path}: no decodable video frames")
            self.num_frames = num_frames or sum(1 for _ in _decode(video, to_array=False))
        self.height, self.width = first.shape[:2]

    def _frames(self) -> Iterator[np.ndarray]:
        return iter_frames(self.video)

    def chunks(self, size: int) -> Iterator[list[np.ndarray]]:
        """All frames in order, `size` at a time."""
        chunk: list[np.ndarray] = []
        for frame in self._frames():
            chunk.append(frame)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def sample(self, count: int) -> list[np.ndarray]:
        """Up to `count` frames evenly spaced over the video (first and last included)."""
        pick = set(np.linspace(0, self.num_frames - 1, min(count, self.num_frames)).round().astype(int).tolist())
        if self.video.is_folder:
            return [_read_image(self.video.frame_files[i]) for i in sorted(pick)]
        return [f for i, f in enumerate(_decode(self.video)) if i in pick]


def iter_frames(video: Video) -> Iterator[np.ndarray]:
    """Every BGR uint8 frame of `video` in order, decoded as it is read (nothing is counted or held first); a
    folder frame whose size differs from the folder's first frame is an error naming the file."""
    if not video.is_folder:
        yield from _decode(video)
        return
    size = None
    for path in video.frame_files:
        frame = _read_image(path)
        size = size or frame.shape[:2]
        if frame.shape[:2] != size:
            raise VadgpuError(f"{path}: size {frame.shape[1]}x{frame.shape[0]} differs from the folder's first "
                              f"frame ({size[1]}x{size[0]})")
        yield frame


def _read_image(path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)  # gray files come back as 3 equal channels
    if frame is None:
        raise VadgpuError(f"{path}: OpenCV cannot read this image")
    return frame


def _decode(video: Video, to_array: bool = True) -> Iterator[np.ndarray]:
    if not available("av"):
        yield from _decode_opencv(video)
        return
    import av

    try:
        with av.open(str(video.path)) as container:
            if not container.streams.video:
                raise VadgpuError(f"{video.path}: no video stream")
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="bgr24") if to_array else frame
    except av.error.FFmpegError as exc:
        raise VadgpuError(f"{video.path}: PyAV cannot decode it ({exc})") from exc


def _decode_opencv(video: Video) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(video.path))
    try:
        if not capture.isOpened():
            raise VadgpuError(f"{video.path}: OpenCV cannot open it")
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()
