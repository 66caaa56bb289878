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
    """The BGR uint8 frames of one `Video`, read in order in chunks, or an evenly spaced sample."""

    def __init__(self, video: Video) -> None:
        self.video = video
        if video.is_folder:
            if not video.frame_files:
                raise VadgpuError(f"{video.path}: frame folder holds no frames")
            first = self._read_image(video.frame_files[0])
            self.num_frames = len(video.frame_files)
        else:
            if not video.path.is_file():
                raise VadgpuError(f"{video.path}: no such video file")
            first = next(self._decode(), None)
            if first is None:
                raise VadgpuError(f"{video.path}: no decodable video frames")
            self.num_frames = sum(1 for _ in self._decode(to_array=False))
        self.height, self.width = first.shape[:2]

    @staticmethod
    def _read_image(path) -> np.ndarray:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)  # gray files come back as 3 equal channels
        if frame is None:
            raise VadgpuError(f"{path}: OpenCV cannot read this image")
        return frame

    def _decode(self, to_array: bool = True) -> Iterator[np.ndarray]:
        if not available("av"):
            yield from self._decode_opencv()
            return
        import av

        try:
            with av.open(str(self.video.path)) as container:
                if not container.streams.video:
                    raise VadgpuError(f"{self.video.path}: no video stream")
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="bgr24") if to_array else frame
        except av.error.FFmpegError as exc:
            raise VadgpuError(f"{self.video.path}: PyAV cannot decode it ({exc})") from exc

    def _decode_opencv(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.video.path))
        try:
            if not capture.isOpened():
                raise VadgpuError(f"{self.video.path}: OpenCV cannot open it")
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield frame
        finally:
            capture.release()

    def _frames(self) -> Iterator[np.ndarray]:
        if not self.video.is_folder:
            yield from self._decode()
            return
        for path in self.video.frame_files:
            frame = self._read_image(path)
            if frame.shape[:2] != (self.height, self.width):
                raise VadgpuError(f"{path}: size {frame.shape[1]}x{frame.shape[0]} differs from the folder's first "
                                  f"frame ({self.width}x{self.height})")
            yield frame

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
            return [self._read_image(self.video.frame_files[i]) for i in sorted(pick)]
        return [f for i, f in enumerate(self._decode()) if i in pick]
