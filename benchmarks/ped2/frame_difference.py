"""A reference point for the Ped2 table that learns nothing: score each frame by how much it differs from the last.

    .venv/bin/python benchmarks/ped2/frame_difference.py [--dataset ped2] [--root ../shared/datasets/ped2] [--size 64]
                     [--out benchmarks/results/ped2/frame-difference.json]

Each test frame is read in gray, resized to SIZE x SIZE (OpenCV, area interpolation), and its error map is the
squared difference to the previous frame (the first frame takes the second's map). The score, smoothing and
normalisation are `vadgpu eval`'s defaults (patch-max with the same patch size, median over 17 frames, min-max per
video) and the metrics are computed by vadgpu's own functions, so the numbers sit beside the trained models' on
equal terms. Ped2's anomalies (bicycles, carts, skaters) move faster than its pedestrians, which is all this score
sees.
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import torch

from vadgpu.evaluation.metrics import frame_metrics
from vadgpu.scoring.protocol import Protocol, apply_protocol
from vadgpu.scoring.kinds import patch_max, patch_size_for
from vadgpu.io import atomic_write_json

from script_errors import open_catalog, run  # beside this script


def difference_scores(video, size: int) -> np.ndarray:
    """Frame scores of a test `Video` (a frame folder or a video file)."""
    from vadgpu.objects.frames import iter_frames

    frames = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (size, size), interpolation=cv2.INTER_AREA)
                       for f in iter_frames(video)]).astype(np.float32) / 255  # (F, S, S)
    errors = np.diff(frames, axis=0, prepend=frames[1:2]) ** 2  # frame 0 is compared with frame 1
    return patch_max(torch.from_numpy(errors)[:, None]).numpy()  # (F,)


def percent(auc: float | None) -> float | None:
    return None if auc is None else round(100 * auc, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ped2", help="catalog name of the dataset (default: ped2)")
    parser.add_argument("--root", default="../shared/datasets/ped2")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/ped2/frame-difference.json")
    args = parser.parse_args()
    dataset = open_catalog(parser, args.dataset, args.root)
    protocol = Protocol()
    metrics = frame_metrics({
        video.name: (video.labels, apply_protocol(difference_scores(video, args.size), protocol))
        for video in dataset.test
    })
    result = {
        "score": f"squared difference to the previous frame, patch-max ({patch_size_for(args.size, args.size)}px "
                 f"patches), median 17, min-max per video",
        "size": args.size,
        "micro_auc": percent(metrics.micro_auc),
        "macro_auc": percent(metrics.macro_auc),
        "per_video_auc": {name: percent(auc) for name, auc in metrics.per_video_auc.items()},
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    run(main)
