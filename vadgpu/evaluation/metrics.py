"""Frame-level metrics (scikit-learn): micro AUC, macro AUC, EER, average precision.

    micro AUC  ROC AUC over all test frames pooled (the number papers report for Ped2 / Avenue).
    macro AUC  the mean of per-video ROC AUCs. A video whose frames are all normal (or all anomalous) has no
               defined AUC: it is *excluded* from the mean and listed in `excluded_videos`, never counted as 0.5
               or 1.0. With no video left, macro AUC is None.
    EER        the equal error rate on the pooled ROC curve: the point where the false positive rate equals the
               false negative rate (1 - TPR), linearly interpolated between the two ROC points around it.
    AP         average precision over the pooled frames, anomalous = positive class.

scikit-learn is imported where a metric is computed, not with this module: a scoring process loads it (about 60 MiB)
only once its scores are made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vadgpu.errors import VadgpuError


@dataclass
class FrameMetrics:
    micro_auc: float
    macro_auc: float | None
    eer: float
    eer_threshold: float
    average_precision: float
    per_video_auc: dict[str, float | None]  # None for single-class videos
    excluded_videos: list[str] = field(default_factory=list)  # single-class videos left out of macro AUC
    frames: int = 0
    anomalous_frames: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _check(labels: np.ndarray, scores: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise VadgpuError(f"{what}: {labels.size} labels but {scores.size} scores")
    if not np.isin(labels, (0, 1)).all():
        raise VadgpuError(f"{what}: labels must be 0 (normal) or 1 (anomalous)")
    if not np.isfinite(scores).all():
        raise VadgpuError(f"{what}: scores contain NaN or infinity")
    return labels.astype(np.int64), scores


def has_both_classes(labels: np.ndarray) -> bool:
    labels = np.asarray(labels)
    return bool(labels.size) and 0 < int(labels.sum()) < labels.size


def roc_auc(labels: np.ndarray, scores: np.ndarray, what: str = "scores") -> float | None:
    """ROC AUC, or None when the labels hold a single class (AUC undefined)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _check(labels, scores, what)
    return float(roc_auc_score(labels, scores)) if has_both_classes(labels) else None


def equal_error_rate(labels: np.ndarray, scores: np.ndarray, what: str = "scores") -> tuple[float, float]:
    """(EER, threshold): where FPR = FNR on the ROC curve; the threshold of the first ROC point at or past it."""
    from sklearn.metrics import roc_curve

    labels, scores = _check(labels, scores, what)
    if not has_both_classes(labels):
        raise VadgpuError(f"{what}: EER needs both normal and anomalous frames")
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    gap = (1.0 - tpr) - fpr  # FNR - FPR: starts at 1 (fpr 0, tpr 0), ends at -1 (fpr 1, tpr 1), never increases
    i = int(np.argmax(gap <= 0))
    if i == 0:
        return float(fpr[0]), float(thresholds[0])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    return float(eer), float(thresholds[i])


def frame_metrics(per_video: dict[str, tuple[np.ndarray, np.ndarray]]) -> FrameMetrics:
    """All metrics from {video name: (labels (frames,), final scores (frames,))}."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if not per_video:
        raise VadgpuError("metrics: no test videos were scored")
    checked = {name: _check(lab, sc, f"video {name}") for name, (lab, sc) in per_video.items()}
    labels = np.concatenate([lab for lab, _ in checked.values()])
    scores = np.concatenate([sc for _, sc in checked.values()])
    if not has_both_classes(labels):
        kind = "anomalous" if labels.all() else "normal"
        raise VadgpuError(f"metrics: every one of the {labels.size} test frames is {kind}; AUC is undefined")
    per_video_auc = {name: roc_auc(lab, sc) for name, (lab, sc) in checked.items()}
    excluded = [name for name, auc in per_video_auc.items() if auc is None]
    included = [auc for auc in per_video_auc.values() if auc is not None]
    eer, threshold = equal_error_rate(labels, scores, "pooled test frames")
    return FrameMetrics(
        micro_auc=float(roc_auc_score(labels, scores)),
        macro_auc=float(np.mean(included)) if included else None,
        eer=eer,
        eer_threshold=threshold,
        average_precision=float(average_precision_score(labels, scores)),
        per_video_auc=per_video_auc,
        excluded_videos=excluded,
        frames=int(labels.size),
        anomalous_frames=int(labels.sum()),
    )
