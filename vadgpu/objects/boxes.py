"""The object box cache: detect once (`vadgpu data boxes`), then sample tracked boxes on the device per clip.

On-disk format (.npz, no pickle), one row per detected box, flat arrays:

    video (B,) int32      index into video_names      frame (B,) int32   frame index in its video
    x1, y1, x2, y2 (B,)   float32, normalised to [0, 1] by the frame's width / height
    score (B,) float32    cls (B,) int32 (index into class_names)    track (B,) int32 (-1: untracked)
    metadata: format (int), dataset, detector (str), class_names, video_names, video_splits (str arrays),
              video_frames, video_width, video_height (int64 arrays)

`ObjectBoxes.load(path, videos, device, temporal)` turns the rows into device tables so that `sample()` picks, per
clip, one track present in every one of its T frames with tensor ops only: no host sync, no loop over samples.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from vadgpu.data.types import PreparedVideo, Video
from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_write
from vadgpu.objects.box_checks import FORMAT, check_box_arrays
from vadgpu.objects.detectors import Detector
from vadgpu.objects.frames import FrameSource
from vadgpu.objects.tracking import track_video
from vadgpu.zip_limits import check_zip_expansion

_ROW_KEYS = ("video", "frame", "x1", "y1", "x2", "y2", "score", "cls", "track")
_META_KEYS = ("format", "dataset", "detector", "class_names", "video_names", "video_splits", "video_frames",
              "video_width", "video_height")


@dataclass
class BoxCacheSummary:
    path: Path
    videos: int
    frames: int
    boxes: int
    tracks: int  # distinct (video, track id) pairs
    seconds: float

    def __str__(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        return (f"{self.path}: {self.boxes} boxes in {self.tracks} tracks over {self.frames} frames of "
                f"{self.videos} videos, {self.seconds:.1f} s ({fps:.1f} frames/s)")


def build_box_cache(
    splits: Mapping[str, Sequence[Video]],
    detector: Detector,
    out: str | os.PathLike,
    dataset: str,
    progress: bool | None = None,
    chunk: int = 16,
) -> BoxCacheSummary:
    """Detect and track objects in every video of `splits` ({"train": [...], "test": [...]}), write the .npz
    cache atomically and return counts and time. `progress=None` shows a tqdm bar only on a terminal."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    entries = [(split, video) for split, videos in splits.items() for video in videos]
    if not entries:
        raise VadgpuError(f"dataset {dataset}: no videos to detect objects in")
    sources = [FrameSource(video) for _, video in entries]
    rows: dict[str, list[np.ndarray]] = {k: [] for k in _ROW_KEYS}
    total = sum(s.num_frames for s in sources)
    disable = None if progress is None else not progress  # tqdm: None = disable when not a TTY
    with tqdm(total=total, unit="frame", desc=f"boxes ({detector.name})", disable=disable) as bar:
        for v, source in enumerate(sources):
            dets = track_video(detector, source, chunk=chunk, on_frames=bar.update)
            if len(dets) != source.num_frames:
                raise VadgpuError(f"{source.video.path}: read {len(dets)} frames, expected {source.num_frames}")
            for f, det in enumerate(dets):
                k = len(det)
                norm = det.boxes / np.array([source.width, source.height] * 2, np.float32)  # (K, 4) in [0, 1]
                norm = norm.clip(0.0, 1.0)
                rows["video"].append(np.full(k, v, np.int32))
                rows["frame"].append(np.full(k, f, np.int32))
                for i, key in enumerate(("x1", "y1", "x2", "y2")):
                    rows[key].append(norm[:, i])
                rows["score"].append(det.scores.astype(np.float32))
                rows["cls"].append(det.classes.astype(np.int32))
                tracks = det.tracks if det.tracks is not None else np.full(k, -1)
                rows["track"].append(tracks.astype(np.int32))
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in rows.items()}
    arrays["video"], arrays["frame"] = arrays["video"].astype(np.int32), arrays["frame"].astype(np.int32)
    arrays.update(
        format=np.array(FORMAT),
        dataset=np.array(dataset),
        detector=np.array(detector.describe()),
        class_names=np.array(detector.class_names, dtype=str),
        video_names=np.array([video.name for _, video in entries], dtype=str),
        video_splits=np.array([split for split, _ in entries], dtype=str),
        video_frames=np.array([s.num_frames for s in sources], np.int64),
        video_width=np.array([s.width for s in sources], np.int64),
        video_height=np.array([s.height for s in sources], np.int64),
    )
    out = Path(out)
    atomic_write(out, lambda fh: np.savez_compressed(fh, **arrays), mode="wb")
    tracked = arrays["track"] >= 0
    tracks = len(np.unique(np.stack([arrays["video"][tracked], arrays["track"][tracked]]), axis=1).T)
    return BoxCacheSummary(out, len(entries), total, len(arrays["score"]), tracks, time.perf_counter() - started)


def read_box_cache(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The cache's arrays (allow_pickle=False), checked once here for everything later code relies on
    (`check_box_arrays`): whatever the file holds, what leaves this function is a valid cache or a VadgpuError."""
    path = Path(path)
    if not path.is_file():
        raise VadgpuError(f"box cache {path}: no such file (make it with `vadgpu data boxes`)")
    check_zip_expansion(path, "box cache")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001  a damaged archive raises BadZipFile, zlib.error, EOFError, ValueError ...
        raise VadgpuError(f"box cache {path}: not a readable .npz without pickles ({type(exc).__name__}: "
                          f"{exc})") from exc
    missing = [k for k in _ROW_KEYS + _META_KEYS if k not in arrays]
    if missing:
        raise VadgpuError(f"box cache {path}: not a vadgpu box cache (missing {', '.join(missing)})")
    return check_box_arrays(path, arrays)


def match_cache_videos(arrays: dict[str, np.ndarray], path, videos: Sequence[PreparedVideo], split: str,
                       dataset: str | None = None) -> np.ndarray:
    """The cache's video id of each of `videos` (matched by name within `split`), checked for frame counts and,
    when given, the dataset name; a mismatch is a VadgpuError naming the cache and what differs."""
    if dataset is not None and str(arrays["dataset"]) != dataset:
        raise VadgpuError(f"box cache {path} was made for dataset {arrays['dataset']} ({arrays['detector']}), not "
                          f"{dataset}: make one with `vadgpu data boxes --dataset {dataset} --split both`")
    in_split = np.flatnonzero(arrays["video_splits"] == split)
    by_name = {str(arrays["video_names"][i]): int(i) for i in in_split}
    missing = [v.name for v in videos if v.name not in by_name]
    if missing:
        raise VadgpuError(
            f"box cache {path} ({arrays['dataset']}, {arrays['detector']}, split {split}) has no boxes for video(s) "
            f"{', '.join(missing[:8])}; it holds {', '.join(sorted(by_name)[:8]) or 'none'}: rebuild it with "
            f"`vadgpu data boxes --split both`"
        )
    for v in videos:
        cached = int(arrays["video_frames"][by_name[v.name]])
        if cached != v.num_frames:
            raise VadgpuError(f"box cache {path}: video {v.name} had {cached} frames at detection, the prepared "
                              f"video has {v.num_frames}: rebuild the cache")
    return np.array([by_name[v.name] for v in videos], np.int64)


def _segments(frames: np.ndarray, boxes: np.ndarray, max_gap: int) -> list[tuple[int, np.ndarray]]:
    """Split one track (frames sorted, boxes (F, 4)) into runs with no gap longer than `max_gap` frames; fill the
    short gaps by linear interpolation (a detector missing one frame should not break a track). Returns
    (first frame, boxes (L, 4) for every frame of the run)."""
    frames, first = np.unique(frames, return_index=True)  # a duplicate id in one frame: keep the first box
    boxes = boxes[first]
    breaks = np.flatnonzero(np.diff(frames) > max_gap + 1) + 1
    out = []
    for fr, bx in zip(np.split(frames, breaks), np.split(boxes, breaks)):
        full = np.arange(fr[0], fr[-1] + 1)
        filled = np.stack([np.interp(full, fr, bx[:, i]) for i in range(4)], axis=1).astype(np.float32)
        out.append((int(fr[0]), filled))
    return out


class ObjectBoxes:
    """Device tables of tracked boxes for a list of prepared videos and a clip length T.

    `sample(video, frame, generator)` -> boxes (N, T, 4) normalised xyxy and valid (N,) bool, where valid means
    the clip centred at `frame` has at least one track present in all T frames, and boxes are that track's.
    """

    def __init__(self, tables: dict[str, torch.Tensor], temporal: int, info: dict) -> None:
        self.temporal = temporal
        self.info = info
        for name, tensor in tables.items():
            setattr(self, f"_{name}", tensor)
        self.device = self._flat.device
        self._steps = torch.arange(temporal, device=self.device)  # (T,)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        videos: Sequence[PreparedVideo],
        device: torch.device | str,
        temporal: int,
        split: str = "train",
        max_gap: int = 4,
    ) -> "ObjectBoxes":
        """Read a box cache and build the sampling tables on `device` for `videos` (matched by name in `split`).

        Gaps of up to `max_gap` frames in a track (the IoU tracker keeps a track alive that long) are filled by
        interpolation; longer gaps split it.
        """
        if temporal < 1:
            raise VadgpuError(f"temporal {temporal}: must be at least 1")
        a = read_box_cache(path)
        by_name = dict(zip((v.name for v in videos), match_cache_videos(a, path, videos, split).tolist()))
        half = temporal // 2
        flat, seg_start, seg_base = [np.zeros((1, 4), np.float32)], [0], [0]  # entry 0: the padding segment
        cand_rows, cand_segs = [], []
        lengths = np.array([v.num_frames for v in videos], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        base, boxes_used, tracks_used = 1, 0, 0
        for vi, v in enumerate(videos):
            sel = (a["video"] == by_name[v.name]) & (a["track"] >= 0)
            frames, track = a["frame"][sel], a["track"][sel]
            boxes = np.stack([a[k][sel] for k in ("x1", "y1", "x2", "y2")], axis=1)  # (B, 4)
            boxes_used += int(sel.sum())
            for t in np.unique(track):
                tracks_used += 1
                mine = np.flatnonzero(track == t)
                order = mine[np.argsort(frames[mine], kind="stable")]
                for first, run in _segments(frames[order], boxes[order], max_gap):
                    if len(run) < temporal:
                        continue
                    seg = len(seg_start)
                    flat.append(run)
                    seg_start.append(first)
                    seg_base.append(base)
                    base += len(run)
                    clip_starts = np.arange(first, first + len(run) - temporal + 1)  # clips inside the run
                    cand_rows.append(offsets[vi] + clip_starts + half)  # row of each clip's centre frame
                    cand_segs.append(np.full(len(clip_starts), seg, np.int64))
        rows = int(lengths.sum())
        cand_rows = np.concatenate(cand_rows) if cand_rows else np.zeros(0, np.int64)
        cand_segs = np.concatenate(cand_segs) if cand_segs else np.zeros(0, np.int64)
        count = np.bincount(cand_rows, minlength=rows).astype(np.int64)  # (rows,) candidates per centre
        width = max(1, int(count.max(initial=0)))
        order = np.argsort(cand_rows, kind="stable")
        cand_rows, cand_segs = cand_rows[order], cand_segs[order]
        slot = np.arange(len(cand_rows)) - np.repeat(np.cumsum(count) - count, count)  # position within its row
        table = np.zeros((rows, width), np.int64)  # (rows, K) segment ids, 0 = padding
        table[cand_rows, slot] = cand_segs
        dev = torch.device(device)
        tables = {
            "flat": torch.from_numpy(np.concatenate(flat)).to(dev),  # (boxes, 4)
            "seg_start": torch.tensor(seg_start, dtype=torch.int64, device=dev),  # (S,)
            "seg_base": torch.tensor(seg_base, dtype=torch.int64, device=dev),  # (S,)
            "cand": torch.from_numpy(table).to(dev),  # (rows, K)
            "count": torch.from_numpy(count).to(dev),  # (rows,)
            "offset": torch.from_numpy(offsets).to(dev),  # (V,)
            "length": torch.from_numpy(lengths).to(dev),  # (V,)
        }
        full_clips = int(np.clip(lengths - temporal + 1, 0, None).sum())
        info = dict(path=str(path), dataset=str(a["dataset"]), detector=str(a["detector"]), boxes=boxes_used,
                    tracks=tracks_used, segments=len(seg_start) - 1, clips=full_clips,
                    clips_with_track=int((count > 0).sum()), max_candidates=int(count.max(initial=0)))
        return cls(tables, temporal, info)

    @property
    def coverage(self) -> float:
        """Fraction of full training clips that have at least one track through all T frames."""
        return self.info["clips_with_track"] / max(1, self.info["clips"])

    def sample(
        self, video: torch.Tensor, frame: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample, one track present in all T frames of the clip centred at `frame` of `video`.

        video, frame: (N,) int64 on this device. Returns boxes (N, T, 4) float32 normalised xyxy (zeros where
        invalid) and valid (N,) bool. Random choice among candidates from `generator`; tensor ops only, so no
        host synchronisation.
        """
        frame = torch.minimum(frame.clamp(min=0), self._length[video] - 1)  # (N,) test clips may pass the edges
        row = self._offset[video] + frame  # (N,)
        count = self._count[row]  # (N,)
        valid = count > 0
        u = torch.rand(row.shape, generator=generator, device=self.device)  # (N,) in [0, 1)
        pick = torch.minimum((u * count).long(), (count - 1).clamp(min=0))  # (N,) index among the candidates
        seg = self._cand[row, pick]  # (N,) segment id (0 = padding where invalid)
        offset = frame - self.temporal // 2 - self._seg_start[seg]  # (N,) clip start within the segment
        idx = self._seg_base[seg, None] + offset[:, None] + self._steps  # (N, T)
        idx = torch.where(valid[:, None], idx, torch.zeros_like(idx))
        boxes = self._flat[idx] * valid[:, None, None]  # (N, T, 4)
        return boxes, valid
