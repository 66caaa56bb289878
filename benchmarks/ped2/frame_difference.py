"""A reference point for the Ped2 table that learns nothing: score each frame by how much it differs from the last.

    .venv/bin/python benchmarks/ped2/frame_difference.py [--root ../shared/datasets/ped2] [--size 64]
                     [--out benchmarks/results/ped2/frame-difference.json]

Each test frame is read in gray, resized to SIZE x SIZE (OpenCV, area interpolation), and its error map is the
squared difference to the previous frame (the first frame takes the second's map). The score, smoothing and
normalisation are `vadgpu eval`'s defaults (patch-max with the same patch size, median over 17 frames, min-max per
video), computed by vadgpu's own functions, so the numbers sit beside the trained models' on equal terms. Ped2's
anomalies (bicycles, carts, skaters) move faster than its pedestrians, which is all this score sees.
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from vadgpu.evaluation.protocol import Protocol, apply_protocol
from vadgpu.evaluation.scores import patch_max, patch_size_for
from vadgpu.io import atomic_write_json
from vadgpu.pipelines.catalog import open_dataset


def difference_scores(frame_files, size: int) -> np.ndarray:
    frames = np.stack([cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_AREA)
                       for f in frame_files]).astype(np.float32) / 255  # (F, S, S)
    errors = np.diff(frames, axis=0, prepend=frames[1:2]) ** 2  # frame 0 is compared with frame 1
    return patch_max(torch.from_numpy(errors)[:, None]).numpy()  # (F,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="../shared/datasets/ped2")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/ped2/frame-difference.json")
    args = parser.parse_args()
    dataset = open_dataset("ped2", args.root)
    protocol = Protocol()
    scores, labels, per_video = [], [], {}
    for video in dataset.test:
        s = apply_protocol(difference_scores(video.frame_files, args.size), protocol)
        scores.append(s)
        labels.append(video.labels)
        both = 0 < video.labels.sum() < len(video.labels)
        per_video[video.name] = round(100 * roc_auc_score(video.labels, s), 2) if both else None
    aucs = [v for v in per_video.values() if v is not None]
    result = {
        "score": f"squared difference to the previous frame, patch-max ({patch_size_for(args.size, args.size)}px "
                 f"patches), median 17, min-max per video",
        "size": args.size,
        "micro_auc": round(100 * roc_auc_score(np.concatenate(labels), np.concatenate(scores)), 2),
        "macro_auc": round(sum(aucs) / len(aucs), 2),
        "per_video_auc": per_video,
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
