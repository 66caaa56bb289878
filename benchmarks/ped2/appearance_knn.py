"""The terms of the shipped Ped2 detector alone and together, and what the size of its appearance bank costs.

    .venv/bin/python benchmarks/ped2/appearance_knn.py [--root ../shared/datasets/ped2] [--checkpoint ped2-ddl]
                     [--boxes FILE] [--sizes 512,1024,2048,4096,8192,0]
                     [--out benchmarks/results/ped2/appearance-knn.json]

One pass over the training videos and one over the test videos with the checkpoint's calibration record (the
shipped weights by default) keeps every box's appearance features (the record's backbone) and every test tube's
location z-score. Then, with vadgpu's own functions (frame = max over its boxes, a frame without a box takes its
video's lowest score, median 17, no per-video normalisation, as `vadgpu eval` scores object models):

    appearance alone   the appearance z of each box against every training box (no model: a no-learning reference)
    location alone     the tube model's location-normalised error (the learned term)
    bank N             location z + 1 x appearance z against a k-centre coreset of N training boxes (0: all of them),
                       the statistics taken as calibration takes them; the calibration record keeps MAX_BANK rows

Each row gives micro and macro AUC on all 12 test videos and on videos 01-06 (where a bank size is chosen).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vadgpu.evaluation.metrics import frame_metrics
from vadgpu.io import atomic_write_json
from vadgpu.objects.tubes import FrameBoxes
from vadgpu.scoring.appearance import AppearanceBank
from vadgpu.scoring.protocol import Protocol, apply_protocol
from vadgpu.scoring.tubes import TubeScorer, fill_frames_without_objects, frame_maxima

from script_errors import open_catalog, percent_aucs, run  # beside this script

DEV = ("01", "02", "03", "04", "05", "06")


def _pass(model, videos, boxes, split, location, features, dataset):
    from vadgpu.scoring.run import score_videos

    frame_boxes = FrameBoxes.load(boxes, videos, split=split, dataset=dataset)
    cfg = model.config
    scorer = TubeScorer(frame_boxes, cfg.window, cfg.size[0], "mse", 0.5, location, features=features)
    score_videos(model, videos, scorer, torch.device("cpu"), progress=False, desc=split)
    columns = {k: np.concatenate([getattr(r, k) for r in scorer.records]) for k in ("video", "frame", "score")}
    return columns, torch.cat(scorer.kept_features)


def _aucs(test, video, frame, values) -> dict:
    protocol = Protocol(norm="none")
    maxima = frame_maxima(video, frame, values, [v.num_frames for v in test])
    scores = {v.name: (np.asarray(v.labels), apply_protocol(fill_frames_without_objects(m)[0], protocol))
              for v, m in zip(test, maxima)}
    dev = {name: pair for name, pair in scores.items() if name in DEV}
    everything, first = percent_aucs(frame_metrics(scores)), percent_aucs(frame_metrics(dev))
    return {**everything, "dev_micro_auc": first["micro_auc"], "dev_macro_auc": first["macro_auc"]}


def main() -> None:
    from vadgpu.checkpoint import load_checkpoint
    from vadgpu.data.prepare import load_prepared
    from vadgpu.models.registry import model_from_checkpoint
    from vadgpu.objects.default_boxes import ensure_box_cache
    from vadgpu.scoring.calibration import stored_calibration

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="../shared/datasets/ped2")
    parser.add_argument("--checkpoint", default="ped2-ddl")
    parser.add_argument("--boxes", default=None)
    parser.add_argument("--sizes", default="512,1024,2048,4096,8192,0")
    parser.add_argument("--out", default="benchmarks/results/ped2/appearance-knn.json")
    args = parser.parse_args()
    dataset = open_catalog(parser, "ped2", args.root)
    ckpt = load_checkpoint(args.checkpoint)
    calibration = stored_calibration(ckpt, args.checkpoint)
    if calibration is None or calibration.appearance is None:
        parser.error(f"--checkpoint {args.checkpoint} has no appearance term in its calibration record")
    model = model_from_checkpoint(ckpt).eval()
    features = calibration.appearance.features
    prepared = load_prepared(dataset, "cpu", progress=False)
    train, test = list(prepared.train), list(prepared.test)
    boxes = args.boxes or ensure_box_cache(dataset, {"train": train, "test": test})
    trained, train_features = _pass(model, train, boxes, "train", None, features, dataset.name)
    tested, test_features = _pass(model, test, boxes, "test", calibration.location, features, dataset.name)
    train_video = torch.from_numpy(trained["video"])
    rows = {"location alone": _aucs(test, tested["video"], tested["frame"], tested["score"])}
    full = AppearanceBank.fit(train_features, train_video, max_rows=len(train_features))
    looks = full.score(test_features).double().numpy()
    rows["appearance alone"] = _aucs(test, tested["video"], tested["frame"], looks)
    for size in (int(s) for s in args.sizes.split(",")):
        rows_kept = size or len(train_features)
        bank = full if rows_kept >= len(train_features) else AppearanceBank.fit(train_features, train_video,
                                                                                max_rows=rows_kept)
        combined = tested["score"] + bank.score(test_features).double().numpy()
        rows[f"bank {rows_kept}"] = {**_aucs(test, tested["video"], tested["frame"], combined),
                                     "bank_mib": round(bank.features.numel() * 2 / 2**20, 1)}
    # the top level is the no-learning reference (appearance alone), as the results index reads it
    result = {"score": "z-scored log cosine distance of each box's pooled detector features to the nearest training "
                       "box, max over the frame's boxes, median 17, no per-video normalisation",
              **rows["appearance alone"], "checkpoint": str(args.checkpoint), "boxes": Path(boxes).name,
              "training_boxes": len(train_features), "features": features.describe(), "terms": rows}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    run(main)
