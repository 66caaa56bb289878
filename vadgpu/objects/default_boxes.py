"""The box cache a dataset gets when the user names none: background subtraction over both splits, made once.

Object mode needs the boxes of the training videos (tubes to learn from) and of the test videos (tubes to score);
DDL's blend and pasted patches need the training videos' boxes. When `--boxes` is not given, `ensure_box_cache`
builds the cache with the background-subtraction detector (no weights, about 450 frames/s on a 2-core CPU) into
`boxes-bgsub-both.npz` in the dataset's prepare cache folder, says where (the `vadgpu` logger), and reuses it on
later runs while it still covers every video with the same frame counts.
"""

from __future__ import annotations

from pathlib import Path

from vadgpu.errors import VadgpuError

DEFAULT_DETECTOR = "bgsub"
# `--boxes none`: train without object boxes (and without what needs them); eval and score refuse it for an
# object model, which scores tubes cut around boxes
NO_BOXES = "none"


def default_boxes_path(dataset, detector: str, split: str, cache: Path | str | None = None) -> Path:
    """`boxes-<detector>-<split>.npz` in the dataset's prepare cache folder (beside the per-backend folders)."""
    from vadgpu.data.prepare import cache_dir_for

    return cache_dir_for(dataset, "cpu", cache).parent / f"boxes-{detector}-{split}.npz"


def covers(path: Path, splits: dict) -> bool:
    """Whether the cache at `path` holds every video of `splits` ({split: [PreparedVideo]}) with the same frame
    count; False for a missing or unreadable file."""
    from vadgpu.objects.boxes import match_cache_videos, read_box_cache

    try:
        arrays = read_box_cache(path)
        for split, videos in splits.items():
            match_cache_videos(arrays, path, videos, split)
    except VadgpuError:
        return False
    return True


def ensure_box_cache(dataset, prepared_splits: dict, cache: Path | str | None = None, progress: bool = True,
                     echo=None) -> Path:
    """The default box cache of `dataset` for `prepared_splits` ({"train": [...], "test": [...]} of
    PreparedVideo), built with background subtraction when missing or out of date; returns its path. What it
    does goes to `echo` (default: the `vadgpu` logger at INFO)."""
    from vadgpu.log import logger
    from vadgpu.objects.boxes import build_box_cache
    from vadgpu.objects.detectors import make_detector

    echo = echo or logger.info
    path = default_boxes_path(dataset, DEFAULT_DETECTOR, "both", cache)
    if covers(path, prepared_splits):
        echo(f"object boxes: {path} (background subtraction, cached)")
        return path
    echo(f"object boxes: none given; detecting with background subtraction into {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    splits = {split: [v.video for v in videos] for split, videos in prepared_splits.items()}
    summary = build_box_cache(splits, make_detector(DEFAULT_DETECTOR), path, dataset=dataset.name,
                              progress=None if progress else False)
    echo(f"object boxes: {summary}")
    return path
