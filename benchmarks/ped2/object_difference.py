"""A per-object reference for the Ped2 table that learns nothing: how much each detected object moved.

    .venv/bin/python benchmarks/ped2/object_difference.py [--dataset ped2] [--root ../shared/datasets/ped2]
                     [--boxes FILE] [--out benchmarks/results/ped2/object-difference.json]

Each test frame (a frame folder or a video file) is read in gray at its own resolution; for every box of the frame
in the box cache (default: the dataset's background-subtraction cache of both splits, made when missing, as `vadgpu
train` does in object mode) the score is the sum of the squared difference to the previous frame inside the box (the
first frame is compared with the second), and the frame's score is the max over its boxes (a frame without a box
takes its video's lowest score, as in object mode). Smoothing, normalisation and metrics are `vadgpu eval`'s
defaults (median 17, min-max per video), computed by vadgpu's own functions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from vadgpu.evaluation.metrics import frame_metrics
from vadgpu.scoring.tubes import fill_frames_without_objects
from vadgpu.scoring.protocol import Protocol, apply_protocol
from vadgpu.io import atomic_write_json
from vadgpu.objects.tubes import FrameBoxes

from script_errors import open_catalog, percent_aucs, run  # beside this script


def object_motion_scores(source, boxes: FrameBoxes, video: int) -> np.ndarray:
    """Frame scores of test `Video` `source` (a frame folder or a video file), the `video`-th of the box table."""
    from vadgpu.objects.frames import iter_frames

    frames = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in iter_frames(source)]).astype(np.float32) / 255
    motion = np.diff(frames, axis=0, prepend=frames[1:2]) ** 2  # (F, H, W); frame 0 is compared with frame 1
    height, width = frames.shape[1:]
    raw = np.full(len(frames), -np.inf)
    owner, picked = boxes.select(np.full(len(frames), video), np.arange(len(frames)))
    for frame, (x1, y1, x2, y2) in zip(owner, picked * [width, height, width, height]):
        x1, y1 = int(np.floor(x1)), int(np.floor(y1))
        x2, y2 = max(int(np.ceil(x2)), x1 + 1), max(int(np.ceil(y2)), y1 + 1)
        raw[frame] = max(raw[frame], float(motion[frame, y1:y2, x1:x2].sum()))
    return fill_frames_without_objects(raw)[0]


def main() -> None:
    from vadgpu.data.prepare import load_prepared
    from vadgpu.objects.default_boxes import ensure_box_cache

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ped2", help="catalog name of the dataset (default: ped2)")
    parser.add_argument("--root", default="../shared/datasets/ped2")
    parser.add_argument("--boxes", default=None)
    parser.add_argument("--out", default="benchmarks/results/ped2/object-difference.json")
    args = parser.parse_args()
    dataset = open_catalog(parser, args.dataset, args.root)
    prepared = load_prepared(dataset, "cpu", progress=False)
    path = args.boxes or ensure_box_cache(dataset, {"train": list(prepared.train), "test": list(prepared.test)})
    boxes = FrameBoxes.load(path, list(prepared.test), split="test", dataset=dataset.name)
    protocol = Protocol()
    metrics = frame_metrics({
        video.name: (video.labels, apply_protocol(object_motion_scores(video, boxes, i), protocol))
        for i, video in enumerate(dataset.test)
    })
    result = {
        "score": "sum of the squared difference to the previous frame inside each box at native resolution, max "
                 "over the frame's boxes, median 17, min-max per video",
        "boxes": Path(path).name,
        **percent_aucs(metrics),
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    run(main)
