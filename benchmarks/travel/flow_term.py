"""Would an optical-flow term earn its place? The flow inside each box, as a histogram of its directions, scored
against the training boxes', beside the detector's terms.

    .venv/bin/python benchmarks/travel/flow_term.py --dataset NAME --root DIR --tubes RUN/terms-tubes.npz
                     [--boxes FILE] [--dev 01,02,...] [--preset medium] [--flow-height 31] [--unit median]
                     [--bins 8] [--neighbours 1] [--out FILE.json] [--keep FILE.npz]

A measurement, not part of the detector yet. Every frame of the box cache's videos (train and test) gets dense
optical flow (OpenCV DIS on grayscale, `--preset`) from the frame back to the one before, negated: the motion of
each pixel of the frame itself, where its boxes are, from past frames only (as a live stream has them); the first
frame of a video takes its flow to the next frame instead. DIS works in pixels (fixed patch sizes, a coarsest
scale), so the frames are first resized so that the training boxes' median height is `--flow-height` pixels
(Ped2's 31 by default): every camera's objects reach the flow at the same size, and the cost per frame is bounded.
At that size `medium` (finest flow at half the resolution) measured 93.12 / 95.03 micro / macro on Ped2's dev
videos with the flow term alone, `fast` (a quarter) 86.65 / 82.12 for a third of the time (59 s against 178 s
for Ped2's 4,560 frames on a shared 2-core CPU).

A box's feature is the histogram of the flow directions inside it (`--bins` sectors, the first centred on the
image's x axis), each pixel weighted by its flow magnitude, divided by the box's pixel count, so the bins add up to
the box's mean speed. Magnitudes are in units of the training boxes' median height per frame (`--unit median`), or
of the box's own height (`--unit box`); either reads the same at any frame size. Its flow distance is the mean
Euclidean distance to its `--neighbours` nearest training boxes' features (1: the appearance term's k); training
boxes are measured against the other training videos (leave one video out), and the log distances are z-scored
with those statistics, as the appearance term is (motion_term.py `NearestTraining`). A tube whose box is not in the
box cache scores 0 (no evidence). The tube and appearance z-scores of every test tube come from
benchmarks/travel/terms.py (`--tubes`, matched by test video, frame and box); each combination is scored as
`vadgpu eval` scores object models (frame = max over its tubes, median 17), micro and macro AUC on all test videos
and on the `--dev` ones.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ped2"))
sys.path.insert(0, str(HERE))

from motion_term import (NearestTraining, load_tubes, print_terms, term_combinations, term_parser,  # noqa: E402
                         tube_rows)
from script_errors import open_catalog, run  # noqa: E402  (benchmarks/ped2)
from terms import aucs  # noqa: E402  (beside this script)

PRESETS = ("ultrafast", "fast", "medium")
UNITS = ("median", "box")
FLOW_HEIGHT = 31.0  # pixels: Ped2's training boxes' median height, where the presets were timed


def box_histograms(motion: np.ndarray, boxes: np.ndarray, bins: int, unit: np.ndarray) -> np.ndarray:
    """(N, bins): each box's flow-direction histogram, weighted by magnitude in `unit` (N,) pixels per frame,
    divided by its pixel count. `motion` (H, W, 2): the frame's flow in pixels per frame; `boxes` (N, 4)
    normalised xyxy."""
    import cv2

    height, width = motion.shape[:2]
    magnitude, angle = cv2.cartToPolar(motion[..., 0], motion[..., 1], angleInDegrees=True)
    sector = 360.0 / bins
    direction = (((angle + sector / 2) // sector).astype(np.int64)) % bins
    out = np.zeros((len(boxes), bins))
    for n, (x1, y1, x2, y2) in enumerate(boxes):
        left = min(max(int(np.floor(x1 * width)), 0), width - 1)
        top = min(max(int(np.floor(y1 * height)), 0), height - 1)
        right = max(int(np.ceil(x2 * width)), left + 1)
        bottom = max(int(np.ceil(y2 * height)), top + 1)
        where = direction[top:bottom, left:right].ravel()
        weights = magnitude[top:bottom, left:right].ravel()
        out[n] = np.bincount(where, weights=weights, minlength=bins) / (where.size * unit[n])
    return out


@dataclass
class FlowFeatures:
    """How a box's flow feature is made: the DIS preset, the scale frames are resized by before the flow (so that
    the training boxes' median height is `flow_height` pixels), the direction sectors and the magnitude unit."""

    preset: str
    scale: float
    bins: int
    unit: str  # "median": the training boxes' median height; "box": the box's own height
    flow_height: float

    def of_video(self, video, index: int, arrays: dict, features: np.ndarray) -> int:
        """Fill `features` for the boxes of cache video `index` (a catalog Video) from its frames; returns the
        frames read. A frame whose size is not the cache's, or a video shorter than its boxes say, is an error
        naming it."""
        import cv2

        from vadgpu.errors import VadgpuError
        from vadgpu.objects.frames import iter_frames

        flow = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{self.preset.upper()}"))
        size = (int(arrays["video_height"][index]), int(arrays["video_width"][index]))
        working = (max(round(size[1] * self.scale), 8), max(round(size[0] * self.scale), 8))
        interpolation = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        by_frame: dict[int, list[int]] = {}
        for i in np.flatnonzero(arrays["video"] == index):
            by_frame.setdefault(int(arrays["frame"][i]), []).append(int(i))

        def describe(frame: int, motion: np.ndarray) -> None:
            rows = np.array(by_frame[frame])
            boxes = np.stack([arrays[k][rows] for k in ("x1", "y1", "x2", "y2")], axis=1).astype(np.float64)
            unit = (np.full(len(rows), self.flow_height) if self.unit == "median" else
                    np.maximum((boxes[:, 3] - boxes[:, 1]) * working[1], 1.0))
            features[rows] = box_histograms(motion, boxes, self.bins, unit)

        first = previous = None
        count = 0
        for count, bgr in enumerate(iter_frames(video), start=1):
            t = count - 1
            if bgr.shape[:2] != size:
                where = video.frame_files[t] if video.is_folder else video.path
                raise VadgpuError(f"{where}: frame {t} is {bgr.shape[1]}x{bgr.shape[0]}, the box cache says "
                                  f"{size[1]}x{size[0]}")
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            if working != (size[1], size[0]):
                gray = cv2.resize(gray, working, interpolation=interpolation)
            if t == 0:
                first = gray
            else:
                if t == 1 and 0 in by_frame:  # the first frame: its motion towards the next one
                    describe(0, flow.calc(first, gray, None))
                if t in by_frame:  # the motion that brought each pixel of this frame where it is
                    describe(t, -flow.calc(gray, previous, None))
            previous = gray
        if count == 1 and 0 in by_frame:  # a one-frame video: no motion to measure
            features[np.array(by_frame[0])] = 0.0
        if by_frame and max(by_frame) >= count:
            raise VadgpuError(f"{video.path}: {count} frames decoded, the box cache has boxes in frame "
                              f"{max(by_frame)}")
        return count

    def of_cache(self, arrays: dict, videos: dict) -> tuple[np.ndarray, int]:
        """(B, bins) feature of every box of a box cache whose video is in `videos` ({cache index: Video}; NaN
        for the others), and the frames read."""
        features = np.full((len(arrays["video"]), self.bins), np.nan)
        frames = sum(self.of_video(video, index, arrays, features) for index, video in videos.items())
        return features, frames


def main() -> None:
    from vadgpu.data.prepare import load_prepared
    from vadgpu.io import atomic_write_json
    from vadgpu.objects.boxes import match_cache_videos, read_box_cache
    from vadgpu.objects.default_boxes import ensure_box_cache
    from vadgpu.objects.window import training_box_heights

    parser = term_parser(__doc__)
    parser.add_argument("--bins", type=int, default=8, help="flow direction sectors (default 8)")
    parser.add_argument("--neighbours", type=int, default=1, help="training boxes averaged over (default 1)")
    parser.add_argument("--preset", choices=PRESETS, default="medium", help="DIS optical flow preset (default "
                        "medium)")
    parser.add_argument("--flow-height", type=float, default=FLOW_HEIGHT, help="frames are resized so that the "
                        f"training boxes' median height is this many pixels before the flow (default {FLOW_HEIGHT:g})")
    parser.add_argument("--unit", choices=UNITS, default="median", help="flow magnitudes in the training boxes' "
                        "median height (default) or in each box's own height")
    parser.add_argument("--out", default=None)
    parser.add_argument("--keep", default=None, help="also write each test tube's flow z-score here (.npz, in the "
                        "order of --tubes), for benchmarks/travel/combine.py --flow")
    args = parser.parse_args()
    if args.bins < 2:
        parser.error(f"--bins {args.bins}: need at least 2 direction sectors")
    if args.neighbours < 1:
        parser.error(f"--neighbours {args.neighbours}: need at least 1")
    if not args.flow_height >= 4:
        parser.error(f"--flow-height {args.flow_height}: need at least 4 pixels")
    dataset = open_catalog(parser, args.dataset, args.root)
    prepared = load_prepared(dataset, "cpu", progress=False)
    train, test = list(prepared.train), list(prepared.test)
    path = args.boxes or ensure_box_cache(dataset, {"train": train, "test": test})
    arrays = read_box_cache(path)
    tubes = load_tubes(args.tubes)
    rows = tube_rows(arrays, tubes)  # before the flow: tubes of another dataset stop here
    train_ids = match_cache_videos(arrays, path, train, "train", dataset.name)
    test_ids = match_cache_videos(arrays, path, test, "test", dataset.name)
    videos = {int(i): v.video for i, v in zip([*train_ids, *test_ids], [*train, *test])}
    median = float(np.median(training_box_heights(path, train, dataset.name)))
    make = FlowFeatures(args.preset, args.flow_height / median, args.bins, args.unit, args.flow_height)
    started = time.perf_counter()
    features, frames = make.of_cache(arrays, videos)
    seconds = time.perf_counter() - started

    in_train = np.isin(arrays["video"], train_ids)
    nearest = NearestTraining(features[in_train], arrays["video"][in_train], args.neighbours)
    flow = np.zeros(len(rows))
    known = rows >= 0
    flow[known] = nearest(features[rows[known]])
    dev = [name for name in args.dev.split(",") if name]
    combos = term_combinations(tubes, "flow", flow)
    result = {"tubes": str(args.tubes), "dataset": dataset.name, "boxes": Path(path).name, "preset": args.preset,
              "median_box_height": round(median, 2), "scale": round(make.scale, 4), "flow_height": args.flow_height,
              "unit": args.unit, "bins": args.bins, "neighbours": args.neighbours,
              "tubes_with_flow": float(known.mean()), "training_boxes": int(in_train.sum()), "frames": frames,
              "flow_seconds": round(seconds, 1), "dev": dev,
              "terms": {name: aucs(test, tubes["video"], tubes["frame"], values, dev)
                        for name, values in combos.items()}}
    if args.out:
        atomic_write_json(args.out, result)
    if args.keep:
        np.savez(args.keep, flow=flow, tubes=Path(args.tubes).name)
    print_terms(result["terms"])
    print(f"tubes with a box in the cache: {known.mean():.1%} of {len(rows)}; training boxes: {in_train.sum()}; "
          f"flow and features: {frames} frames in {seconds:.0f} s")


if __name__ == "__main__":
    run(main)
