"""Object tubes: T frames cropped around one object, the window held fixed at the centre frame's position.

A tube is cut from clips decoded at the video's own resolution. Its window is a square of `window` native pixels
centred on the object's box in the centre frame and kept in place over all T frames, so the object's own motion
(and its size) stays visible inside the tube: a window that followed the box frame by frame would remove exactly
the speed that tells a cyclist from a pedestrian, and one proportional to the box would erase the object's size.
The window is moved inside the frame where it would cross an edge, and is at most the frame's shorter side.
Crops are bilinear with `torchvision.ops.roi_align` (2 x 2 samples averaged per output pixel), one call for every
tube and frame of a batch, on the clips' device: on a GPU the tubes never touch the host.

    windows = tube_windows(centre_boxes, (H, W), window)       # (M, 4) pixel xyxy
    tubes = crop_tubes(clips, owner, windows, size)              # (N, C, L, H, W) -> (M, C, L, S, S)
    boxes = boxes_in_windows(boxes, windows, (H, W))             # frame-normalised -> tube-normalised xyxy

Training draws tubes with `TubeSampler` (one tracked object present in all T frames per tube, `per_clip` tubes
per decoded clip, no host synchronisation); evaluation cuts one tube per box of every test frame
(`FrameBoxes.tubes_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import roi_align

from vadgpu.errors import VadgpuError

SAMPLING_RATIO = 2  # bilinear samples per output pixel and axis that roi_align averages


def tube_windows(centre_boxes: torch.Tensor, frame_hw: tuple[int, int], window: int) -> torch.Tensor:
    """Square windows of `window` pixels centred on each box, shifted inside the frame: (M, 4) normalised xyxy
    -> (M, 4) pixel xyxy (float32). A window larger than the frame's shorter side is shrunk to it."""
    height, width = frame_hw
    side = float(min(window, height, width))
    scale = centre_boxes.new_tensor([width, height, width, height])
    px = centre_boxes.float() * scale  # (M, 4)
    cx, cy = (px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2  # (M,)
    x1 = (cx - side / 2).clamp(0.0, width - side)
    y1 = (cy - side / 2).clamp(0.0, height - side)
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)  # (M, 4)


def crop_tubes(frames: torch.Tensor, owner: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Cut tube m from clip owner[m] of `frames` (N, C, L, H, W) at windows[m] (pixel xyxy), every one of its L
    frames, resized to size x size: -> (M, C, L, size, size), same dtype and device as `frames`."""
    if frames.dim() != 5:
        raise VadgpuError(f"crop_tubes: frames must be (N, C, L, H, W), got {tuple(frames.shape)}")
    n, c, length, height, width = frames.shape
    m = owner.shape[0]
    flat = frames.transpose(1, 2).reshape(n * length, c, height, width)  # (N*L, C, H, W)
    steps = torch.arange(length, device=frames.device)  # (L,)
    index = (owner[:, None] * length + steps).reshape(-1, 1).to(frames.dtype)  # (M*L, 1) row in `flat`
    rois = torch.cat([index, windows.to(frames.dtype).repeat_interleave(length, dim=0)], dim=1)  # (M*L, 5)
    out = roi_align(flat, rois, (size, size), spatial_scale=1.0, sampling_ratio=SAMPLING_RATIO, aligned=True)
    return out.view(m, length, c, size, size).transpose(1, 2)  # (M, C, L, S, S)


def boxes_in_windows(boxes: torch.Tensor, windows: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
    """Frame-normalised xyxy boxes (M, T, 4) -> the same boxes normalised to each tube's window, clipped to [0, 1]."""
    height, width = frame_hw
    scale = boxes.new_tensor([width, height, width, height])
    origin = windows[:, None, [0, 1, 0, 1]]  # (M, 1, 4)
    side = (windows[:, 2] - windows[:, 0])[:, None, None]  # (M, 1, 1)
    return ((boxes * scale - origin) / side).clamp(0.0, 1.0)


@dataclass
class TubeBatch:
    """Tubes as the pseudo-anomaly policy and the models take clips (the fields of a loader's ClipBatch)."""

    clips: torch.Tensor  # (M, C, T, S, S)
    video: torch.Tensor  # (M,) int64
    frame: torch.Tensor  # (M,) int64: centre frame
    boxes: torch.Tensor  # (M, T, 4) the object's boxes in tube coordinates (zeros where not valid)
    valid: torch.Tensor  # (M,) bool: the tube holds a tracked object (else a window at a random place)
    window: torch.Tensor | None = None  # (M, C, L, S, S): the skip window cut at the same place, when present

    def __len__(self) -> int:
        return self.clips.shape[0]


class TubeSampler:
    """Training tubes from a batch of native-resolution clips: `per_clip` tracked objects drawn per clip.

    Each tube takes one track present in all T frames of its clip (`ObjectBoxes.sample`, drawn independently per
    tube, so a clip with several objects gives several of them over an epoch). A clip with no such track gives a
    tube at a random place in its frame: still normal training data, and it keeps the batch size fixed without
    reading a count back to the host.
    """

    def __init__(self, boxes, window: int, size: int, per_clip: int = 4):
        if per_clip < 1:
            raise VadgpuError(f"tubes per clip {per_clip}: must be >= 1")
        if window < 2 or size < 2:
            raise VadgpuError(f"tube window {window} px / size {size} px: both must be >= 2")
        self.boxes = boxes  # ObjectBoxes, built for the same videos and T as the loader
        self.window = window
        self.size = size
        self.per_clip = per_clip

    def __call__(self, batch, generator: torch.Generator) -> TubeBatch:
        clips = batch.clips  # (N, C, T, H, W) at the video's resolution
        n, _, _, height, width = clips.shape
        owner = torch.arange(n, device=clips.device).repeat_interleave(self.per_clip)  # (M,)
        video, frame = batch.video[owner], batch.frame[owner]
        boxes, valid = self.boxes.sample(video, frame, generator)  # (M, T, 4), (M,)
        centre = boxes[:, boxes.shape[1] // 2]  # (M, 4)
        # No track: a random box centre anywhere in the frame (a tube of background).
        anywhere = torch.rand(owner.shape[0], 2, generator=generator, device=clips.device).repeat(1, 2)
        centre = torch.where(valid[:, None], centre, anywhere)
        windows = tube_windows(centre, (height, width), self.window)  # (M, 4)
        tubes = crop_tubes(clips, owner, windows, self.size)
        window = None if batch.window is None else crop_tubes(batch.window, owner, windows, self.size)
        inside = boxes_in_windows(boxes, windows, (height, width)) * valid[:, None, None]
        return TubeBatch(tubes, video, frame, inside, valid, window)


def native_frame_size(videos) -> tuple[int, int]:
    """(H, W) that every one of `videos` (PreparedVideo) shares: tubes are cut from frames at this size."""
    sizes = {(v.height, v.width) for v in videos}
    if len(sizes) != 1:
        first = videos[0]
        other = next(v for v in videos if (v.height, v.width) != (first.height, first.width))
        raise VadgpuError(f"object clips need videos of one frame size: {first.decode_path} is "
                          f"{first.width}x{first.height}, {other.decode_path} is {other.width}x{other.height}")
    return sizes.pop()


class FrameBoxes:
    """Every box of every frame of some videos (a box cache's split), for scoring: host arrays, sorted by frame.

    `tubes_for(clips, video, frame)` cuts one tube per box of each clip's centre frame and says which clip each
    tube came from; frames without a box give none.
    """

    def __init__(self, video: np.ndarray, frame: np.ndarray, boxes: np.ndarray, num_frames: list[int]):
        order = np.lexsort((frame, video))
        self.video, self.frame, self.boxes = video[order], frame[order], boxes[order].astype(np.float32)
        self.num_frames = list(num_frames)
        offsets = np.concatenate([[0], np.cumsum(self.num_frames)]).astype(np.int64)
        rows = offsets[self.video] + self.frame  # (B,) global frame row of each box
        self._first = np.searchsorted(rows, np.arange(offsets[-1] + 1))  # (rows + 1,) first box of each row
        self._offsets = offsets

    @classmethod
    def load(cls, path, videos, split: str = "test", dataset: str | None = None) -> "FrameBoxes":
        """Every box (tracked or not) of `videos` (matched by name in the cache's `split`) from a box cache made
        for `dataset` (checked when given)."""
        from vadgpu.objects.boxes import match_cache_videos, read_box_cache

        arrays = read_box_cache(path)
        index = match_cache_videos(arrays, path, videos, split, dataset)  # (V,) cache video id of each video
        lookup = np.full(len(arrays["video_names"]), -1, np.int64)
        lookup[index] = np.arange(len(videos))
        mine = lookup[arrays["video"]]  # (B,) position in `videos`, -1 for other videos
        keep = mine >= 0
        boxes = np.stack([arrays[k][keep] for k in ("x1", "y1", "x2", "y2")], axis=1)
        return cls(mine[keep], arrays["frame"][keep].astype(np.int64), boxes, [v.num_frames for v in videos])

    def count(self, video: int) -> np.ndarray:
        """Boxes per frame of one video: (frames,) int64."""
        start, stop = self._offsets[video], self._offsets[video + 1]
        return np.diff(self._first[start:stop + 1])

    def select_rows(self, video: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For clips centred at (video[i], frame[i]): (clip index of each box, its row in this table (M,))."""
        rows = self._offsets[video] + frame
        start, stop = self._first[rows], self._first[rows + 1]
        owner = np.repeat(np.arange(len(rows)), stop - start)
        picks = np.concatenate([np.arange(a, b) for a, b in zip(start, stop)]) if len(rows) else np.zeros(0, int)
        return owner, picks.astype(np.int64)

    def select(self, video: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For clips centred at (video[i], frame[i]): (clip index of each box, boxes (M, 4) normalised xyxy)."""
        owner, rows = self.select_rows(video, frame)
        return owner, self.boxes[rows]
