"""The decode limit: how fast the machine decodes the dataset's frames when each frame is decoded exactly once.

Frame folders decode with OpenCV (file bytes -> cv2.imdecode, straight to gray when C = 1, as DALI's decoder
does); video files with PyAV (libavcodec), one decoder thread, frames converted to gray/RGB arrays. No resize,
no float conversion: this is the ceiling a loader that decodes each frame once can approach. Measured in one
process and in a process pool over all cores (the pool's workers are started before timing, by the warm-up);
the limit is the faster of the two.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from typing import Iterator, Sequence

import numpy as np

from vadgpu.data.types import PreparedVideo
from vadgpu.errors import VadgpuError

FRAMES_PER_JOB = 64  # frame files per pool task: large enough that task overhead is noise


def decode_jobs(videos: Sequence[PreparedVideo]) -> tuple[list[tuple[str, ...]], bool]:
    """Split the videos into decode jobs: chunks of frame files, or one whole video file per job."""
    folders = {v.video.is_folder for v in videos}
    if len(folders) != 1:
        raise VadgpuError("decode limit: the split must be all frame folders or all video files")
    is_folder = folders.pop()
    if is_folder:
        files = [str(f) for v in videos for f in v.video.frame_files]
        return [tuple(files[i : i + FRAMES_PER_JOB]) for i in range(0, len(files), FRAMES_PER_JOB)], True
    return [(str(v.decode_path),) for v in videos], False


def decode_job(job: tuple[str, ...], is_folder: bool, channels: int) -> int:
    """Decode every frame of one job; return the number of frames decoded."""
    if is_folder:
        return sum(_decode_image(path, channels) for path in job)
    return sum(_decode_video(path, channels) for path in job)


def _decode_image(path: str, channels: int) -> int:
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise VadgpuError(f"{path}: cannot read frame file ({exc.strerror})") from exc
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR)
    if image is None:
        raise VadgpuError(f"{path}: OpenCV cannot decode this frame file")
    return 1


def _decode_video(path: str, channels: int) -> int:
    import av

    frames = 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1  # one core per process: parallelism comes from the pool
            for frame in container.decode(stream):
                frame.to_ndarray(format="gray" if channels == 1 else "rgb24")
                frames += 1
    except (av.FFmpegError, IndexError) as exc:
        raise VadgpuError(f"{path}: PyAV cannot decode this video ({exc})") from exc
    if frames == 0:
        raise VadgpuError(f"{path}: no frames decoded")
    return frames


def serial_stream(jobs: list[tuple[str, ...]], is_folder: bool, channels: int) -> Iterator[int]:
    """Decode the jobs over and over in this process; yields frames per job."""
    for job in itertools.cycle(jobs):
        yield decode_job(job, is_folder, channels)


def pool_stream(jobs: list[tuple[str, ...]], is_folder: bool, channels: int, workers: int) -> Iterator[int]:
    """Decode the jobs over and over in `workers` processes; yields frames per finished job.

    Two jobs per worker stay queued so no worker idles; 'spawn' keeps the workers free of the parent's DALI and
    torch threads. Closing the generator terminates the pool.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        source = itertools.cycle(jobs)
        pending = deque(pool.apply_async(decode_job, (next(source), is_folder, channels)) for _ in range(2 * workers))
        while True:
            frames = pending.popleft().get()
            pending.append(pool.apply_async(decode_job, (next(source), is_folder, channels)))
            yield frames
