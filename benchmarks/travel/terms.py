"""Each term of an object model's detector alone and combined, on any dataset: what every score of the detector
earns there.

    .venv/bin/python benchmarks/travel/terms.py --checkpoint RUN/model.pt --dataset NAME --root DIR
                     [--appearance YOLO.weights] [--dev 01,02,...] [--boxes FILE] [--out FILE.json]

One calibration pass over the dataset's training videos (scoring/calibration.py `calibrate`, as `vadgpu calibrate`
and `vadgpu eval` fit the record: the location statistics of the tube errors, and with an appearance network the
bank of training boxes' features) and one scoring pass over its test videos keep, for every test tube, its
location z-score (the learned term) and its appearance z-score. The appearance network is `--appearance`'s, else
the checkpoint record's. Then, with vadgpu's own functions (frame = max over its tubes, a frame without a box
takes its video's lowest score, median 17, no per-video normalisation: how `vadgpu eval` scores object models):

    tube term alone         the location z of the tube's error (the trained model)
    appearance term alone   the appearance z of each box against the training boxes (no learning)
    sum                     tube z + appearance z (the detector's combination, each z standardised on the
                            training videos)
    max                     the larger of the two z-scores

Each row gives micro and macro AUC on all test videos and on the `--dev` videos (those a recipe may be chosen on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ped2"))

from script_errors import open_catalog, percent_aucs, run  # noqa: E402  (benchmarks/ped2)


def aucs(test, video, frame, values, dev) -> dict:
    """micro/macro AUC (percent) of tube values turned into frame scores as `vadgpu eval` does, on all test
    videos and on the `dev` ones."""
    from vadgpu.evaluation.metrics import frame_metrics
    from vadgpu.scoring.protocol import Protocol, apply_protocol
    from vadgpu.scoring.tubes import fill_frames_without_objects, frame_maxima

    protocol = Protocol(norm="none")
    maxima = frame_maxima(video, frame, values, [v.num_frames for v in test])
    scores = {v.name: (np.asarray(v.labels), apply_protocol(fill_frames_without_objects(m)[0], protocol))
              for v, m in zip(test, maxima)}
    everything = percent_aucs(frame_metrics(scores))
    chosen = {name: pair for name, pair in scores.items() if name in dev}
    if chosen:
        first = percent_aucs(frame_metrics(chosen))
        everything.update(dev_micro_auc=first["micro_auc"], dev_macro_auc=first["macro_auc"])
    return everything


def main() -> None:
    from vadgpu.checkpoint import load_checkpoint
    from vadgpu.data.prepare import load_prepared
    from vadgpu.io import atomic_write_json
    from vadgpu.models.registry import model_from_checkpoint
    from vadgpu.objects.appearance import BoxFeatures
    from vadgpu.objects.default_boxes import ensure_box_cache
    from vadgpu.objects.tubes import FrameBoxes
    from vadgpu.scoring.calibration import calibrate, stored_calibration
    from vadgpu.scoring.kinds import MIX_WEIGHT, OBJECT_SCORE
    from vadgpu.scoring.run import score_videos
    from vadgpu.scoring.tubes import TubeScorer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="an object model's weights file, or shipped weights")
    parser.add_argument("--dataset", default="ped2")
    parser.add_argument("--root", required=True)
    parser.add_argument("--appearance", default=None, help="Darknet weights (default: the checkpoint record's)")
    parser.add_argument("--dev", default="", help="comma-separated test videos a recipe may be chosen on")
    parser.add_argument("--boxes", default=None)
    parser.add_argument("--out", default=None, help="JSON record (default: print only)")
    parser.add_argument("--tubes", default=None, help="also write every test tube's video, frame, box and term "
                        "z-scores here (.npz), for trying other combinations without another pass (default: "
                        "terms-tubes.npz in the run folder of a RUN/model.pt)")
    args = parser.parse_args()
    dataset = open_catalog(parser, args.dataset, args.root)
    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt).eval()
    if model.config.clips != "objects":
        parser.error(f"--checkpoint {args.checkpoint}: a frame model; the terms are an object model's")
    if args.appearance:
        features = BoxFeatures.from_darknet(args.appearance)
    else:
        stored = stored_calibration(ckpt, args.checkpoint)
        if stored is None or stored.appearance is None:
            parser.error(f"--checkpoint {args.checkpoint} has no appearance term: give --appearance WEIGHTS")
        features = stored.appearance.features
    device = torch.device("cpu")
    prepared = load_prepared(dataset, device, progress=False)
    train, test = list(prepared.train), list(prepared.test)
    boxes = args.boxes or ensure_box_cache(dataset, {"train": train, "test": test})
    calibration = calibrate(model, train, boxes, dataset=dataset.name, device=device, features=features,
                            progress=False)
    cfg = model.config
    scorer = TubeScorer(FrameBoxes.load(boxes, test, split="test", dataset=dataset.name), cfg.window, cfg.size[0],
                        OBJECT_SCORE, MIX_WEIGHT, calibration.location, features=features)
    score_videos(model, test, scorer, device, progress=False, desc="test")
    video, frame, tube = (np.concatenate([getattr(r, k) for r in scorer.records]) for k in ("video", "frame", "score"))
    looks = calibration.appearance.bank.score(torch.cat(scorer.kept_features)).double().numpy()
    looks = np.where(np.isfinite(looks), looks, 0.0)
    if args.tubes is None and Path(args.checkpoint).name == "model.pt":
        args.tubes = Path(args.checkpoint).parent / "terms-tubes.npz"
    if args.tubes:
        boxes_kept = np.concatenate([r.boxes for r in scorer.records])
        names = np.array([v.name for v in test])
        np.savez(args.tubes, video=video, frame=frame, boxes=boxes_kept, tube=tube, looks=looks, names=names)
    dev = [name for name in args.dev.split(",") if name]
    rows = {"tube term alone": aucs(test, video, frame, tube, dev),
            "appearance term alone": aucs(test, video, frame, looks, dev),
            "sum": aucs(test, video, frame, tube + looks, dev),
            "max": aucs(test, video, frame, np.maximum(tube, looks), dev)}
    result = {"checkpoint": str(args.checkpoint), "dataset": dataset.name, "root": str(args.root),
              "window": cfg.window, "grid": list(calibration.location.grid), "boxes": Path(boxes).name,
              "features": features.describe(), "test_tubes": int(tube.size), "dev": dev, "terms": rows}
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    run(main)
