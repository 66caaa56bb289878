"""Would a motion term earn its place? Each tracked box's velocity, scored against the training boxes', beside the
detector's terms.

    .venv/bin/python benchmarks/travel/motion_term.py --dataset NAME --root DIR --tubes RUN/terms-tubes.npz
                     [--boxes FILE] [--dev 01,02,...] [--lag 4] [--neighbours 5] [--out FILE.json]

A measurement, not part of the detector yet. The velocity of a box is how far its track's centre moved over the
last `--lag` frames (fewer at the start of a track), per frame, in units of the box's height: (dx / h, dy / h), so
that it reads the same on a camera that sees people larger or smaller. Only past frames are used, as a live
stream has them. A box's motion distance is the mean Euclidean distance to its `--neighbours` nearest training
boxes in that plane; training boxes are measured against the other training videos (leave one video out), and the
log distances are z-scored with those statistics, as the appearance term is. A box without a track, or the first
frame of one, scores 0 (no evidence). The tube and appearance z-scores of every test tube come from
benchmarks/travel/terms.py (`--tubes`); each combination is scored as `vadgpu eval` scores object models (frame =
max over its tubes, median 17), micro and macro AUC on all test videos and on the `--dev` ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ped2"))
sys.path.insert(0, str(HERE))

from script_errors import open_catalog, run  # noqa: E402  (benchmarks/ped2)
from terms import aucs  # noqa: E402  (beside this script)


def velocities(arrays: dict, lag: int) -> np.ndarray:
    """(B, 2) velocity of every box of a box cache, per frame in box heights (NaN: untracked or a track's first
    frame)."""
    heights = arrays["video_height"][arrays["video"]].astype(np.float64)
    widths = arrays["video_width"][arrays["video"]].astype(np.float64)
    cx = (arrays["x1"] + arrays["x2"]) / 2 * widths
    cy = (arrays["y1"] + arrays["y2"]) / 2 * heights
    h = np.maximum((arrays["y2"] - arrays["y1"]) * heights, 1.0)
    out = np.full((len(cx), 2), np.nan)
    where = {(int(v), int(t), int(f)): i for i, (v, t, f) in
             enumerate(zip(arrays["video"], arrays["track"], arrays["frame"])) if t >= 0}
    for (video, track, frame), i in where.items():
        for back in range(lag, 0, -1):
            j = where.get((video, track, frame - back))
            if j is not None:
                out[i] = ((cx[i] - cx[j]) / back / h[i], (cy[i] - cy[j]) / back / h[i])
                break
    return out


def mean_distance(tree_points: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(tree_points))
    distances, _ = NearestNeighbors(n_neighbors=k).fit(tree_points).kneighbors(queries)
    return distances.mean(axis=1)


def cache_ids(arrays: dict) -> dict:
    """{(split, video name): the box cache's index of that video}."""
    names, splits = list(arrays["video_names"]), list(arrays["video_splits"])
    return {(splits[i], names[i]): i for i in range(len(names))}


class NearestTraining:
    """A box feature's distance to its `k` nearest training boxes (Euclidean, mean over the k), on a log scale, as
    a z-score against the training boxes' own distances, each to the training boxes of the other videos (leave one
    video out), as the appearance term scores."""

    def __init__(self, points: np.ndarray, owner: np.ndarray, k: int):
        self.points, self.k = points, k
        held_out = np.empty(len(points))
        for video in np.unique(owner):
            mine = owner == video
            held_out[mine] = mean_distance(points[~mine], points[mine], k)
        logs = np.log(held_out + 1e-6)
        self.mean, self.std = logs.mean(), max(logs.std(), 1e-6)

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        return (np.log(mean_distance(self.points, queries, self.k) + 1e-6) - self.mean) / self.std


TUBE_KEYS = ("video", "frame", "boxes", "tube", "looks", "names")


def load_tubes(path: str) -> dict:
    """terms.py's per-tube file (RUN/terms-tubes.npz) as arrays; a missing, unreadable or incomplete file is a
    VadgpuError naming it."""
    from vadgpu.errors import VadgpuError

    try:
        with np.load(path, allow_pickle=False) as data:
            tubes = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise VadgpuError(f"--tubes {path}: not a readable .npz file ({exc})") from exc
    missing = [key for key in TUBE_KEYS if key not in tubes]
    if missing:
        raise VadgpuError(f"--tubes {path}: no {', '.join(missing)} array(s); terms.py writes this file")
    tubes["path"] = str(path)
    return tubes


def tube_rows(arrays: dict, tubes: dict) -> np.ndarray:
    """The box cache row of every tube of terms.py's per-tube file (`load_tubes`: same test video, frame and box),
    -1 where none. A test video the box cache does not hold is a VadgpuError."""
    from vadgpu.errors import VadgpuError

    ids = cache_ids(arrays)
    unknown = [str(n) for n in tubes["names"] if ("test", str(n)) not in ids]
    if unknown:
        raise VadgpuError(f"--tubes {tubes['path']}: test video(s) {', '.join(unknown[:5])} are not in this "
                          "dataset's box cache: give the --dataset and --root the tubes were scored on")
    test_ids = np.array([ids[("test", str(n))] for n in tubes["names"]])
    corners = np.round(np.stack([arrays[k] for k in ("x1", "y1", "x2", "y2")], axis=1).astype(np.float64), 4)
    row_of = {(int(v), int(f), *map(float, c)): i for i, (v, f, c) in
              enumerate(zip(arrays["video"], arrays["frame"], corners))}
    boxes = np.round(np.asarray(tubes["boxes"], dtype=np.float64), 4)
    return np.array([row_of.get((int(test_ids[v]), int(f), *map(float, b)), -1)
                     for v, f, b in zip(tubes["video"], tubes["frame"], boxes)])


def term_combinations(tubes, name: str, values: np.ndarray) -> dict:
    """The detector's two terms alone and together, the new term alone and with each of them: {label: values}."""
    tube, looks = tubes["tube"], tubes["looks"]
    return {"tube": tube, "appearance": looks, name: values, "tube + appearance": tube + looks,
            f"tube + {name}": tube + values, f"appearance + {name}": looks + values,
            f"tube + appearance + {name}": tube + looks + values}


def print_terms(terms: dict) -> None:
    for name, row in terms.items():
        print(f"{name}: {row['micro_auc']} / {row['macro_auc']}  dev {row.get('dev_micro_auc')} / "
              f"{row.get('dev_macro_auc')}")


def term_parser(description: str, boxes: bool = True) -> argparse.ArgumentParser:
    """The options every measurement of a term over terms.py's per-tube file shares: the dataset, its root, the
    per-tube file, the box cache (with `boxes`) and the dev videos."""
    parser = argparse.ArgumentParser(description=description.split("\n")[0])
    parser.add_argument("--dataset", default="ped2")
    parser.add_argument("--root", required=True)
    parser.add_argument("--tubes", required=True, help="terms.py's per-tube file (RUN/terms-tubes.npz)")
    if boxes:
        parser.add_argument("--boxes", default=None)
    parser.add_argument("--dev", default="", help="comma-separated test videos a recipe may be chosen on")
    return parser


def main() -> None:
    from vadgpu.data.prepare import load_prepared
    from vadgpu.io import atomic_write_json
    from vadgpu.objects.boxes import read_box_cache
    from vadgpu.objects.default_boxes import ensure_box_cache

    parser = term_parser(__doc__)
    parser.add_argument("--lag", type=int, default=4)
    parser.add_argument("--neighbours", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    dataset = open_catalog(parser, args.dataset, args.root)
    prepared = load_prepared(dataset, "cpu", progress=False)
    train, test = list(prepared.train), list(prepared.test)
    path = args.boxes or ensure_box_cache(dataset, {"train": train, "test": test})
    arrays = read_box_cache(path)
    speed = velocities(arrays, args.lag)
    ids = cache_ids(arrays)
    train_ids = [ids[("train", v.name)] for v in train]
    in_train = np.isin(arrays["video"], train_ids) & np.isfinite(speed).all(axis=1)
    nearest = NearestTraining(speed[in_train], arrays["video"][in_train], args.neighbours)

    tubes = load_tubes(args.tubes)
    rows = tube_rows(arrays, tubes)
    motion = np.zeros(len(rows))
    known = (rows >= 0) & np.isfinite(speed[np.maximum(rows, 0)]).all(axis=1)
    motion[known] = nearest(speed[rows[known]])
    dev = [name for name in args.dev.split(",") if name]
    combos = term_combinations(tubes, "motion", motion)
    result = {"tubes": str(args.tubes), "lag": args.lag, "neighbours": args.neighbours,
              "tubes_with_motion": float(known.mean()), "training_boxes": int(in_train.sum()), "dev": dev,
              "terms": {name: aucs(test, tubes["video"], tubes["frame"], values, dev)
                        for name, values in combos.items()}}
    if args.out:
        atomic_write_json(args.out, result)
    print_terms(result["terms"])
    print(f"tubes with a velocity: {known.mean():.1%} of {len(rows)}; training boxes: {in_train.sum()}")


if __name__ == "__main__":
    run(main)
