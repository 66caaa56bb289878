"""What an evaluation leaves behind: scores.csv, metrics.json, the PNGs, and the table printed to the terminal.

    OUT/metrics.json       metrics + the protocol that produced them + checkpoint, dataset, labels, frame counts.
                           Units: `metrics.micro_auc`, `macro_auc`, `eer`, `average_precision`, `per_video_auc`
                           and `videos[].auc` are fractions in [0, 1] (`units` says so in the file); the terminal
                           table and the plots show the same numbers in percent.
    OUT/scores.csv         video, frame, raw_score, score, label: one row per scored frame, videos in test order
    OUT/curves/NAME.png    score curve of each test video, anomalous frames shaded, its AUC in the title
    OUT/roc.png            pooled ROC curve
All files are written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from vadgpu.evaluation.metrics import FrameMetrics
from vadgpu.evaluation.plots import percent, plot_roc, plot_score_curve
from vadgpu.io import atomic_write, atomic_write_json

CURVES_DIR = "curves"
UNITS = "auc, eer, average_precision: fractions in [0, 1] (the terminal and the plots show percent)"


@dataclass
class VideoScores:
    """One video's scores after the protocol: only the kept frames (see protocol.kept_frames)."""

    name: str
    num_frames: int  # decoded frames of the video, before any edge drop
    frames: np.ndarray  # (K,) frame indices that were kept
    raw: np.ndarray  # (K,) raw scores (patch-max / -PSNR / mixed)
    score: np.ndarray  # (K,) after smoothing and normalisation: what the metrics see
    labels: np.ndarray | None = None  # (K,) 0/1, None for an unlabelled input


def safe_name(name: str) -> str:
    """A video name usable as a file name (names like 'Test001/01' keep their parts, joined by '_'; letters of any
    script stay: 'cam ü' -> 'cam_ü')."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "video"


def safe_names(names: Sequence[str]) -> list[str]:
    """`safe_name` of each of `names`, made distinct: where two names give the same file name ('a/b' and 'a_b'),
    each of them gets a short hash of its own name, so no video's file replaces another's."""
    plain = [safe_name(n) for n in names]
    taken = Counter(p.lower() for p in plain)  # case-insensitive file systems too
    return [p if taken[p.lower()] == 1 else f"{p}-{hashlib.sha1(n.encode()).hexdigest()[:8]}"
            for n, p in zip(names, plain)]


def write_scores_csv(path: str | Path, videos: Iterable[VideoScores]) -> Path:
    """One row per kept frame, in video then frame order; `label` only when the videos have labels."""
    videos = list(videos)
    labelled = all(v.labels is not None for v in videos)

    def write(fh) -> None:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["video", "frame", "raw_score", "score"] + (["label"] if labelled else []))
        for v in videos:
            for i, frame in enumerate(v.frames):
                row = [v.name, int(frame), f"{v.raw[i]:.8g}", f"{v.score[i]:.8g}"]
                out.writerow(row + ([int(v.labels[i])] if labelled else []))

    atomic_write(path, write)
    return Path(path)


def write_curves(folder: str | Path, videos: Iterable[VideoScores], ylabel: str,
                 aucs: dict[str, float | None] | None = None) -> list[Path]:
    """One score-curve PNG per video, named after it; `aucs` (video name -> fraction) puts each AUC in its title."""
    videos = list(videos)
    return [
        plot_score_curve(Path(folder) / f"{name}.png", v.frames, v.score, v.labels,
                         title=f"video {v.name}", ylabel=ylabel, auc=(aucs or {}).get(v.name))
        for v, name in zip(videos, safe_names([v.name for v in videos]))
    ]


def write_eval_outputs(out: Path, videos: list[VideoScores], metrics: FrameMetrics, record: dict[str, Any]) -> dict:
    """Write every output of `vadgpu eval` into `out`; returns the metrics.json content."""
    out.mkdir(parents=True, exist_ok=True)
    write_scores_csv(out / "scores.csv", videos)
    write_curves(out / CURVES_DIR, videos, ylabel=record["protocol"]["score_label"], aucs=metrics.per_video_auc)
    labels = np.concatenate([v.labels for v in videos])
    scores = np.concatenate([v.score for v in videos])
    plot_roc(out / "roc.png", labels, scores, metrics.micro_auc, metrics.eer)
    content = {"metrics": metrics.to_dict(), "units": UNITS, **record,
               "outputs": {"scores": "scores.csv", "roc": "roc.png", "curves": f"{CURVES_DIR}/"}}
    atomic_write_json(out / "metrics.json", content)
    return content


def format_table(metrics: FrameMetrics, frame_counts: dict[str, int] | None = None) -> str:
    """The summary printed after `vadgpu eval`: pooled metrics, then one line per video."""
    lines = [
        f"{'micro AUC':<12}{percent(metrics.micro_auc):>8} %",
        f"{'macro AUC':<12}{percent(metrics.macro_auc):>8} %"
        + (f"   (excludes single-class videos: {', '.join(metrics.excluded_videos)})" if metrics.excluded_videos
           else ""),
        f"{'EER':<12}{percent(metrics.eer):>8} %",
        f"{'AP':<12}{percent(metrics.average_precision):>8} %",
        f"{'frames':<12}{metrics.frames:>8}   ({metrics.anomalous_frames} anomalous)",
        "",
        f"{'video':<16}{'frames':>8}{'AUC %':>12}",
    ]
    for name, auc in metrics.per_video_auc.items():
        count = "" if frame_counts is None else str(frame_counts.get(name, ""))
        lines.append(f"{name:<16}{count:>8}{percent(auc) if auc is not None else 'one class':>12}")
    return "\n".join(lines)


def write_object_csvs(out_dir, video_names: list[str], records, frame_hw: tuple[int, int]) -> list:
    """One CSV per video in `out_dir`: every scored box, frame by frame, best first (frame, rank, score, raw_score,
    x1, y1, x2, y2 in the video's pixels, the window's centre box). Returns the paths written."""
    import csv
    import io

    from vadgpu.io import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = frame_hw
    if records:
        video, frame, boxes, raw, score = (np.concatenate(part) for part in zip(*records))
    else:
        video = frame = raw = score = np.zeros(0)
        boxes = np.zeros((0, 4))
    pixels = boxes * np.array([width, height, width, height])
    paths, file_names = [], safe_names(video_names)  # distinct: two videos never share a CSV
    for index, name in enumerate(video_names):
        mine = np.flatnonzero(video == index)
        mine = mine[np.lexsort((-score[mine], frame[mine]))]  # by frame, then best first
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["frame", "rank", "score", "raw_score", "x1", "y1", "x2", "y2"])
        rank = 0
        for j, row in enumerate(mine):
            rank = rank + 1 if j and frame[mine[j - 1]] == frame[row] else 1
            writer.writerow([int(frame[row]), rank, f"{score[row]:.6g}", f"{raw[row]:.6g}",
                             *(f"{v:.1f}" for v in pixels[row])])
        path = out_dir / f"{file_names[index]}.csv"
        atomic_write_text(path, text.getvalue())
        paths.append(path)
    return paths
