"""Print the README's Ped2 results table from the committed run files, recomputing the AUCs from scores.csv.

    .venv/bin/python benchmarks/ped2/results_table.py [benchmarks/results/ped2]

Each run folder holds config.yaml, summary.json, log.jsonl and eval/{metrics.json, scores.csv} (the default
patch-max score), for newer runs also eval-psnr/ (the same checkpoint scored by PSNR), as copied by
benchmarks/ped2/run_ped2.sh. The AUCs are recomputed from scores.csv (scikit-learn) and must agree with
metrics.json: the table cannot drift from the files anyone can check.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import yaml
from sklearn.metrics import roc_auc_score

# Published Ped2 micro AUC of DDL's three ablation variants (DDL paper, Table 2: C3DSU at 256x256 RGB).
PUBLISHED_DDL = {"none": "95.55", "fixed": "97.12", "dynamic": "98.46"}


def published(config: dict) -> str:
    """The paper's number for the DDL variant a run's config.yaml trained (size, lambda, loss form and boxes are
    CPU-recipe changes and keep their variant's number); '-' for the dual-path runs."""
    if config["model"] != "ddl":
        return "-"
    extra = config.get("extra") or {}
    if extra.get("pseudo_kinds") == []:
        return PUBLISHED_DDL["none"]
    return PUBLISHED_DDL["fixed" if extra.get("blend_weight") == "fixed" else "dynamic"]


def recompute(scores_csv: Path) -> tuple[float, float]:
    """(micro AUC over all frames, mean of the per-video AUCs over videos with both labels)."""
    by_video: dict[str, tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))
    with scores_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            by_video[row["video"]][0].append(float(row["score"]))
            by_video[row["video"]][1].append(int(row["label"]))
    scores = [s for v in by_video.values() for s in v[0]]
    labels = [y for v in by_video.values() for y in v[1]]
    per_video = [roc_auc_score(y, s) for s, y in by_video.values() if 0 < sum(y) < len(y)]
    return roc_auc_score(labels, scores), sum(per_video) / len(per_video)


def checked_metrics(folder: Path) -> dict:
    """metrics.json's metrics after checking its micro and macro AUC against scores.csv."""
    m = json.loads((folder / "metrics.json").read_text())["metrics"]
    micro, macro = recompute(folder / "scores.csv")
    if abs(micro - m["micro_auc"]) > 1e-6 or abs(macro - m["macro_auc"]) > 1e-6:
        raise SystemExit(f"{folder}: scores.csv gives AUC {micro:.6f}/{macro:.6f}, metrics.json "
                         f"{m['micro_auc']:.6f}/{m['macro_auc']:.6f}")
    return m


def row(run: Path) -> str:
    summary = json.loads((run / "summary.json").read_text())
    m = checked_metrics(run / "eval")
    psnr = f"{100 * checked_metrics(run / 'eval-psnr')['micro_auc']:.2f}" if (run / "eval-psnr").is_dir() else "-"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    # DDL's blend weight, shown only where the blend was used (a run without pseudo-anomalies never trains it)
    used = any(entry.get("distinction", 0) > 0 for entry in log)
    weight = f"{log[-1]['sigmoid_l']:.3f}" if used and "sigmoid_l" in log[-1] else "-"
    paper = published(yaml.safe_load((run / "config.yaml").read_text()))
    return (f"| {run.name} | {100 * m['micro_auc']:.2f} | {paper} | {100 * m['macro_auc']:.2f} | "
            f"{100 * m['eer']:.2f} | {100 * m['average_precision']:.2f} | {psnr} | {summary['steps']} | "
            f"{summary['seconds'] / 60:.1f} | {weight} |")


def main(folder: str = "benchmarks/results/ped2") -> None:
    runs = sorted(p.parent.parent for p in Path(folder).glob("*/eval/metrics.json"))
    if not runs:
        raise SystemExit(f"{folder}: no run folders with eval/metrics.json")
    print("| run | micro AUC | published | macro AUC | EER | AP | micro AUC, PSNR | steps | train min | final w |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))


if __name__ == "__main__":
    main(*sys.argv[1:])
