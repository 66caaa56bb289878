"""Pack a dataset into a small, portable copy: every video re-encoded as H.264 (or MJPEG), labels as .npy, in the
generic layout any machine with OpenCV reads (`--dataset generic`), without PyAV or DALI.

    ROOT/training/<name>.mp4
    ROOT/testing/<name>.mp4
    ROOT/testing/labels/<name>.npy

Every decoded frame is kept at a constant rate, so the labels stay aligned frame for frame. The copy is written
into a temporary folder beside `out` and moved into place when complete; the source is only read.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

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


@dataclass(frozen=True)
class PackResult:
    out: Path
    videos: int
    frames: int
    bytes: int


def pack_dataset(dataset: Dataset, out: str | Path, codec: str = "h264", quality: int | None = None,
                 progress: bool = True) -> PackResult:
    """Write `dataset` (train and test split, test labels) into `out` in the generic layout; `out` must not exist."""
    if codec not in PACK_CODECS:
        raise VadgpuError(f"--codec {codec!r}: choose one of {', '.join(PACK_CODECS)}")
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
    try:
        jobs = [("training", v) for v in dataset.train] + [("testing", v) for v in dataset.test]
        for split, video in tqdm(jobs, desc=f"pack {dataset.name}", unit="video", disable=not progress):
            path = tmp / split / f"{video.name}{PACK_CODECS[codec][1]}"
            written = _encode(av, video, path, codec, quality)
            if video.labels is not None:
                if len(video.labels) != written:
                    raise VadgpuError(f"video {video.path}: {written} frames decoded but its labels cover "
                                      f"{len(video.labels)}")
                (tmp / "testing" / "labels").mkdir(parents=True, exist_ok=True)
                np.save(tmp / "testing" / "labels" / f"{video.name}.npy", np.asarray(video.labels, dtype=np.uint8))
            frames += written
        tmp.chmod(0o777 & ~current_umask())
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return PackResult(out, len(jobs), frames, size)


def _encode(av, video: Video, path: Path, codec: str, quality: int) -> int:
    """Re-encode one source video or frame folder; returns the frames written."""
    encoder, _, pix_fmt, options = PACK_CODECS[codec]
    source = FrameSource(video)
    fps = FOLDER_FPS if video.is_folder else probe_video(video.path).fps
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    # H.264: constant quality; MJPEG: a fixed quantiser (FFmpeg's lambda units: 118 per step)
    options = dict(options, **({"crf": str(quality)} if codec == "h264" else
                               {"flags": "+qscale", "global_quality": str(118 * quality)}))
    written = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=rate, options=options)
        # yuv420p needs even sides: pad by one pixel (edge copy) rather than crop content
        stream.width, stream.height = source.width + source.width % 2, source.height + source.height % 2
        stream.pix_fmt = pix_fmt
        for chunk in source.chunks(64):
            for frame in chunk:
                frame = np.pad(frame, ((0, source.height % 2), (0, source.width % 2), (0, 0)), mode="edge")
                image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
                for packet in stream.encode(image):
                    container.mux(packet)
                written += 1
        for packet in stream.encode():
            container.mux(packet)
    return written
