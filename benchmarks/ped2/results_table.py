"""Print the README's Ped2 results table from the committed run files, recomputing the AUCs from scores.csv.

    .venv/bin/python benchmarks/ped2/results_table.py [benchmarks/results/ped2]

Two tables: the object-mode runs (config `clips: objects`, from benchmarks/ped2/run_objects.sh) with the micro AUC
over all 12 test videos, over 01-06 (the videos the recipe was chosen on) and over 07-12 alone, and the mean and
spread over the seeds of each recipe; the dual-path model's two forms (benchmarks/ped2/run_authors.sh: vadgpu's and
the authors', each under vadgpu's default scoring and under `--protocol dualpath-authors`, eval-authors/); then the
other full-frame runs.

Each run folder holds config.yaml, summary.json, log.jsonl and eval/{metrics.json, scores.csv} (the default
patch-max score), for newer runs also eval-psnr/ (the same checkpoint scored by PSNR), as copied by
benchmarks/ped2/run_ped2.sh. The AUCs are recomputed from scores.csv (scikit-learn) and must agree with
metrics.json: the table cannot drift from the files anyone can check.
"""

from __future__ import annotations

import argparse
import csv
import json
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


def read_scores(scores_csv: Path) -> dict[str, tuple[list[float], list[int]]]:
    """{video: (scores, labels)} from an eval's scores.csv."""
    by_video: dict[str, tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))
    with scores_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            by_video[row["video"]][0].append(float(row["score"]))
            by_video[row["video"]][1].append(int(row["label"]))
    return by_video


def micro_over(scores_csv: Path, videos: set[str]) -> float:
    """Micro AUC over the frames of some videos only."""
    by_video = read_scores(scores_csv)
    scores = [s for name, v in by_video.items() if name in videos for s in v[0]]
    labels = [y for name, v in by_video.items() if name in videos for y in v[1]]
    return roc_auc_score(labels, scores)


def recompute(scores_csv: Path) -> tuple[float, float]:
    """(micro AUC over all frames, mean of the per-video AUCs over videos with both labels)."""
    by_video = read_scores(scores_csv)
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
    weight = final_weight(run)
    paper = published(yaml.safe_load((run / "config.yaml").read_text()))
    return (f"| {run.name} | {100 * m['micro_auc']:.2f} | {paper} | {100 * m['macro_auc']:.2f} | "
            f"{100 * m['eer']:.2f} | {100 * m['average_precision']:.2f} | {psnr} | {summary['steps']} | "
            f"{summary['seconds'] / 60:.1f} | {weight} |")


DEV = {f"{i:02d}" for i in range(1, 7)}
HELD_OUT = {f"{i:02d}" for i in range(7, 13)}


def final_weight(run: Path) -> str:
    """DDL's blend weight after training, where the blend was used (a run without pseudo-anomalies never trains
    it)."""
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    used = any(entry.get("distinction", 0) > 0 for entry in log)
    # `anomaly_weight` is the key; logs written before it was the only one name it `sigmoid_l`
    weight = log[-1].get("anomaly_weight", log[-1].get("sigmoid_l"))
    return f"{weight:.3f}" if used and weight is not None else "-"


def object_row(run: Path) -> tuple[str, str, list[float]]:
    """(recipe name without the seed, table row, [micro, macro, micro 07-12]) of an object-mode run."""
    summary = json.loads((run / "summary.json").read_text())
    m = checked_metrics(run / "eval")
    scores = run / "eval" / "scores.csv"
    dev, held = micro_over(scores, DEV), micro_over(scores, HELD_OUT)
    config = yaml.safe_load((run / "config.yaml").read_text())
    numbers = [100 * m["micro_auc"], 100 * m["macro_auc"], 100 * held]
    line = (f"| {run.name} | {config['seed']} | {numbers[0]:.2f} | {numbers[1]:.2f} | {100 * dev:.2f} | "
            f"{numbers[2]:.2f} | {100 * m['eer']:.2f} | {100 * m['average_precision']:.2f} | {summary['steps']} | "
            f"{summary['seconds'] / 60:.1f} | {final_weight(run)} |")
    return run.name.split("-seed")[0], line, numbers


def spread_cells(rows: list[list[float]]) -> list[str]:
    """'mean (min-max)' of each column of the seeds' numbers."""
    return [f"{sum(c) / len(c):.2f} ({min(c):.2f}-{max(c):.2f})" for c in zip(*rows)]


def form_row(run: Path) -> tuple[str, str, list[float]]:
    """(form, table row, [micro, macro, micro and macro under the authors' scoring]) of a run_authors.sh run."""
    summary = json.loads((run / "summary.json").read_text())
    ours, theirs = checked_metrics(run / "eval"), checked_metrics(run / "eval-authors")
    config = yaml.safe_load((run / "config.yaml").read_text())
    numbers = [100 * ours["micro_auc"], 100 * ours["macro_auc"], 100 * theirs["micro_auc"], 100 * theirs["macro_auc"]]
    line = (f"| {run.name} | {config['preset']} | {config['seed']} | " + " | ".join(f"{x:.2f}" for x in numbers)
            + f" | {summary['steps']} | {summary['seconds'] / 60:.1f} |")
    return run.name.split("-seed")[0], line, numbers


def print_forms(runs: list[Path]) -> None:
    """The dual-path model's two forms (benchmarks/ped2/run_authors.sh), each under both protocols."""
    print("| run | preset | seed | micro AUC | macro AUC | micro AUC, authors' scoring | macro AUC, authors' scoring "
          "| steps | train min |")
    print("|---|---|---|---|---|---|---|---|---|")
    forms: dict[str, list[list[float]]] = defaultdict(list)
    for run in runs:
        form, line, numbers = form_row(run)
        forms[form].append(numbers)
        print(line)
    print()
    print("| form | seeds | micro AUC mean (min-max) | macro AUC mean (min-max) | micro, authors' scoring | "
          "macro, authors' scoring |")
    print("|---|---|---|---|---|---|")
    for form, rows in forms.items():
        cells = spread_cells(rows)
        print(f"| {form} | {len(rows)} | " + " | ".join(cells) + " |")
    print()


def main(folder: str = "benchmarks/results/ped2") -> None:
    runs = sorted(p.parent.parent for p in Path(folder).glob("*/eval/metrics.json"))
    if not runs:
        raise SystemExit(f"{folder}: no run folders with eval/metrics.json")
    is_object = {run: yaml.safe_load((run / "config.yaml").read_text()).get("clips") == "objects" for run in runs}
    objects = [object_row(run) for run in runs if is_object[run]]
    if objects:
        print("| run | seed | micro AUC | macro AUC | micro 01-06 | micro 07-12 | EER | AP | steps | train min "
              "| final w |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for _, line, _ in objects:
            print(line)
        print()
        print("| recipe | seeds | micro AUC mean (min-max) | macro AUC mean (min-max) | micro 07-12 mean (min-max) |")
        print("|---|---|---|---|---|")
        recipes: dict[str, list[list[float]]] = defaultdict(list)
        for recipe, _, numbers in objects:
            recipes[recipe].append(numbers)
        for recipe, rows in recipes.items():
            cells = spread_cells(rows)
            print(f"| {recipe} | {len(rows)} | " + " | ".join(cells) + " |")
        print()
    forms = [run for run in runs if not is_object[run] and (run / "eval-authors").is_dir()]
    if forms:
        print_forms(forms)
    print("| run | micro AUC | published | macro AUC | EER | AP | micro AUC, PSNR | steps | train min | final w |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        if not is_object[run] and run not in forms:
            print(row(run))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="benchmarks/results/ped2",
                        help="the folder of run folders (default: %(default)s)")
    main(parser.parse_args().folder)
