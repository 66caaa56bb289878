"""Frame-label readers: every format ends as one uint8 0/1 array per test video.

    .mat intervals     `gt` cell of per-video (2, K) arrays: rows are first / last anomalous frame, 1-based,
                       inclusive (ped2.mat, avenue.mat and friends)
    UCSD .m intervals  `TestVideoFile{end+1}.gt_frame = [61:180];` or `[5:90, 140:200];` (UCSDped1.m, UCSDped2.m)
    per-frame masks    `volLabel` cell of (H, W) masks, one per frame (Avenue's testing_label_mask/N_label.mat);
                       a frame is anomalous when any pixel of its mask is set
    .npy               per-frame 0/1 (shape (F,) or (1, F)); a file for several videos is split by frame counts
    .json              `[0, 0, 1, ...]`, or `{"labels": [...]}`, or `{"frames": F, "intervals": [[a, b], ...]}`
                       with 0-based inclusive intervals

Readers raise `VadgpuError` naming the file and what is wrong; `check_length` is the one place that compares a
label array with a frame count (the catalog calls it for frame folders, prepare for decoded videos).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from vadgpu.errors import VadgpuError

Intervals = list[tuple[int, int]]  # (first, last) frame numbers, inclusive
MAX_FRAMES = 10**8  # frames of one video a label file may describe (46 days at 25 fps): no larger array is made


def as_frame_labels(values, source: str | Path) -> np.ndarray:
    """Validate a 1-D sequence of 0/1 (or bool) values and return it as uint8."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:  # nested lists of unequal lengths, and the like
        raise VadgpuError(f"labels in {source}: expected a flat list of 0/1 per frame ({exc})") from exc
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1 or array.size == 0:
        raise VadgpuError(f"labels in {source}: expected a non-empty 1-D array of 0/1 per frame, got shape "
                          f"{array.shape}")
    if array.dtype.kind not in "biuf":
        raise VadgpuError(f"labels in {source}: expected numbers 0/1, got dtype {array.dtype}")
    bad = ~np.isin(array, (0, 1))
    if bad.any():
        raise VadgpuError(f"labels in {source}: values must be 0 or 1, found {array[bad][0].item()!r} at frame "
                          f"{int(np.flatnonzero(bad)[0])}")
    return array.astype(np.uint8)


def intervals_to_labels(intervals: Intervals, num_frames: int, source: str | Path,
                        one_based: bool = True) -> np.ndarray:
    """(num_frames,) uint8 with 1 inside each inclusive interval; an interval past the end is an error."""
    labels = np.zeros(num_frames, np.uint8)
    offset = 1 if one_based else 0
    for first, last in intervals:
        lo, hi = first - offset, last - offset
        if lo < 0 or hi < lo or hi >= num_frames:
            raise VadgpuError(f"labels in {source}: interval [{first}, {last}] does not fit a video of {num_frames} "
                              f"frames (numbering starts at {offset})")
        labels[lo:hi + 1] = 1
    return labels


def check_length(labels: np.ndarray, num_frames: int, video: str, source: str | Path | None) -> None:
    """Raise if a video's labels do not have one entry per frame."""
    if len(labels) != num_frames:
        raise VadgpuError(f"labels for video {video} ({source}) have {len(labels)} frames but the video has "
                          f"{num_frames} frames")


def _loadmat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except FileNotFoundError as exc:
        raise VadgpuError(f"label file {path} does not exist") from exc
    except Exception as exc:  # scipy raises ValueError / MatReadError / NotImplementedError (v7.3 HDF5) etc.
        raise VadgpuError(f"label file {path} is not a MATLAB .mat file scipy can read: {exc}") from exc


def _mat_variable(contents: dict, path: Path, preferred: Sequence[str]):
    names = [k for k in contents if not k.startswith("__")]
    for name in preferred:
        if name in contents:
            return contents[name]
    if len(names) == 1:
        return contents[names[0]]
    raise VadgpuError(f"label file {path}: expected a variable named {' or '.join(preferred)}, found {names}")


def read_mat_intervals(path: str | Path) -> list[Intervals]:
    """Per-video anomalous intervals (1-based, inclusive) from a .mat whose `gt` holds one (2, K) array per video
    (parsed in a child process: mat_isolated.py)."""
    from vadgpu.data.mat_isolated import run_isolated

    return run_isolated(_read_mat_intervals_here, path)


def _read_mat_intervals_here(path: str | Path) -> list[Intervals]:
    path = Path(path)
    cell = _mat_variable(_loadmat(path), path, ("gt",))
    videos = []
    for index, entry in enumerate(np.asarray(cell, dtype=object).reshape(-1)):
        array = np.asarray(entry)
        if array.size == 0:
            videos.append([])
            continue
        if array.ndim != 2 or 2 not in array.shape:
            raise VadgpuError(f"label file {path}: entry {index} has shape {array.shape}, expected (2, K) "
                              "first/last frame rows")
        if array.shape[0] != 2:
            array = array.T
        if array.dtype.kind not in "iuf" or not np.isfinite(array).all() or (array != np.round(array)).any() \
                or np.abs(array).max() > MAX_FRAMES:
            raise VadgpuError(f"label file {path}: entry {index} must hold whole frame numbers, not "
                              f"{array.reshape(-1)[:4].tolist()}")
        videos.append([(int(a), int(b)) for a, b in zip(array[0], array[1])])
    if not videos:
        raise VadgpuError(f"label file {path} holds no videos")
    return videos


_UCSD_LINE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_UCSD_INTERVAL = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def read_ucsd_m_intervals(path: str | Path) -> list[Intervals]:
    """Per-video intervals (1-based, inclusive) from the UCSD MATLAB script (`UCSDped2.m`), parsed as text."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError as exc:
        raise VadgpuError(f"label file {path} does not exist") from exc
    videos = []
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.split("%", 1)[0]  # MATLAB comment
        match = _UCSD_LINE.search(line)
        if not match:
            continue
        intervals = []
        for part in filter(str.strip, match.group(1).split(",")):
            interval = _UCSD_INTERVAL.match(part)
            if not interval:
                raise VadgpuError(f"label file {path} line {line_no}: cannot read interval {part.strip()!r} "
                                  "(expected first:last)")
            intervals.append((int(interval.group(1)), int(interval.group(2))))
        videos.append(intervals)
    if not videos:
        raise VadgpuError(f"label file {path} has no `gt_frame = [a:b];` lines")
    return videos


def read_mask_mat(path: str | Path) -> np.ndarray:
    """Frame labels from per-frame masks (`volLabel`: a cell of (H, W) arrays): 1 where a mask has any pixel set
    (parsed in a child process: mat_isolated.py)."""
    from vadgpu.data.mat_isolated import run_isolated

    return run_isolated(_read_mask_mat_here, path)


def _read_mask_mat_here(path: str | Path) -> np.ndarray:
    path = Path(path)
    masks = _mat_variable(_loadmat(path), path, ("volLabel", "frame_mask", "mask"))
    masks = np.asarray(masks)
    if masks.dtype == object:
        frames = [np.asarray(m) for m in masks.reshape(-1)]
    elif masks.ndim == 3:  # a dense (H, W, F) volume
        frames = [masks[..., i] for i in range(masks.shape[-1])]
    else:
        raise VadgpuError(f"label file {path}: expected a cell of per-frame masks or an (H, W, F) volume, got "
                          f"shape {masks.shape}")
    if not frames:
        raise VadgpuError(f"label file {path} holds no frame masks")
    return np.array([bool(np.any(m)) for m in frames], dtype=np.uint8)


def read_npy_labels(path: str | Path) -> np.ndarray:
    """Per-frame 0/1 labels from a .npy file (loaded without pickle)."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise VadgpuError(f"label file {path} does not exist") from exc
    except Exception as exc:  # noqa: BLE001  object arrays need pickle; a damaged header fails in many ways
        raise VadgpuError(f"label file {path} is not a plain numeric .npy array ({type(exc).__name__}: "
                          f"{exc})") from exc
    return as_frame_labels(array, path)


def _whole(value) -> bool:
    """An integer in JSON: not a bool (true is 1 in Python), not a float such as 2.5."""
    return isinstance(value, int) and not isinstance(value, bool)


def read_json_labels(path: str | Path) -> np.ndarray:
    """Per-frame labels from JSON: a 0/1 list, {"labels": [...]}, or {"frames": F, "intervals": [[a, b], ...]}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise VadgpuError(f"label file {path} does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VadgpuError(f"label file {path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and "labels" in data:
        data = data["labels"]
    elif isinstance(data, dict) and "intervals" in data:
        frames = data.get("frames")
        if not _whole(frames) or not 0 < frames <= MAX_FRAMES:
            raise VadgpuError(f"label file {path}: intervals need a positive integer \"frames\" (the video length), "
                              f"not {frames!r}")
        pairs = data["intervals"]
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise VadgpuError(f"label file {path}: \"intervals\" must be a list of [first, last] pairs")
        bad = next((p for p in pairs if not (_whole(p[0]) and _whole(p[1]))), None)
        if bad is not None:
            raise VadgpuError(f"label file {path}: interval {bad} must hold whole frame numbers (0-based)")
        return intervals_to_labels([(a, b) for a, b in pairs], frames, path, one_based=False)
    if not isinstance(data, list):
        raise VadgpuError(f"label file {path}: expected a list of 0/1, {{\"labels\": [...]}} or "
                          f"{{\"frames\": F, \"intervals\": [...]}}")
    return as_frame_labels(data, path)


def read_label_file(path: str | Path) -> np.ndarray:
    """One video's labels from a .npy, .json or per-frame-mask .mat file, chosen by extension."""
    path = Path(path)
    readers = {".npy": read_npy_labels, ".json": read_json_labels, ".mat": read_mask_mat}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise VadgpuError(f"label file {path}: unknown format {path.suffix!r} (use .npy, .json or a mask .mat)")
    return reader(path)


def split_concatenated(labels: np.ndarray, counts: Sequence[int], names: Sequence[str],
                       source: str | Path) -> list[np.ndarray]:
    """Split one label array covering several videos back-to-back (e.g. frame_labels_ped2.npy) by frame counts."""
    if len(labels) != sum(counts):
        per_video = ", ".join(f"{n}: {c}" for n, c in zip(names, counts))
        raise VadgpuError(f"labels in {source} cover {len(labels)} frames but the {len(counts)} test videos have "
                          f"{sum(counts)} frames ({per_video})")
    bounds = np.cumsum([0, *counts])
    return [labels[a:b].copy() for a, b in zip(bounds[:-1], bounds[1:])]


def per_video_intervals(intervals: list[Intervals], counts: Sequence[int], names: Sequence[str],
                        source: str | Path) -> list[np.ndarray]:
    """Turn per-video 1-based intervals into per-video label arrays; the file must list every test video."""
    if len(intervals) != len(counts):
        raise VadgpuError(f"labels in {source} list {len(intervals)} videos but the dataset has {len(counts)} test "
                          f"videos ({', '.join(names)})")
    return [intervals_to_labels(iv, n, f"{source} (video {name})") for iv, n, name in zip(intervals, counts, names)]
