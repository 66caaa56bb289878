"""Object tubes: T frames cropped around one object, the window held fixed at the centre frame's position.

A tube is cut from clips decoded at the video's own resolution. Its window is a square of `window` native pixels
centred on the object's box in the centre frame and kept in place over all T frames, so the object's own motion
(and its size) stays visible inside the tube: a window that followed the box frame by frame would remove exactly
the speed that tells a cyclist from a pedestrian, and one proportional to the box would erase the object's size.
The window is moved inside the frame where it would cross an edge, and is at most the frame's shorter side.

Crops are bilinear with the samples of `torchvision.ops.roi_align` (aligned, 2 x 2 samples averaged per output
pixel), cut straight from the decoded uint8 frames for every tube and frame of a batch at once, on the frames'
device: the rows of each window (and the one beyond each edge that its samples reach) are gathered, the two
pixels of each sample along x are taken from them and made float, interpolated along x, then along y. The whole
frames never become float. The values are roi_align's on the float frames to float32 rounding: the same products,
grouped by axis instead of by corner (|difference| under 2e-7 for values in [0, 1], tests/test_tubes.py).

    windows = tube_windows(centre_boxes, (H, W), window)       # (M, 4) pixel xyxy
    tubes = crop_tubes(clips, owner, windows, size)              # (N, C, L, H, W) uint8 or float -> (M, C, L, S, S)
    boxes = boxes_in_windows(boxes, windows, (H, W))             # frame-normalised -> tube-normalised xyxy

Training draws tubes with `TubeSampler` (one tracked object present in all T frames per tube, `per_clip` tubes
per decoded clip, no host synchronisation), from the frames a loader's batch hands over (`ClipBatch.frame_pieces`);
evaluation cuts one tube per box of every test frame (`FrameBoxes.tubes_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vadgpu.errors import VadgpuError
from vadgpu.pipelines.loader import FramePiece, unit_float

SAMPLING_RATIO = 2  # bilinear samples per output pixel and axis, averaged (roi_align's sampling_ratio)


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


def _axis_samples(start: torch.Tensor, stop: torch.Tensor, size: int, length: int):
    """roi_align's samples along one axis of windows [start, stop) (M,) in a frame `length` pixels long: for
    sample k = a * size + p (sub-sample a of output pixel p) its low and high pixel (M, R * size) int64 and their
    bilinear weights (M, R * size); a sample more than a pixel outside the frame weighs nothing."""
    begin = start - 0.5  # aligned: pixel centres at integer + 0.5
    step = (stop - 0.5 - begin) / size
    k = torch.arange(SAMPLING_RATIO * size, device=start.device)
    pixel = (k % size).to(start.dtype)
    sub = (k // size).to(start.dtype) + 0.5
    pos = (begin[:, None] + pixel * step[:, None]) + sub * step[:, None] / SAMPLING_RATIO  # (M, R * size)
    outside = (pos < -1.0) | (pos > length)
    pos = torch.where(pos <= 0, torch.zeros_like(pos), pos)
    low = pos.long()
    edge = low >= length - 1
    low = torch.where(edge, torch.full_like(low, length - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low.to(pos.dtype))
    return low, high, (1 - frac).masked_fill(outside, 0.0), frac.masked_fill(outside, 0.0)


def _interpolate(values: torch.Tensor, low: torch.Tensor, high: torch.Tensor, w_low: torch.Tensor,
                 w_high: torch.Tensor, size: int) -> torch.Tensor:
    """Along the last dim of `values` (M, ..., P): each output pixel's SAMPLING_RATIO samples, each the weighted
    pair of pixels low / high (M, R * size) of it, averaged -> (M, ..., size). Elementwise, in a fixed order."""
    shape = values.shape[:-1] + (low.shape[1],)
    lead = (slice(None),) + (None,) * (values.dim() - 2)
    pair = torch.gather(values, -1, torch.cat([low, high], 1)[lead].expand(*shape[:-1], 2 * low.shape[1]))
    pair = unit_float(pair) if pair.dtype == torch.uint8 else pair
    samples = w_low[lead] * pair[..., :low.shape[1]] + w_high[lead] * pair[..., low.shape[1]:]  # (M, ..., R * S)
    samples = samples.unflatten(-1, (SAMPLING_RATIO, size))
    total = samples[..., 0, :]
    for sub in range(1, SAMPLING_RATIO):
        total = total + samples[..., sub, :]
    return total / SAMPLING_RATIO


def _rows(frames: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """`frames` (N, C, L, H, W) as a (rows, W) view of its storage and the row stride of its first three dims (a
    dense copy first where its rows are not whole W-pixel lines)."""
    width = frames.shape[-1]
    if frames.stride(-1) != 1 or frames.stride(-2) != width or any(s % width for s in frames.stride()[:3]):
        frames = frames.contiguous()
    last = sum((n - 1) * s for n, s in zip(frames.shape, frames.stride())) if frames.numel() else 0
    rows = frames.as_strided((last // width + 1, width), (width, 1))
    return rows, tuple(s // width for s in frames.stride()[:3])


def crop_tubes(frames: torch.Tensor, owner: torch.Tensor, windows: torch.Tensor, size: int,
               steps: torch.Tensor | None = None, extent: float | None = None) -> torch.Tensor:
    """Cut tube m from clip owner[m] of `frames` (N, C, L, H, W) at windows[m] (pixel xyxy), resized to
    size x size: its frames steps[m] (M, L') of the L, or all L in order -> (M, C, L', size, size).

    uint8 frames are read as `unit_float` reads them (value / 255) and give float32 tubes; float frames give
    tubes of their dtype. Only the rows of each window are gathered, and only the pixels its samples read are made
    float. `extent` is the largest window side in pixels (the callers know it: it sizes the gather without reading
    the windows back to the host); None reads it from `windows`."""
    if frames.dim() != 5:
        raise VadgpuError(f"crop_tubes: frames must be (N, C, L, H, W), got {tuple(frames.shape)}")
    _, c, length, height, width = frames.shape
    m, device = owner.shape[0], frames.device
    if steps is None:
        steps = torch.arange(length, device=device).expand(m, length)
    windows = windows.to(torch.float32 if frames.dtype == torch.uint8 else frames.dtype)
    if extent is None:
        extent = float((windows[:, 2:] - windows[:, :2]).amax()) if m else 1.0
    # the rows a window's samples read: from one above its first pixel to one below its last
    strip = min(math.ceil(extent) + 3, height)
    y_low, y_high, wy_low, wy_high = _axis_samples(windows[:, 1], windows[:, 3], size, height)
    x_low, x_high, wx_low, wx_high = _axis_samples(windows[:, 0], windows[:, 2], size, width)
    top = y_low.amin(1).clamp(max=height - strip)  # (M,) first row of each window's strip
    lines, (per_clip, per_channel, per_frame) = _rows(frames)
    channel = torch.arange(c, device=device)
    first = owner[:, None, None] * per_clip + steps[:, :, None] * per_frame + channel * per_channel  # (M, L', C)
    picked = first[..., None] + top[:, None, None, None] + torch.arange(strip, device=device)  # (M, L', C, strip)
    span = steps.shape[1]
    strips = lines.index_select(0, picked.reshape(-1)).view(m, span * c, strip, width)  # (M, L'*C, strip, W)
    across = _interpolate(strips, x_low, x_high, wx_low, wx_high, size)  # (M, L'*C, strip, S)
    down = _interpolate(across.transpose(2, 3), y_low - top[:, None], y_high - top[:, None], wy_low, wy_high,
                        size)  # (M, L'*C, S(x), S(y))
    return down.view(m, span, c, size, size).permute(0, 2, 1, 4, 3)  # (M, C, L', S, S)


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

    The tubes are cut from the frames the batch hands over (`frame_pieces`: the decoded uint8 frames, so the whole
    frames never become float); a skip window's tubes are cut once, over the span, and the clip's tubes are its
    T frames in the middle. Any other batch (its `clips`, and `window` where not None) is cut as it is.
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
        pieces, window_pieces = _frame_pieces(batch)
        height, width = pieces[0].frames.shape[-2:]
        device = pieces[0].frames.device
        owner = torch.arange(len(batch.video), device=device).repeat_interleave(self.per_clip)  # (M,)
        video, frame = batch.video[owner], batch.frame[owner]
        boxes, valid = self.boxes.sample(video, frame, generator)  # (M, T, 4), (M,)
        centre = boxes[:, boxes.shape[1] // 2]  # (M, 4)
        # No track: a random box centre anywhere in the frame (a tube of background).
        anywhere = torch.rand(owner.shape[0], 2, generator=generator, device=device).repeat(1, 2)
        centre = torch.where(valid[:, None], centre, anywhere)
        windows = tube_windows(centre, (height, width), self.window)  # (M, 4)
        spans = self._cut(pieces, owner, windows, (height, width))  # (M, C, span, S, S)
        tubes, window = spans, None
        if pieces[0].has_window:
            tubes, window = spans[:, :, pieces[0].clip_in_span].contiguous(), spans
        if window_pieces is not None:
            window = self._cut(window_pieces, owner, windows, (height, width))
        inside = boxes_in_windows(boxes, windows, (height, width)) * valid[:, None, None]
        return TubeBatch(tubes, video, frame, inside, valid, window)

    def _cut(self, pieces, owner: torch.Tensor, windows: torch.Tensor, frame_hw: tuple[int, int]) -> torch.Tensor:
        """Every tube's span frames, piece by piece (a piece holds consecutive clips, so consecutive tubes). As
        crop_piece_tubes does for scoring, but from the tube count per clip instead of a host copy of the owners, so a
        training step on a GPU sends nothing from the host."""
        side = min(self.window, *frame_hw)
        parts, first = [], 0
        for piece in pieces:
            clips = piece.rows.shape[0]
            mine = slice(first * self.per_clip, (first + clips) * self.per_clip)
            local = owner[mine] - first
            parts.append(crop_tubes(piece.frames, piece.clip[local], windows[mine], self.size,
                                    steps=piece.rows[local], extent=side))
            first += clips
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _frame_pieces(batch):
    """(pieces of the clips' span frames, pieces of a separate skip window or None): a loader's ClipBatch hands
    over its frames; any other batch its float `clips` (and `window`)."""
    if hasattr(batch, "frame_pieces"):
        return batch.frame_pieces(), None
    window = getattr(batch, "window", None)
    return clip_pieces(batch.clips), None if window is None else clip_pieces(window)


def clip_pieces(clips: torch.Tensor) -> list[FramePiece]:
    """Clips (N, C, L, H, W) as the one frame piece that holds them as they are."""
    n, length = clips.shape[0], clips.shape[2]
    steps = torch.arange(length, device=clips.device).expand(n, length)
    return [FramePiece(clips, torch.arange(n, device=clips.device), steps, slice(0, length))]


def crop_piece_tubes(pieces: list[FramePiece], owner: np.ndarray, windows: torch.Tensor, size: int,
                     extent: float) -> torch.Tensor:
    """Tube m cut from the T frames of clip owner[m] (host, non-decreasing) of a batch given as its frame pieces
    (ClipBatch.frame_pieces: consecutive clips each, in order) at windows[m], as crop_tubes cuts it from the clips
    themselves -> (M, C, T, S, S) float32: decoded uint8 frames are made float only where the samples read them."""
    parts, first = [], 0
    for piece in pieces:
        count = piece.rows.shape[0]
        lo, hi = np.searchsorted(owner, [first, first + count])
        if hi > lo:
            local = torch.from_numpy(owner[lo:hi] - first).to(piece.frames.device)
            parts.append(crop_tubes(piece.frames, piece.clip[local], windows[lo:hi], size,
                                    steps=piece.rows[local][:, piece.clip_in_span], extent=extent))
        first += count
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def centre_frames(pieces: list[FramePiece]) -> torch.Tensor:
    """The centre frame of every clip of a batch given as its frame pieces: (N, C, H, W) float32 in [0, 1] (uint8
    frames divided as `unit_float` divides them, so the values of the float clips' centre frames)."""
    out = []
    for piece in pieces:
        rows = piece.rows[:, piece.clip_in_span]
        frames = piece.frames[piece.clip, :, rows[:, rows.shape[1] // 2]]  # (K, C, H, W)
        out.append(unit_float(frames) if frames.dtype == torch.uint8 else frames)
    return out[0] if len(out) == 1 else torch.cat(out)


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
