"""A Ped2 reference that trains nothing on Ped2: how unlike every training object each test object looks.

    .venv/bin/python benchmarks/ped2/appearance_knn.py [--root ../shared/datasets/ped2] [--boxes FILE]
                     [--weights ../shared/models/yolov3-tiny/yolov3-tiny.weights]
                     [--out benchmarks/results/ped2/appearance-knn.json]

Every box of the box cache (default: the dataset's background-subtraction cache of both splits, as `vadgpu train`
uses in object mode) gets the pooled features of a pretrained COCO detector (objects/appearance.py); a test box's
score is the z-scored log distance to its nearest training box (scoring/appearance.py), exactly the term
`vadgpu eval --appearance` adds to an object model's tube scores, here alone. The frame's score is the max over
its boxes (a frame without a box takes its video's lowest score), then median 17 and no per-video normalisation,
as `vadgpu eval` scores object models, with vadgpu's own functions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vadgpu.evaluation.metrics import frame_metrics
from vadgpu.scoring.tubes import fill_frames_without_objects
from vadgpu.scoring.protocol import Protocol, apply_protocol
from vadgpu.scoring.appearance import appearance_scores
from vadgpu.io import atomic_write_json
from vadgpu.objects.tubes import FrameBoxes

from script_errors import open_ped2, percent_aucs, run  # beside this script


def main() -> None:
    from vadgpu.data.prepare import load_prepared
    from vadgpu.objects.default_boxes import ensure_box_cache

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="../shared/datasets/ped2")
    parser.add_argument("--boxes", default=None)
    parser.add_argument("--weights", default="../shared/models/yolov3-tiny/yolov3-tiny.weights")
    parser.add_argument("--out", default="benchmarks/results/ped2/appearance-knn.json")
    args = parser.parse_args()
    dataset = open_ped2(parser, args.root)
    prepared = load_prepared(dataset, "cpu", progress=False)
    train, test = list(prepared.train), list(prepared.test)
    path = args.boxes or ensure_box_cache(dataset, {"train": train, "test": test})
    boxes = FrameBoxes.load(path, test, split="test", dataset=dataset.name)
    looks, record = appearance_scores(args.weights, path, train, test, boxes, dataset)
    protocol = Protocol(norm="none")
    per_video = {}
    for index, video in enumerate(test):
        owner, rows = boxes.select_rows(np.full(video.num_frames, index), np.arange(video.num_frames))
        raw = np.full(video.num_frames, -np.inf)
        np.maximum.at(raw, owner, looks[rows].astype(np.float64))
        per_video[video.name] = (np.asarray(video.labels), apply_protocol(fill_frames_without_objects(raw)[0],
                                                                         protocol))
    metrics = frame_metrics(per_video)
    result = {
        "score": "z-scored log cosine distance of each box's pooled detector features to the nearest training box, "
                 "max over the frame's boxes, median 17, no per-video normalisation",
        "boxes": Path(path).name,
        "appearance": {k: v for k, v in record.items() if k in ("features", "neighbours", "train_log_distance")},
        **percent_aucs(metrics),
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    run(main)
