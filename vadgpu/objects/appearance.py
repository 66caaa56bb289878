"""What an object looks like: a pretrained detector's features pooled inside each box.

The tube models learn how normal objects *move*; in a fixed camera the anomalies that move like everyone else (a
cyclist riding at walking pace inside a crowd, a cart pushed slowly) differ in what they *are*. A COCO detector
has learnt that from millions of images. `DarknetFeatures` runs a Darknet YOLO through OpenCV's DNN module up to
one intermediate layer (for yolov3-tiny `leaky_9`, the 256-channel map at stride 16, before the detection heads:
the cheapest part of the network) and pools that map inside each box into a `POOL` x `POOL` grid of cells with
`torchvision.ops.roi_align`, so a box gives a vector of 256 * POOL * POOL values (a bicycle's wheels sit in the
lower cells, a person's legs in the same place look different), L2-normalised. Frames are resized so that their
shorter side is `SHORT_SIDE` pixels (each side a multiple of 32), which puts a small far pedestrian over several
cells of the map. How far a vector lies from the training objects' is `evaluation/tube_appearance.py`.

    extractor = DarknetFeatures("yolov3-tiny.weights")          # cfg beside it: yolov3-tiny.cfg
    vectors = extractor(frames, boxes)                           # BGR frames, [(K, 4) normalised xyxy] -> (sum K, D)
    table = box_features(extractor, videos, frame_boxes)         # every box of a FrameBoxes, in its row order

Features run on the CPU (OpenCV DNN), once per box cache and split: `cached_box_features` keeps them in the
dataset's cache folder beside the box cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torchvision.ops import roi_align

from vadgpu.errors import VadgpuError
from vadgpu.objects.detectors import load_darknet

FEATURE_LAYER = "leaky_9"  # yolov3-tiny: output of the 256-channel convolution at stride 16
POOL = 2  # roi_align cells per side of each box
SHORT_SIDE = 320  # network input: the frame's shorter side, in pixels
MULTIPLE = 32  # YOLO inputs are multiples of the network's largest stride
FORMAT = 1  # of the feature cache files


def network_input_size(frame_hw: tuple[int, int], short_side: int = SHORT_SIDE) -> tuple[int, int]:
    """(width, height) of the network input for frames of (H, W): the shorter side scaled to `short_side`, each
    side rounded to a multiple of 32 (at least 32)."""
    height, width = frame_hw
    scale = short_side / min(height, width)
    return tuple(max(MULTIPLE, int(round(side * scale / MULTIPLE)) * MULTIPLE) for side in (width, height))


class DarknetFeatures:
    """Box features from one intermediate layer of a Darknet YOLO (module docstring)."""

    def __init__(self, weights: str | os.PathLike, cfg: str | os.PathLike | None = None,
                 layer: str = FEATURE_LAYER, short_side: int = SHORT_SIDE, pool: int = POOL,
                 batch_size: int = 8) -> None:
        self.weights = Path(weights)
        self.cfg = Path(cfg) if cfg is not None else self.weights.with_suffix(".cfg")
        for path, what in ((self.weights, "weights"), (self.cfg, "network description (.cfg)")):
            if not path.is_file():
                raise VadgpuError(f"appearance features: {what} {path}: no such file")
        self.net = load_darknet(self.cfg, self.weights, f"appearance features: {self.cfg} / {self.weights}")
        names = tuple(self.net.getLayerNames())
        if layer not in names:
            raise VadgpuError(f"appearance features: {self.cfg} has no layer {layer!r} (it has {', '.join(names)})")
        if short_side < MULTIPLE or pool < 1 or batch_size < 1:
            raise VadgpuError(f"appearance features: short side {short_side} (>= {MULTIPLE}), pool {pool} and "
                              f"batch size {batch_size} (>= 1) out of range")
        self.layer, self.short_side, self.pool, self.batch_size = layer, short_side, pool, batch_size

    def describe(self) -> str:
        """The extractor's identity, for cache keys and metrics.json."""
        return f"darknet:{self.weights.name}:{self.layer}@{self.short_side}:pool{self.pool}"

    def _maps(self, frames: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
        resized = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames]
        blob = cv2.dnn.blobFromImages(resized, 1 / 255.0, swapRB=True, crop=False)
        self.net.setInput(blob)
        return self.net.forward(self.layer)  # (B, C, h, w)

    def __call__(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> np.ndarray:
        """Unit feature vectors (sum of K, D) float32 of each frame's boxes ((K, 4) xyxy normalised to the frame),
        frame by frame in order. Frames: BGR uint8 (H, W, 3), all of one size."""
        if len(frames) != len(boxes):
            raise VadgpuError(f"appearance features: {len(frames)} frames but {len(boxes)} box lists")
        if not frames:
            return np.zeros((0, 0), np.float32)
        height, width = frames[0].shape[:2]
        size = network_input_size((height, width), self.short_side)
        out = []
        for start in range(0, len(frames), self.batch_size):
            part = slice(start, start + self.batch_size)
            counts = [len(b) for b in boxes[part]]
            if not sum(counts):
                continue
            maps = torch.from_numpy(self._maps(frames[part], size))
            stride = size[0] / maps.shape[-1]
            owner = np.repeat(np.arange(len(counts)), counts).astype(np.float32)
            pixels = np.concatenate(boxes[part]).astype(np.float32) * np.array([size[0], size[1]] * 2, np.float32)
            rois = torch.from_numpy(np.concatenate([owner[:, None], pixels], axis=1))
            pooled = roi_align(maps, rois, (self.pool, self.pool), spatial_scale=1 / stride, sampling_ratio=2,
                               aligned=True)  # (K, C, pool, pool)
            out.append(torch.nn.functional.normalize(pooled.flatten(1), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def box_features(extractor: DarknetFeatures, videos, frame_boxes, progress: bool = True,
                 desc: str = "appearance", chunk: int = 16) -> np.ndarray:
    """Features of every box of `frame_boxes` (a FrameBoxes of `videos`, PreparedVideo), in its row order:
    (B, D) float16. Each video's source frames are read once on the host (objects/frames.py). Without `progress`
    the `vadgpu` logger gets a line at the start and one per video, so a long pass is never silent."""
    import time

    from tqdm.auto import tqdm

    from vadgpu.log import logger
    from vadgpu.objects.frames import FrameSource

    parts = []
    total = sum(v.num_frames for v in videos)
    started, done = time.perf_counter(), 0
    if not progress:
        logger.info(f"{desc}: features of {len(frame_boxes.boxes)} boxes in {total} frames of {len(videos)} "
                    f"video(s) ({extractor.describe()}, CPU)")
    with tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, disable=None if progress else True) as bar:
        for index, video in enumerate(videos):
            source = FrameSource(video.video)
            first = 0
            for frames in source.chunks(chunk):
                ids = np.arange(first, first + len(frames))
                if ids[-1] >= video.num_frames:
                    raise VadgpuError(f"{source.video.path}: more frames than the {video.num_frames} of the "
                                      "prepared video")
                owner, boxes = frame_boxes.select(np.full(len(ids), index), ids)
                per_frame = [boxes[owner == j] for j in range(len(frames))]
                vectors = extractor(frames, per_frame)
                if len(vectors):
                    parts.append(vectors.astype(np.float16))
                first += len(frames)
                bar.update(len(frames))
            if first != video.num_frames:
                raise VadgpuError(f"{source.video.path}: read {first} frames, the prepared video has "
                                  f"{video.num_frames}")
            done += first
            if not progress:
                logger.info(f"{desc}: video {video.name} done ({index + 1}/{len(videos)}, {done}/{total} frames, "
                            f"{time.perf_counter() - started:.0f} s)")
    features = np.concatenate(parts) if parts else np.zeros((0, 0), np.float16)
    if len(features) != len(frame_boxes.boxes):
        raise VadgpuError(f"appearance features: {len(features)} vectors for {len(frame_boxes.boxes)} boxes")
    return features


def _cache_key(boxes_path: Path, extractor: DarknetFeatures, split: str, videos) -> str:
    stat = boxes_path.stat()
    parts = [str(boxes_path.resolve()), str(stat.st_size), str(stat.st_mtime_ns), extractor.describe(), split,
             str(FORMAT), *(f"{v.name}:{v.num_frames}" for v in videos)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def cached_box_features(extractor: DarknetFeatures, boxes_path, videos, frame_boxes, split: str,
                        cache_dir: Path, progress: bool = True) -> tuple[np.ndarray, Path, bool]:
    """`box_features`, kept in `cache_dir` (appearance-<split>-<key>.npz, key: the box cache file, the extractor
    and the videos) and reused while they match. Returns (features, the file, whether it was read)."""
    from vadgpu.io import atomic_write

    boxes_path = Path(boxes_path)
    path = Path(cache_dir) / f"appearance-{split}-{_cache_key(boxes_path, extractor, split, videos)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                features = npz["features"]
            if len(features) == len(frame_boxes.boxes):
                return features, path, True
        except (OSError, ValueError, KeyError):
            pass  # unreadable or stale: computed again below
    features = box_features(extractor, videos, frame_boxes, progress, desc=f"appearance {split}")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: np.savez(fh, features=features, extractor=np.array(extractor.describe())),
                 mode="wb")
    return features, path, False
