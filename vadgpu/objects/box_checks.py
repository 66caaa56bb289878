"""What a box cache must hold before any of it reaches a tensor: checked once, where the file is read
(`objects.boxes.read_box_cache`), so that the tables, the tube windows and `roi_align` downstream only ever see
boxes inside their frames and indices inside their videos (a NaN coordinate crashed roi_align natively; a video
index past the list was an IndexError deep in objects/tubes.py).

Per box: video in [0, videos), frame in [0, that video's frames), x1 <= x2 and y1 <= y2, all four in [0, 1]
(the cache normalises by the frame's size and clips to it), a finite score, a class index into class_names or -1,
a track id >= -1. Per video: a name (unique within its split), a split (train or test), a frame count >= 0 and a
size >= 1 pixel. Any other content is a VadgpuError naming the cache, the field and the first bad row.
"""

from __future__ import annotations

import numpy as np

from vadgpu.errors import VadgpuError

FORMAT = 1
SPLITS = ("train", "test")
COORDS = ("x1", "y1", "x2", "y2")
MAX_FRAMES = 1 << 31  # frames per video: beyond int32 the tables' row numbers would wrap
MAX_SIDE = 1 << 16  # pixels


def _bad(path, message: str) -> VadgpuError:
    return VadgpuError(f"box cache {path}: {message}; rebuild it with `vadgpu data boxes`")


def _whole(path, arrays: dict, key: str, ndim: int = 1) -> np.ndarray:
    """arrays[key] as int64, refused unless it is `ndim`-dimensional and holds whole numbers (an empty float
    array, as a cache without boxes stores some columns, passes)."""
    value = arrays[key]
    if value.ndim != ndim:
        raise _bad(path, f"{key} must be {'a scalar' if ndim == 0 else 'one value per entry'}, not an array of "
                         f"shape {value.shape}")
    if value.dtype.kind in "iu":
        if value.dtype.kind == "u" and value.size and int(value.max()) > np.iinfo(np.int64).max:
            raise _bad(path, f"{key} holds values beyond int64")
        return value.astype(np.int64)
    if value.dtype.kind == "b":
        raise _bad(path, f"{key} must hold whole numbers, not true/false")
    if value.dtype.kind == "f":
        value = value.astype(np.float64)
        if value.size and not (np.isfinite(value).all() and (value == np.round(value)).all()
                               and np.abs(value).max() < 2.0 ** 62):
            raise _bad(path, f"{key} must hold whole numbers")
        return value.astype(np.int64)
    raise _bad(path, f"{key} must hold whole numbers, not {value.dtype}")


def _text(path, arrays: dict, key: str, ndim: int) -> np.ndarray:
    value = arrays[key]
    if value.dtype.kind != "U" or value.ndim != ndim:
        raise _bad(path, f"{key} must be {'a text' if ndim == 0 else 'a list of texts'}, not {value.dtype} of shape "
                         f"{value.shape}")
    return value


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_box_arrays(path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate the arrays of a box cache (all keys present); returns them with the row columns in the dtypes the
    rest of vadgpu expects (video, frame, cls, track int32; coordinates and score float32)."""
    fmt = _whole(path, arrays, "format", ndim=0)
    if int(fmt) != FORMAT:
        raise VadgpuError(f"box cache {path}: format {int(fmt)}, this vadgpu reads {FORMAT}")
    _text(path, arrays, "dataset", 0)
    _text(path, arrays, "detector", 0)
    classes = _text(path, arrays, "class_names", 1)
    names, splits = _text(path, arrays, "video_names", 1), _text(path, arrays, "video_splits", 1)
    frames = _whole(path, arrays, "video_frames")
    width, height = _whole(path, arrays, "video_width"), _whole(path, arrays, "video_height")
    videos = len(names)
    for key, value in (("video_splits", splits), ("video_frames", frames), ("video_width", width),
                       ("video_height", height)):
        if len(value) != videos:
            raise _bad(path, f"{key} has {len(value)} entries for {videos} videos")
    odd = ~np.isin(splits, SPLITS)
    if odd.any():
        i = _first(odd)
        raise _bad(path, f"video {str(names[i])!r} is in split {str(splits[i])!r}, not train or test")
    for split in SPLITS:
        mine = names[splits == split]
        if len(set(mine.tolist())) != len(mine):
            raise _bad(path, f"split {split} names a video twice")
    wrong = (frames < 0) | (frames >= MAX_FRAMES)
    if wrong.any():
        raise _bad(path, f"video {str(names[_first(wrong)])!r} has {frames[_first(wrong)]} frames")
    for key, side in (("video_width", width), ("video_height", height)):
        wrong = (side < 1) | (side > MAX_SIDE)
        if wrong.any():
            raise _bad(path, f"video {str(names[_first(wrong)])!r} has {key} {side[_first(wrong)]}")

    rows = {key: arrays[key] for key in ("video", "frame", "score", "cls", "track", *COORDS)}
    lengths = {key: value.shape for key, value in rows.items()}
    if any(len(shape) != 1 for shape in lengths.values()) or len({shape[0] for shape in lengths.values()}) != 1:
        raise _bad(path, f"the per-box arrays must be 1-D and of one length, not {lengths}")
    video, frame = _whole(path, arrays, "video"), _whole(path, arrays, "frame")
    cls, track = _whole(path, arrays, "cls"), _whole(path, arrays, "track")
    wrong = (video < 0) | (video >= videos)
    if wrong.any():
        raise _bad(path, f"box {_first(wrong)} names video {video[_first(wrong)]}, but the cache lists {videos}")
    wrong = (frame < 0) | (frame >= frames[video] if videos else frame >= 0)
    if wrong.any():
        i = _first(wrong)
        raise _bad(path, f"box {i} is in frame {frame[i]} of video {str(names[video[i]])!r}, which has "
                         f"{frames[video[i]]}")
    wrong = (cls < -1) | (cls >= len(classes))
    if wrong.any():
        raise _bad(path, f"box {_first(wrong)} has class {cls[_first(wrong)]}, but the cache names {len(classes)}")
    wrong = (track < -1) | (track >= MAX_FRAMES)
    if wrong.any():
        raise _bad(path, f"box {_first(wrong)} has track id {track[_first(wrong)]} (-1: untracked, else >= 0)")
    out = dict(arrays)
    for key in ("score", *COORDS):
        value = rows[key]
        if value.dtype.kind not in "fiu":
            raise _bad(path, f"{key} must hold numbers, not {value.dtype}")
        value = value.astype(np.float64)
        if not np.isfinite(value).all():
            raise _bad(path, f"box {_first(~np.isfinite(value))} has {key} {value[_first(~np.isfinite(value))]}")
        if key != "score" and ((value < 0) | (value > 1)).any():
            i = _first((value < 0) | (value > 1))
            raise _bad(path, f"box {i} has {key} {value[i]:g}, outside the frame (coordinates are fractions of the "
                             "frame's width and height, in [0, 1])")
        out[key] = value.astype(np.float32)
    for low, high in (("x1", "x2"), ("y1", "y2")):
        wrong = out[high] < out[low]
        if wrong.any():
            i = _first(wrong)
            raise _bad(path, f"box {i} is inverted ({low} {out[low][i]:g} > {high} {out[high][i]:g})")
    out.update(video=video.astype(np.int32), frame=frame.astype(np.int32), cls=cls.astype(np.int32),
               track=track.astype(np.int32), format=np.array(FORMAT), video_frames=frames, video_width=width,
               video_height=height)
    return out
