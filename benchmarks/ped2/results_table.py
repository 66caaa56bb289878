"""The Ped2 results: one index of the committed runs, and every results table generated from that index.

    .venv/bin/python benchmarks/ped2/results_table.py --index   # runs.jsonl from the run folders (machine paths
                                                                # in their files replaced first)
    .venv/bin/python benchmarks/ped2/results_table.py --write   # the tables in README.md and docs/results/*.md
    .venv/bin/python benchmarks/ped2/results_table.py --check   # all of it up to date? (`make test` runs this)
    .venv/bin/python benchmarks/ped2/results_table.py           # print the tables

Run folders: benchmarks/results/ped2/NAME/ holds config.yaml, summary.json, log.jsonl, source.json (the commit the
run was made at, where it was recorded) and one folder per evaluation (eval/ = the run's own scoring; eval-psnr/,
eval-video/, eval-place/, eval-authors/, eval-normtrain*/ = the same checkpoint scored another way), each with
metrics.json and scores.csv, as the run scripts in benchmarks/ped2/ copy them. `--index` recomputes every AUC from
scores.csv (scikit-learn), refuses a metrics.json that disagrees, and writes one JSON line per run to
benchmarks/results/ped2/runs.jsonl: run, recipe, variant, seed, model, preset, commit (null where not recorded),
added_in, config_digest, training (digest of log.jsonl: two runs with the same one are one checkpoint scored two
ways), steps, train_min, final_weight and the metrics of each evaluation (fractions); the no-learning references
(frame-difference.json ...) are lines of recipe "reference". The tables are made from runs.jsonl alone and written
between `<!-- results:NAME -->` and `<!-- /results:NAME -->` markers; the loader throughput tables come from
benchmarks/results/throughput-*-cpu.json, the scoring path's stages from benchmarks/results/score-*-cpu.json.
`--check` fails, naming what differs, when runs.jsonl is not what the folders give, when a generated table differs
from the page, or when a result file holds a machine's path.

Recipes, from the run names: frames-1 / frames-2 (run_ped2.sh: the two rounds of full-frame runs, round 2 with
`-lr1e-2` in the name), dualpath-forms (run_authors.sh), objects-1 (run_objects.sh, raw tube error), objects-2
(`-place`: tube errors normalised by place), objects-3 (`-looks`: + appearance, run_appearance.sh). The variant is
the name without the recipe's part and the seed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import yaml
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
PED2 = RESULTS / "ped2"
TRAVEL = RESULTS / "travel"  # benchmarks/travel/run_check.sh: their dataset roots are written as $ROOT
INDEX = PED2 / "runs.jsonl"
REFERENCES = {"frame-difference": "frame-difference.json", "object-difference": "object-difference.json",
              "appearance-knn": "appearance-knn.json"}
DEV = {f"{i:02d}" for i in range(1, 7)}
HELD_OUT = {f"{i:02d}" for i in range(7, 13)}
# Published Ped2 micro AUC of DDL's three ablation variants (DDL paper, Table 2: C3DSU at 256x256 RGB).
PUBLISHED_DDL = {"none": "95.55", "fixed": "97.12", "dynamic": "98.46"}

# ------------------------------------------------------------------------------------------------ machine paths
# A path in a result file that names the machine it ran on becomes a placeholder: the dataset root $PED2, the
# dataset's prepare cache folder $PED2_CACHE (~/.cache/vadgpu/ped2-<hash of the root>), the Darknet files' folder
# $YOLO; run folders and the benchmark cache become paths relative to the repository, where the scripts put them.
PORTABLE = [  # in this order: the first that matches
    (re.compile(r"^.*/\.cache/vadgpu/ped2-[0-9a-f]{10}(?=/|$)"), "$PED2_CACHE"),
    (re.compile(r"^.*?/((?:runs|\.cache)/.+)$"), r"\1"),
    (re.compile(r"^.*/(yolov3-tiny\.(?:weights|cfg))$"), r"$YOLO/\1"),
    (re.compile(r"^.*/ped2(?=/|$)"), "$PED2"),
]


def machine_path(value: str) -> bool:
    """An absolute path, or one that climbs out of the repository."""
    return value.startswith(("/", "../", "~"))


def portable(value: str) -> str:
    for pattern, replacement in PORTABLE:
        if pattern.search(value):
            return pattern.sub(replacement, value, count=1)
    return value


def _strings(data):
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


def result_files() -> list[Path]:
    """The committed text files that can hold paths: configs and JSON records of the runs and benchmarks."""
    return sorted([*RESULTS.glob("*.json"), *RESULTS.glob("eval-memory/*.json"), *RESULTS.glob("onnxruntime/*.json"),
                   *PED2.glob("*.json"),
                   *PED2.glob("*/config.yaml"),
                   *PED2.glob("*/*.json"), *PED2.glob("*/*/metrics.json"), *TRAVEL.glob("*/config.yaml"),
                   *TRAVEL.glob("*/*.json")])


def _parse(path: Path):
    return yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())


def make_portable() -> list[str]:
    """Replace the machine paths of every result file in place (only the path strings: the rest of each file stays
    byte for byte); returns the files changed."""
    changed = []
    for path in result_files():
        text = path.read_text()
        new = text
        for value in sorted({s for s in _strings(_parse(path)) if machine_path(s)}, key=len, reverse=True):
            new = new.replace(value, portable(value))
        if new != text:
            path.write_text(new)
            _parse(path)  # still parses
            changed.append(str(path.relative_to(REPO)))
    return changed


def machine_paths_left() -> list[str]:
    return [f"{path.relative_to(REPO)}: {value}" for path in result_files() for value in _strings(_parse(path))
            if machine_path(value)]


# ------------------------------------------------------------------------------------------------------- index
def read_scores(scores_csv: Path) -> dict[str, tuple[list[float], list[int]]]:
    """{video: (scores, labels)} from an eval's scores.csv."""
    by_video: dict[str, tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))
    with scores_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            by_video[row["video"]][0].append(float(row["score"]))
            by_video[row["video"]][1].append(int(row["label"]))
    return by_video


def _micro(by_video, videos=None) -> float:
    chosen = [v for name, v in by_video.items() if videos is None or name in videos]
    return roc_auc_score([y for v in chosen for y in v[1]], [s for v in chosen for s in v[0]])


def checked_metrics(folder: Path) -> dict:
    """An evaluation's metrics, its AUCs recomputed from scores.csv and checked against metrics.json."""
    m = json.loads((folder / "metrics.json").read_text())["metrics"]
    by_video = read_scores(folder / "scores.csv")
    per_video = {name: roc_auc_score(y, s) for name, (s, y) in by_video.items() if 0 < sum(y) < len(y)}
    micro, macro = _micro(by_video), sum(per_video.values()) / len(per_video)
    if abs(micro - m["micro_auc"]) > 1e-6 or abs(macro - m["macro_auc"]) > 1e-6:
        raise SystemExit(f"{folder.relative_to(REPO)}: scores.csv gives AUC {micro:.6f}/{macro:.6f}, metrics.json "
                         f"{m['micro_auc']:.6f}/{m['macro_auc']:.6f}")
    return {"micro_auc": micro, "macro_auc": macro, "eer": m["eer"], "average_precision": m["average_precision"],
            "micro_01_06": _micro(by_video, DEV), "micro_07_12": _micro(by_video, HELD_OUT),
            "per_video_auc": {name: per_video.get(name) for name in by_video}}


def classify(name: str, config: dict) -> tuple[str, str]:
    """(recipe, variant) of a run folder's name (module docstring)."""
    base = re.sub(r"-seed\d+$", "", name)
    if config.get("clips") == "objects":
        for suffix, recipe in (("-looks", "objects-3"), ("-place", "objects-2")):
            if base.endswith(suffix):
                return recipe, base[: -len(suffix)]
        return "objects-1", base
    if base in ("dualpath-vadgpu", "dualpath-authors"):
        return "dualpath-forms", base
    if "-lr1e-2" in base:
        return "frames-2", base.replace("-lr1e-2", "")
    return "frames-1", base


def final_weight(log: list[dict]) -> float | None:
    """DDL's blend weight after training, where the blend was used (a run without pseudo-anomalies never trains
    it); `anomaly_weight` is the key, older logs name it `sigmoid_l`."""
    used = any(entry.get("distinction", 0) > 0 for entry in log)
    weight = log[-1].get("anomaly_weight", log[-1].get("sigmoid_l"))
    return weight if used and weight is not None else None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def run_line(run: Path) -> dict:
    config = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    log_bytes = (run / "log.jsonl").read_bytes()
    source = json.loads((run / "source.json").read_text()) if (run / "source.json").is_file() else {}
    recipe, variant = classify(run.name, config)
    settings = {k: v for k, v in config.items() if k != "out"}
    return {"run": run.name, "recipe": recipe, "variant": variant, "seed": config["seed"], "model": config["model"],
            "preset": config["preset"], "published": published(config), "commit": source.get("commit"),
            "added_in": source.get("added_in"),
            "config_digest": digest(json.dumps(settings, sort_keys=True).encode()), "training": digest(log_bytes),
            "steps": summary["steps"], "train_min": round(summary["seconds"] / 60, 1),
            "final_weight": final_weight([json.loads(line) for line in log_bytes.decode().splitlines()]),
            "evals": {e.name: checked_metrics(e) for e in sorted(run.glob("eval*")) if (e / "scores.csv").is_file()}}


def reference_line(name: str, file: str) -> dict:
    record = json.loads((PED2 / file).read_text())  # AUCs in percent, per the reference scripts
    return {"run": name, "recipe": "reference", "variant": name, "seed": None, "source": file,
            "score": record["score"],
            "evals": {"eval": {"micro_auc": round(record["micro_auc"] / 100, 6),
                               "macro_auc": round(record["macro_auc"] / 100, 6),
                               "per_video_auc": {k: None if v is None else round(v / 100, 6)
                                                 for k, v in record["per_video_auc"].items()}}}}


def build_index() -> list[dict]:
    runs = sorted(p.parent.parent for p in PED2.glob("*/eval/metrics.json"))
    if not runs:
        raise SystemExit(f"{PED2}: no run folders with eval/metrics.json")
    return [run_line(run) for run in runs] + [reference_line(n, f) for n, f in REFERENCES.items()]


def index_text(lines: list[dict]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def read_index() -> list[dict]:
    return [json.loads(line) for line in INDEX.read_text().splitlines()]


# ------------------------------------------------------------------------------------------------------ tables
def published(config: dict) -> str:
    """The paper's number for the DDL variant a run trained (size, lambda, loss form and boxes are CPU-recipe
    changes and keep their variant's number); '-' for the dual-path runs."""
    if config["model"] != "ddl":
        return "-"
    extra = config.get("extra") or {}
    if extra.get("pseudo_kinds") == []:
        return PUBLISHED_DDL["none"]
    return PUBLISHED_DDL["fixed" if extra.get("blend_weight") == "fixed" else "dynamic"]


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def spread(values: list[float]) -> str:
    """'mean (min-max)' in percent, or the one value."""
    values = [100 * v for v in values]
    mean = sum(values) / len(values)
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ({min(values):.2f}-{max(values):.2f})"


def table(header: list[str], rows: list[list[str]]) -> str:
    from vadgpu.bench.report import markdown_table  # the tables `vadgpu bench` prints use it too

    return markdown_table(header, rows)


def _weight(line: dict) -> str:
    return "-" if line["final_weight"] is None else f"{line['final_weight']:.3f}"


def _groups(lines: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        groups[line["variant"]].append(line)
    return groups


def object_tables(lines: list[dict], recipe: str) -> str:
    mine = [line for line in lines if line["recipe"] == recipe]
    rows = [[f"`{line['run']}`", str(line["seed"]), *(pct(line["evals"]["eval"][k]) for k in (
        "micro_auc", "macro_auc", "micro_01_06", "micro_07_12", "eer", "average_precision")),
        str(line["steps"]), f"{line['train_min']:.1f}", _weight(line)] for line in mine]
    runs = table(["run", "seed", "micro AUC", "macro AUC", "micro 01-06", "micro 07-12", "EER", "AP", "steps",
                  "train min", "final w"], rows)
    summary = [[f"`{variant}`", str(len(group)), *(spread([g["evals"]["eval"][k] for g in group]) for k in (
        "micro_auc", "macro_auc", "micro_07_12"))] for variant, group in _groups(mine).items()]
    return runs + "\n\n" + table(["variant", "seeds", "micro AUC mean (min-max)", "macro AUC mean (min-max)",
                                  "micro 07-12 mean (min-max)"], summary)


def forms_tables(lines: list[dict]) -> str:
    mine = [line for line in lines if line["recipe"] == "dualpath-forms"]
    keys = [("eval", "micro_auc"), ("eval", "macro_auc"), ("eval-authors", "micro_auc"), ("eval-authors", "macro_auc")]
    rows = [[f"`{line['run']}`", line["preset"], str(line["seed"]), *(pct(line["evals"][e][k]) for e, k in keys),
             str(line["steps"]), f"{line['train_min']:.1f}"] for line in mine]
    runs = table(["run", "preset", "seed", "micro AUC", "macro AUC", "micro AUC, authors' scoring",
                  "macro AUC, authors' scoring", "steps", "train min"], rows)
    summary = [[f"`{variant}`", str(len(group)), *(spread([g["evals"][e][k] for g in group]) for e, k in keys)]
               for variant, group in _groups(mine).items()]
    return runs + "\n\n" + table(["form", "seeds", "micro AUC", "macro AUC", "micro, authors' scoring",
                                  "macro, authors' scoring"], summary)


def frames_table(lines: list[dict]) -> str:
    rows = []
    for line in lines:
        if line["recipe"] in ("frames-1", "frames-2"):
            ev, psnr = line["evals"]["eval"], line["evals"].get("eval-psnr")
            rows.append([f"`{line['run']}`", line["recipe"][-1], pct(ev["micro_auc"]), line["published"],
                         pct(ev["macro_auc"]), pct(ev["eer"]), pct(ev["average_precision"]),
                         pct(psnr["micro_auc"]) if psnr else "-", str(line["steps"]), f"{line['train_min']:.1f}",
                         _weight(line)])
    return table(["run", "round", "micro AUC", "published", "macro AUC", "EER", "AP", "micro AUC, PSNR", "steps",
                  "train min", "final w"], rows)


def references_table(lines: list[dict]) -> str:
    rows = [[f"`{line['run']}`", pct(line["evals"]["eval"]["micro_auc"]), pct(line["evals"]["eval"]["macro_auc"]),
             line["score"], f"`{line['source']}`"] for line in lines if line["recipe"] == "reference"]
    return table(["reference", "micro AUC", "macro AUC", "score", "file"], rows)


# The README's headline rows: (what, recipe, variant or reference name).
HEADLINE = [
    ("DDL, object tubes, tube error by place + what the object looks like", "objects-3", "ddl-objects"),
    ("dual-path (authors' loss), object tubes, the same scoring", "objects-3", "dualpath-objects-authors"),
    ("DDL, object tubes, tube error by place (the learned term of the first row alone)", "objects-2", "ddl-objects"),
    ("dual-path, full frames 64x64 (vadgpu's form)", "dualpath-forms", "dualpath-vadgpu"),
    ("no learning: appearance alone (yolov3-tiny features, nearest training box)", "reference", "appearance-knn"),
    ("no learning: motion inside each box", "reference", "object-difference"),
    ("no learning: frame difference", "reference", "frame-difference"),
]


def headline_table(lines: list[dict]) -> str:
    rows = []
    for what, recipe, variant in HEADLINE:
        group = [line for line in lines if line["recipe"] == recipe and line["variant"] == variant]
        if not group:
            raise SystemExit(f"headline: no run of recipe {recipe}, variant {variant} in {INDEX}")
        seeds = "-" if recipe == "reference" else str(len(group))
        rows.append([what, seeds, *(spread([g["evals"]["eval"][k] for g in group]) for k in ("micro_auc",
                                                                                             "macro_auc"))])
    return table(["Ped2, 12 test videos (CPU-scale models)", "seeds", "micro AUC mean (min-max)",
                  "macro AUC mean (min-max)"], rows)


# Loader throughput: the README's rows (configurations) and the whole table for docs/results/throughput.md.
THROUGHPUT_HEADLINE = ["ped2-t3", "ped2-t16", "ped2-256rgb-t16"]


def throughput_results() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("throughput-*-cpu.json"))]


def throughput_headline() -> str:
    by_name = {r["config"]: r for r in throughput_results()}
    rows = []
    for name in THROUGHPUT_HEADLINE:
        r = by_name[name]
        spec, stages = r["settings"]["spec"], r["stages"]
        rows.append([f"`{name}`", f"{spec['size'][0]}x{spec['size'][1]}, C={spec['channels']}, T={spec['temporal']}",
                     f"{stages['baseline+clips']['rate']['median']:.0f}",
                     f"{stages['pipeline+clips']['rate']['median']:.0f}",
                     f"{r['ratios']['pipeline+clips/baseline+clips']:.2f}x"])
    return table(["Ped2 training clips, 2-core CPU", "clip", "torch DataLoader clips/s", "DALI loader clips/s",
                  "ratio"], rows)


def throughput_table() -> str:
    from vadgpu.bench.report import format_summary, is_objects  # the table `vadgpu bench` prints

    return format_summary([r for r in throughput_results() if not is_objects(r)])


def throughput_objects_table() -> str:
    """Object-mode training (docs/results/throughput.md), from the object presets' throughput-*-cpu.json."""
    from vadgpu.bench.report import format_object_summary, is_objects

    return format_object_summary([r for r in throughput_results() if is_objects(r)])


def score_table() -> str:
    """The scoring path stage by stage (docs/results/throughput.md), from benchmarks/results/score-*-cpu.json."""
    from vadgpu.bench.score_report import format_summary  # the summary of `vadgpu bench score`

    return format_summary([json.loads(p.read_text()) for p in sorted(RESULTS.glob("score-*-cpu.json"))])


TRAVEL_TERMS = [("tube term alone", "learned term alone"), ("appearance term alone", "appearance term alone"),
                ("sum", "full detector (sum)"), ("max", "larger of the two")]
TRAVEL_REFERENCES = [("frame-difference", "frame difference"), ("object-difference", "object difference")]


def travel_table() -> str:
    """The checks that stand in for a camera the detector has not seen (docs/results/travel.md), from
    benchmarks/results/travel/NAME/ (benchmarks/travel/run_check.sh): one row per check, each score as micro /
    macro AUC on all test videos and, in brackets, micro AUC on the dev videos."""
    rows = []
    for folder in sorted(p for p in TRAVEL.iterdir() if (p / "terms.json").is_file()):
        terms = json.loads((folder / "terms.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        geometry = f"{terms['window']} px, {terms['grid'][0]} x {terms['grid'][1]}, {summary['steps']} steps"
        measured = [terms["terms"][key] for key, _ in TRAVEL_TERMS]
        measured += [json.loads(f.read_text()) if (f := folder / f"{ref}.json").is_file() else None
                     for ref, _ in TRAVEL_REFERENCES]
        cells = ["-" if m is None else f"{m['micro_auc']:.2f} / {m['macro_auc']:.2f}"
                 + (f" ({m['dev_micro_auc']:.2f})" if m.get("dev_micro_auc") is not None else "") for m in measured]
        rows.append([f"`{folder.name}`", geometry, *cells])
    return table(["check", "window, grid, schedule", *(label for _, label in TRAVEL_TERMS),
                  *(f"no learning: {label}" for _, label in TRAVEL_REFERENCES)], rows)


def travel_seeds_table() -> str:
    """The checks run with more than one seed (NAME, NAME-seed1, ...): each term's micro and macro AUC as mean
    (min-max) over the seeds, all test videos, and the dev videos' micro AUC."""
    groups: dict[str, list[dict]] = {}
    for folder in sorted(p for p in TRAVEL.iterdir() if (p / "terms.json").is_file()):
        groups.setdefault(re.sub(r"-seed\d+$", "", folder.name), []).append(
            json.loads((folder / "terms.json").read_text()))
    rows = []
    for name, runs in groups.items():
        if len(runs) < 2:
            continue
        for key, label in TRAVEL_TERMS[:3]:  # the larger of the two is in the table of every run
            def over(field: str) -> str:
                return spread([run["terms"][key][field] / 100 for run in runs])
            rows.append([f"`{name}`", str(len(runs)), label, over("micro_auc"), over("macro_auc"),
                         over("dev_micro_auc")])
    return table(["runs", "seeds", "score", "micro AUC mean (min-max)", "macro AUC mean (min-max)",
                  "dev micro AUC mean (min-max)"], rows)


def combinations_table() -> str:
    """Each way of combining the two terms (benchmarks/travel/combine.py) on every check that measured it: micro
    AUC on all test videos, and on the dev videos in brackets."""
    found = sorted((p for p in TRAVEL.iterdir() if (p / "combinations.json").is_file()),
                   key=lambda p: (p.name != "ped2", p.name))
    checks = [(folder.name, json.loads((folder / "combinations.json").read_text())) for folder in found]
    if not checks:
        return ""
    rules = list(checks[0][1]["combinations"])
    rows = [[rule] + [f"{m['micro_auc']:.2f} ({m['dev_micro_auc']:.2f})" if (m := c["combinations"].get(rule))
                      else "-" for _, c in checks] for rule in rules]
    return table(["combination"] + [f"`{name}`" for name, _ in checks], rows)


def blocks(lines: list[dict]) -> dict[str, str]:
    """Every generated block by its marker name."""
    return {"headline": headline_table(lines), "objects-3": object_tables(lines, "objects-3"),
            "objects-2": object_tables(lines, "objects-2"), "objects-1": object_tables(lines, "objects-1"),
            "dualpath-forms": forms_tables(lines), "frames": frames_table(lines),
            "references": references_table(lines), "throughput-headline": throughput_headline(),
            "throughput": throughput_table(), "throughput-objects": throughput_objects_table(),
            "score-stages": score_table(), "travel": travel_table(), "travel-seeds": travel_seeds_table(),
            "travel-combinations": combinations_table()}


PAGES = [REPO / "README.md", REPO / "docs" / "results" / "ped2.md", REPO / "docs" / "results" / "throughput.md",
         REPO / "docs" / "results" / "travel.md"]
_MARKED = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)


def render(text: str, generated: dict[str, str], page: Path) -> str:
    def one(match: re.Match) -> str:
        if match.group(2) not in generated:
            raise SystemExit(f"{page.relative_to(REPO)}: unknown results block {match.group(2)!r}")
        return f"{match.group(1)}{generated[match.group(2)]}\n{match.group(4)}"

    return _MARKED.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--index", action="store_true", help="make result paths portable, write runs.jsonl")
    what.add_argument("--write", action="store_true", help="write the tables into the pages")
    what.add_argument("--check", action="store_true", help="fail when the index or a page is out of date")
    args = parser.parse_args(argv)
    if args.index:
        for path in make_portable():
            print(f"made portable: {path}")
        INDEX.write_text(index_text(build_index()))
        print(f"wrote {INDEX.relative_to(REPO)}")
        return 0
    if args.check:
        problems = [f"machine path in {p}" for p in machine_paths_left()]
        if index_text(build_index()) != INDEX.read_text():
            problems.append(f"{INDEX.relative_to(REPO)} is not what the run folders give: run --index")
        generated = blocks(read_index())
        for page in PAGES:
            text = page.read_text()
            if render(text, generated, page) != text:
                problems.append(f"{page.relative_to(REPO)}: a generated table differs from runs.jsonl: run --write")
        for problem in problems:
            print(f"results_table.py --check: {problem}", file=sys.stderr)
        if not problems:
            print(f"results: {len(read_index())} runs in {INDEX.relative_to(REPO)}, the tables of "
                  f"{len(PAGES)} pages up to date")
        return 1 if problems else 0
    generated = blocks(read_index())
    if args.write:
        for page in PAGES:
            text = page.read_text()
            new = render(text, generated, page)
            if new != text:
                page.write_text(new)
                print(f"wrote {page.relative_to(REPO)}")
        return 0
    for name, block in generated.items():
        print(f"## {name}\n\n{block}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
