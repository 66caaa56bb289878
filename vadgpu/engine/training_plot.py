"""`training.png` in the run folder: every number of `log.jsonl` over optimiser steps, one small panel each.

The panels, in order: the total `loss`, the other loss terms as the model names them (DDL: `recon`,
`distinction`; dual-path: `recon_normal`, `separation`, ...), DDL's learned blend weight `anomaly_weight`
(sigmoid(l)), and the learning rate `lr`. Each panel draws the logged values and, once there are ten or more,
their centred running mean as a dotted line; thin vertical lines mark epoch ends. Throughput and time are left out (the
summary has them). The figure is written atomically at the end of training (also when it stops early) and at an
epoch end when `REFRESH_SECONDS` have passed since the last one, so a long run can be watched; it is built from the
whole log, so a resumed run's figure shows the steps before the resume too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from vadgpu.io import atomic_path
from vadgpu.outputs import png_metadata

TRAINING_PLOT = "training.png"
REFRESH_SECONDS = 60.0
NOT_PLOTTED = ("epoch", "step", "time", "clips_per_s")
LAST_KEYS = ("anomaly_weight", "lr")  # after the loss terms, in this order
TITLES = {"loss": "loss (total)", "anomaly_weight": "anomaly_weight (DDL, sigmoid(l))", "lr": "learning rate"}
PANEL_SIZE = (3.2, 2.4)  # inches per panel
COLUMNS = 4
DPI = 100


def read_log(path: str | Path) -> list[dict]:
    """The records of a log.jsonl (a line cut short by a kill is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)):
            records.append(record)
    return records


def plotted_keys(records: list[dict]) -> list[str]:
    """The numeric keys of the records in panel order: loss, the other terms (first seen first), then LAST_KEYS."""
    seen: list[str] = []
    for record in records:
        for key, value in record.items():
            if key not in NOT_PLOTTED and key not in seen and isinstance(value, (int, float)):
                seen.append(key)
    terms = [k for k in seen if k not in LAST_KEYS]
    terms.sort(key=lambda k: k != "loss")  # stable: the total first, the rest as logged
    return terms + [k for k in LAST_KEYS if k in seen]


def running_mean(values: list[float], width: int) -> np.ndarray:
    """The mean of each value's centred window of `width` values (fewer at the ends), so it does not lag."""
    values, window = np.asarray(values, dtype=np.float64), np.ones(width)
    return np.convolve(values, window, "same") / np.convolve(np.ones_like(values), window, "same")


def plot_training(log_path: str | Path, out: str | Path) -> Path | None:
    """Draw `log_path`'s records into the PNG `out` (atomically); None when the log holds no record yet."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log_path) if Path(log_path).is_file() else []
    keys = plotted_keys(records)
    if not keys:
        return None
    columns = min(COLUMNS, len(keys))
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows))
    FigureCanvasAgg(fig)
    epoch_ends = [a["step"] for a, b in zip(records, records[1:]) if b.get("epoch") != a.get("epoch")]
    for index, key in enumerate(keys):
        ax = fig.add_subplot(rows, columns, index + 1)
        points = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
        steps, values = [p[0] for p in points], [p[1] for p in points]
        for step in epoch_ends:
            ax.axvline(step, color="0.85", lw=0.8, zorder=0)
        ax.plot(steps, values, color="tab:blue", lw=1.2, marker="." if len(values) < 30 else None, label="logged")
        if len(values) >= 10:
            ax.plot(steps, running_mean(values, max(3, len(values) // 10)), color="tab:orange", lw=1.2, ls=":",
                    label="running mean")
        ax.set_title(TITLES.get(key, key), fontsize="medium")
        ax.set_xlabel("step", fontsize="small")
        ax.tick_params(labelsize="small")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        if index == 0:
            ax.legend(fontsize="x-small", frameon=False)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=png_metadata())
    return out
