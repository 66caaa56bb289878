"""The records that pass between the catalog, prepare and the loaders.

    Video          one source video as the dataset holds it (a video file or a folder of frames) + its labels
    Dataset        a dataset's train and test videos
    PreparedVideo  a Video made decodable for the active DALI backend: the path to read, frame count, fps, size
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Video:
    name: str  # unique within its split, e.g. "01" or "01_0014"
    path: Path  # the source: a video file or a frame folder (never modified)
    frame_files: tuple[Path, ...] | None = None  # sorted frame files of a folder; None for a video file
    labels: np.ndarray | None = field(default=None, compare=False, repr=False)  # (frames,) uint8 0/1, test only
    label_file: str | None = field(default=None, compare=False, repr=False)  # the file `labels` were read from

    @property
    def is_folder(self) -> bool:
        return self.frame_files is not None


@dataclass(frozen=True)
class Dataset:
    name: str  # catalog name: ped2, avenue, shanghaitech, generic, synthetic
    root: Path
    train: tuple[Video, ...]
    test: tuple[Video, ...]
    label_source: str | None = None  # which file(s) the test labels came from, for metrics.json


@dataclass(frozen=True)
class PreparedVideo:
    video: Video
    decode_path: Path  # what the loader reads: the source, a transcoded cache file, or the frame folder
    num_frames: int  # decoded frame count (labels were checked against it)
    fps: float
    width: int
    height: int
    codec: str  # e.g. "mjpeg", "h264", "vp9", or the image format of a frame folder ("jpeg", "png", "tiff")

    @property
    def name(self) -> str:
        return self.video.name

    @property
    def labels(self) -> np.ndarray | None:
        return self.video.labels
