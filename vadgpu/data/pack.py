"""Pack a dataset into a small, portable copy: every video re-encoded as H.264 (or MJPEG), labels as .npy, in the
generic layout any machine with OpenCV reads (`--dataset generic`), without PyAV or DALI.

    ROOT/training/<name>.mp4
    ROOT/testing/<name>.mp4
    ROOT/testing/labels/<name>.npy
    ROOT/pack.json      what was packed: source, codec, quality, resize, every video's source and packed size

Every decoded frame is kept at a constant rate, so the labels stay aligned frame for frame. The frames can be
resized on the way (`scale`: both sides times a factor, rounded to even; `size`: an exact (height, width)), with
OpenCV's INTER_AREA where a side shrinks and INTER_LINEAR where both grow: the same scene as another camera would
see it. The copy is written into a temporary folder beside `out` and moved into place when complete; the source
is only read.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from vadgpu.data.probe import FOLDER_FPS, probe_video
from vadgpu.data.types import Dataset, Video
from vadgpu.errors import VadgpuError
from vadgpu.io import current_umask
from vadgpu.objects.frames import FrameSource
from vadgpu.optional import require

# codec -> (PyAV encoder, container extension, pixel format, encoder options). H.264: a key frame every 12 frames
# and no B-frames, so a reader seeks cheaply and exactly; crf 23 keeps Ped2 (4,560 frames) near 15 MB.
PACK_CODECS = {
    "h264": ("libx264", ".mp4", "yuv420p", {"g": "12", "bf": "0", "preset": "medium"}),
    "mjpeg": ("mjpeg", ".avi", "yuvj420p", {}),
}
DEFAULT_QUALITY = {"h264": 23, "mjpeg": 5}  # crf for H.264, qscale for MJPEG (lower is better and larger)
MANIFEST_NAME = "pack.json"


@dataclass(frozen=True)
class PackResult:
    out: Path
    videos: int
    frames: int
    bytes: int


def check_resize(scale: float | None, size: tuple[int, int] | None) -> None:
    """A VadgpuError naming the option unless `scale` (> 0, finite) or `size` (even, positive (height, width)), or
    neither, is given."""
    if scale is not None and size is not None:
        raise VadgpuError("--scale and --resize both given; give one (a factor, or an exact H W)")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise VadgpuError(f"--scale {scale}: must be a number above 0 (2.0 doubles both sides, 0.5 halves them)")
    if size is not None:
        if len(size) != 2 or any(int(side) != side or side <= 0 or side % 2 for side in size):
            raise VadgpuError(f"--resize {' '.join(str(side) for side in size)}: height and width must be even "
                              "positive integers (4:2:0 video needs even sides)")


def packed_size(height: int, width: int, scale: float | None = None,
                size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) of a packed frame: `size`, or each side times `scale` rounded to the nearest even number (at
    least 2); without either, the source's sides rounded up to even (padded by one edge pixel)."""
    check_resize(scale, size)
    if size is not None:
        return int(size[0]), int(size[1])
    if scale is not None:
        return tuple(max(2, 2 * round(side * scale / 2)) for side in (height, width))
    return height + height % 2, width + width % 2


def pack_dataset(dataset: Dataset, out: str | Path, codec: str = "h264", quality: int | None = None,
                 progress: bool = True, scale: float | None = None,
                 size: tuple[int, int] | None = None) -> PackResult:
    """Write `dataset` (train and test split, test labels) into `out` in the generic layout; `out` must not exist.

    `scale` or `size` ((height, width), even) resizes every frame (see the module docstring); pack.json records
    them with every video's source and packed size."""
    if codec not in PACK_CODECS:
        raise VadgpuError(f"--codec {codec!r}: choose one of {', '.join(PACK_CODECS)}")
    check_resize(scale, size)
    out = Path(out)
    if out.exists():
        raise VadgpuError(f"--out {out} exists; give a new folder (packing never writes into an existing one)")
    if not dataset.train and not dataset.test:
        raise VadgpuError(f"dataset {dataset.name} at {dataset.root} has no videos to pack")
    av = require("av", "vadgpu data pack (encoding videos)")
    quality = DEFAULT_QUALITY[codec] if quality is None else quality
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    frames = 0
    records = []
    try:
        jobs = [("training", v) for v in dataset.train] + [("testing", v) for v in dataset.test]
        for split, video in tqdm(jobs, desc=f"pack {dataset.name}", unit="video", disable=not progress):
            path = tmp / split / f"{video.name}{PACK_CODECS[codec][1]}"
            written, source_size, target = _encode(av, video, path, codec, quality, scale, size)
            records.append({"split": split, "name": video.name, "source": str(video.path),
                            "file": str(path.relative_to(tmp)), "frames": written,
                            "source_size": list(source_size), "size": list(target)})
            if video.labels is not None:
                if len(video.labels) != written:
                    raise VadgpuError(f"video {video.path}: {written} frames decoded but its labels cover "
                                      f"{len(video.labels)}")
                (tmp / "testing" / "labels").mkdir(parents=True, exist_ok=True)
                np.save(tmp / "testing" / "labels" / f"{video.name}.npy", np.asarray(video.labels, dtype=np.uint8))
            frames += written
        manifest = {"generator": "vadgpu.data.pack", "dataset": dataset.name, "root": str(dataset.root),
                    "codec": codec, "quality": quality, "scale": scale, "resize": list(size) if size else None,
                    "videos": records}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o777 & ~current_umask())
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return PackResult(out, len(jobs), frames, size)


def _encode(av, video: Video, path: Path, codec: str, quality: int, scale: float | None,
            size: tuple[int, int] | None) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """Re-encode one source video or frame folder; returns the frames written, the source's and the copy's
    (height, width)."""
    encoder, _, pix_fmt, options = PACK_CODECS[codec]
    source = FrameSource(video)
    height, width = packed_size(source.height, source.width, scale, size)
    resize = scale is not None or size is not None
    fps = FOLDER_FPS if video.is_folder else probe_video(video.path).fps
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    # H.264: constant quality; MJPEG: a fixed quantiser (FFmpeg's lambda units: 118 per step)
    options = dict(options, **({"crf": str(quality)} if codec == "h264" else
                               {"flags": "+qscale", "global_quality": str(118 * quality)}))
    written = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=rate, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        for chunk in source.chunks(64):
            for frame in chunk:
                if resize:
                    frame = _resized(frame, (height, width))
                else:  # yuv420p needs even sides: pad by one pixel (edge copy) rather than crop content
                    frame = np.pad(frame, ((0, source.height % 2), (0, source.width % 2), (0, 0)), mode="edge")
                image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
                for packet in stream.encode(image):
                    container.mux(packet)
                written += 1
        for packet in stream.encode():
            container.mux(packet)
    return written, (source.height, source.width), (height, width)


def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`frame` (H, W, C) at `size` (height, width): INTER_AREA where a side shrinks (it averages the pixels that
    fall together), INTER_LINEAR where the frame only grows."""
    height, width = size
    if frame.shape[:2] == (height, width):
        return frame
    grows = height >= frame.shape[0] and width >= frame.shape[1]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR if grows else cv2.INTER_AREA)
