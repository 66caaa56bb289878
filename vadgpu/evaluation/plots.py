"""PNG plots of an evaluation: one score curve per video (anomalous frames shaded, its AUC in the title) and the
pooled ROC curve. Metrics are shown in percent, as in the terminal.

Figures are built with matplotlib's object API (no pyplot state, no display needed) and saved atomically.
matplotlib and scikit-learn are imported where a plot is drawn: scoring does not hold them while it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vadgpu.io import atomic_path
from vadgpu.outputs import png_metadata

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVE_SIZE = (8.0, 3.0)  # inches; at DPI -> 800 x 300 pixels
ROC_SIZE = (5.0, 5.0)
DPI = 100


def percent(value: float | None) -> str:
    """A fraction as people read it: 0.3888 -> '38.88' (what the terminal and every plot show; JSON keeps
    fractions)."""
    return "n/a" if value is None else f"{100 * value:.2f}"


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _save(fig: Figure, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=png_metadata())
    return path


def anomalous_intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s in a 0/1 sequence as half-open [start, stop) index pairs."""
    padded = np.concatenate([[0], np.asarray(labels, dtype=np.int8).reshape(-1), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def plot_score_curve(
    path: str | Path,
    frames: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    title: str = "",
    ylabel: str = "anomaly score",
    auc: float | None = None,
) -> Path:
    """Score against frame index; frames labelled anomalous are shaded red; `auc` (a fraction) goes into the title
    as percent. Returns the PNG path."""
    frames = np.asarray(frames)
    fig = _figure(CURVE_SIZE)
    ax = fig.add_subplot()
    if labels is not None:
        for i, (start, stop) in enumerate(anomalous_intervals(labels)):
            # Shade whole frames: frame k covers [k - 0.5, k + 0.5].
            ax.axvspan(frames[start] - 0.5, frames[stop - 1] + 0.5, color="tab:red", alpha=0.2, lw=0,
                       label="anomalous (ground truth)" if i == 0 else None)
    ax.plot(frames, scores, color="tab:blue", lw=1.2, label="score")
    ax.set_xlim(frames.min() - 0.5, frames.max() + 0.5)
    ax.set_xlabel("frame")
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("" if auc is None else f"  AUC {percent(auc)} %"), loc="right")
    # Above the axes, so the legend never hides the curve.
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=2, frameon=False, fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def plot_roc(path: str | Path, labels: np.ndarray, scores: np.ndarray, auc: float, eer: float | None = None) -> Path:
    """The pooled ROC curve with its AUC (and the EER point) in the legend. Returns the PNG path."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels).reshape(-1), np.asarray(scores).reshape(-1))
    fig = _figure(ROC_SIZE)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="tab:blue", lw=1.5, label=f"ROC (micro AUC {percent(auc)} %)")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    if eer is not None:
        ax.plot([eer], [1 - eer], "o", color="tab:red", label=f"EER {percent(eer)} %")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _save(fig, path)
