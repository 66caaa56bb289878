"""The torch loader: a plain torch DataLoader that decodes every clip's frames with OpenCV, as users' loaders do.

It walks the same clip index as the DALI loader (clip_index.py) and yields the same ClipBatch in the same order
for the same (seed, epoch, shard), so it serves three times: as `--loader torch` where DALI is not installed
(pinned memory and non-blocking copies on CUDA), as the benchmark's baseline (each frame is decoded once per clip
that contains it, T times with overlapping clips) and as the correctness reference for the DALI pipelines (same
video, same frames, tensors equal within resize/colour-conversion rounding). It reads what `vadgpu data prepare`
leaves for the "opencv" backend: MJPEG, H.264, HEVC, VP8, VP9, MPEG-4 and frame folders.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vadgpu.data.types import PreparedVideo
from vadgpu.device import is_cuda, resolve_device
from vadgpu.errors import VadgpuError
from vadgpu.pipelines.clip_index import ClipSpec, RunTable, span_frames
from vadgpu.pipelines.loader import DEFAULT_RUN_LENGTH, ClipBatch, ClipLoader, assemble_batch, to_device
from vadgpu.pipelines.resize import resize_frame


class ClipDataset(Dataset):
    """Item `clip id` -> (span frames (S, C, H, W) uint8, clip id), decoded from scratch each time; they become
    float per batch (loader.assemble_batch), after the workers: a quarter of the bytes between processes."""

    def __init__(self, videos: Sequence[PreparedVideo], spec: ClipSpec, table: RunTable, num_frames: np.ndarray):
        self.videos, self.spec, self.table, self.num_frames = list(videos), spec, table, num_frames
        self._captures: dict[int, cv2.VideoCapture] = {}  # per worker process: opened once, seeked per clip

    def __len__(self) -> int:
        return len(self.table.clip_centre)

    def __getitem__(self, clip: int) -> tuple[torch.Tensor, int]:
        frames = span_frames(self.table, np.array([clip]), self.num_frames, self.spec)[0]  # (S,) frame indices
        video = int(self.table.run_video[self.table.clip_run[clip]])
        decoded = self._read_video(video, frames) if not self.videos[video].video.is_folder else {
            i: self._read_image(video, i) for i in np.unique(frames)}
        span = np.stack([self._convert(decoded[i]) for i in frames])  # (S, H, W, C) uint8
        return torch.from_numpy(span).permute(0, 3, 1, 2), clip

    def _read_image(self, video: int, index: int) -> np.ndarray:
        path = self.videos[video].video.frame_files[index]
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if self.spec.channels == 1 else cv2.IMREAD_COLOR)
        if image is None:
            raise VadgpuError(f"{path}: OpenCV cannot read this frame file")
        return image

    def _read_video(self, video: int, frames: np.ndarray) -> dict[int, np.ndarray]:
        path = self.videos[video].decode_path
        cap = self._captures.get(video)
        if cap is None:
            cap = self._captures[video] = cv2.VideoCapture(str(path))
            if not cap.isOpened():
                raise VadgpuError(f"{path}: OpenCV cannot open this video")
        lo, hi = int(frames.min()), int(frames.max())
        cap.set(cv2.CAP_PROP_POS_FRAMES, lo)
        out = {}
        for index in range(lo, hi + 1):
            ok, image = cap.read()
            if not ok:
                raise VadgpuError(f"{path}: OpenCV could not decode frame {index}")
            out[index] = image if self.spec.channels == 3 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return out

    def _convert(self, image: np.ndarray) -> np.ndarray:
        return convert_frame(image, self.spec.channels, self.spec.size)


def convert_frame(image: np.ndarray, channels: int, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame (BGR, or already gray) as the model sees it: colour first, then resize (same order as the
    DALI graph); returns (H, W, C) uint8. Live scoring (vadgpu/live) converts its frames with this too."""
    if image.ndim == 3 and channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = resize_frame(image, size)
    return image[:, :, None] if image.ndim == 2 else image


def _collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, np.ndarray]:
    spans = torch.stack([span for span, _ in items]).transpose(1, 2).contiguous()  # (N, C, S, H, W)
    return spans, np.array([clip for _, clip in items], dtype=np.int64)


def _quiet_opencv(_worker: int) -> None:
    cv2.setNumThreads(1)  # parallelism comes from the workers; OpenCV's own threads would oversubscribe


@contextmanager
def _opencv_pool_closed(closed: bool):
    """Fork workers while OpenCV's thread pool is shut down: a worker forked while the parent's pool exists (after
    background subtraction, say) inherits its locks without its threads and hangs in its first OpenCV call."""
    threads = cv2.getNumThreads()
    if closed:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if closed:
            cv2.setNumThreads(threads)


class BaselineLoader(ClipLoader):
    """Same index, plan, sharding and batches as ClipLoader; frames decoded per clip by DataLoader workers."""

    def __init__(self, *args, num_workers: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_workers = num_workers
        self.dataset = ClipDataset(self.videos, self.spec, self.table, self.num_frames)

    def decode_backend(self) -> str:
        return "opencv"

    def __iter__(self) -> Iterator[ClipBatch]:
        plan = self._plan
        self.frames_decoded = self.clips_emitted = 0
        order = plan.clip_order.tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            collate_fn=_collate, pin_memory=is_cuda(self.device),
                            worker_init_fn=_quiet_opencv if self.num_workers else None)
        with _opencv_pool_closed(self.num_workers > 0):
            running = iter(loader)  # forks the workers
        for span, clips in running:
            spans = span_frames(self.table, clips, self.num_frames, self.spec)
            self.frames_decoded += self._decoded_per_clip(spans)
            self.clips_emitted += len(clips)
            yield assemble_batch(to_device(span, self.device), clips, self.table, self.spec, self.device)

    def _decoded_per_clip(self, spans: np.ndarray) -> int:
        if self.is_folder:  # one imread per distinct frame of the clip
            return int(sum(len(np.unique(s)) for s in spans))
        return int((spans.max(axis=1) - spans.min(axis=1) + 1).sum())  # seek + read through the span


def make_baseline_loader(
    videos: Sequence[PreparedVideo],
    spec: ClipSpec,
    batch_size: int = 32,
    device: str | torch.device | None = "auto",
    train: bool = True,
    seed: int = 0,
    shard_id: int = 0,
    num_shards: int = 1,
    *,
    num_workers: int = 0,
    run_length: int = DEFAULT_RUN_LENGTH,
    runs_per_group: int | None = None,
) -> BaselineLoader:
    """torch DataLoader over the DALI loader's clip index; OpenCV decodes T frames per clip in `num_workers`
    processes. Same arguments, batches and order as `make_loader` (run_length/runs_per_group only shape the
    order, so pass the same values to compare the two)."""
    if num_workers < 0:
        raise VadgpuError(f"--num-workers {num_workers} must be >= 0")
    device = resolve_device(device)
    return BaselineLoader(videos, spec, batch_size=batch_size, device=device, train=train, seed=seed,
                          shard_id=shard_id, num_shards=num_shards, run_length=run_length,
                          runs_per_group=runs_per_group, num_threads=None, num_workers=num_workers)
