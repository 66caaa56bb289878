"""The tube window an object model trains with: `window: auto` sized from the training boxes.

A tube is cut in a square window of a fixed number of the video's own pixels around each object
(objects/tubes.py). What fits one camera does not fit another: a window that frames a whole pedestrian of UCSD
Ped2 (people about 30 px tall) crops half of one on a camera that sees people twice as tall. So the object presets
leave the window `auto`, and training sets it from the box cache's training split:

    window = the even number of pixels nearest to WINDOW_PER_HEIGHT x the median box height,
             at least MIN_WINDOW and at most the frame's shorter side (rounded down to even)

WINDOW_PER_HEIGHT is a ratio of window to object size, not a pixel count, chosen on the dev videos of two
cameras that want opposite things (docs/results/travel.md, "The window"): UCSD Ped2 (median box height 31 px),
whose anomalies are objects of other kinds, and a synthetic scene whose anomalies look like everyone else and only
move otherwise (people 79 px tall). Of the ratios measured, 0.8 gave the learned term its best worst case over the
two (dev micro AUC 91.3 on Ped2, 94.1 on the synthetic scene); larger windows served Ped2 and failed the motion
scene, smaller ones the reverse. The resolved number is written into the run's config.yaml and the model's
config in model.pt, so evaluation, scoring, live scoring, calibration and export cut the same tubes as training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vadgpu.errors import VadgpuError

WINDOW_PER_HEIGHT = 0.8  # window side / median training box height
MIN_WINDOW = 16  # pixels: below this a tube holds too little around a small object


@dataclass(frozen=True)
class WindowChoice:
    """The window `auto` resolved to, and what it was measured on."""

    window: int
    median_height: float  # pixels
    boxes: int  # training boxes measured

    def describe(self) -> str:
        return (f"tube window auto: {self.window} px = {WINDOW_PER_HEIGHT:g} x the median height "
                f"{self.median_height:.1f} px of {self.boxes} training boxes")


def window_for_height(median_height: float, frame_hw: tuple[int, int]) -> int:
    """The rule of the module docstring: an even number of pixels in [MIN_WINDOW, the frame's shorter side]."""
    largest = min(frame_hw)
    largest -= largest % 2
    window = 2 * int(np.floor(WINDOW_PER_HEIGHT * median_height / 2 + 0.5))
    return int(min(max(window, MIN_WINDOW), largest))


def training_box_heights(path, videos, dataset: str | None = None) -> np.ndarray:
    """The height in pixels of every box (tracked or not) that the box cache at `path` holds for `videos`
    (PreparedVideo, matched by name in its train split)."""
    from vadgpu.objects.boxes import match_cache_videos, read_box_cache

    arrays = read_box_cache(path)
    index = match_cache_videos(arrays, path, videos, "train", dataset)
    mine = np.isin(arrays["video"], index)
    heights = arrays["video_height"][arrays["video"][mine]].astype(np.float64)
    return (arrays["y2"][mine] - arrays["y1"][mine]).astype(np.float64) * heights


def auto_window(path, videos, frame_hw: tuple[int, int], dataset: str | None = None) -> WindowChoice:
    """The window `auto` gives for the training boxes of `videos` in the box cache at `path` (module docstring);
    a cache without any training box is a VadgpuError that says how to get boxes or pick a window."""
    heights = training_box_heights(path, videos, dataset)
    if heights.size == 0:
        raise VadgpuError(f"tube window auto: the box cache {path} holds no box in the {len(videos)} training "
                          "video(s), so there is no object size to size the window from; make boxes with `vadgpu "
                          f"data boxes --dataset {dataset or 'NAME'} --root PATH --split both --out FILE` (another "
                          "--detector, or a lower --conf) and train with --boxes FILE, or give the window in pixels "
                          "with --window")
    median = float(np.median(heights))
    return WindowChoice(window_for_height(median, frame_hw), median, int(heights.size))
