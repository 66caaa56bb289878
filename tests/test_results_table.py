"""The Ped2 results check themselves: benchmarks/ped2/results_table.py --check passes on the repository and fails,
naming what differs, when a page's table, a run's scores or a path in a result file no longer agree with the index."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("results_table", REPO / "benchmarks" / "ped2" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results_table():
    return _load()


def test_the_committed_results_and_pages_agree(results_table, capsys):
    assert results_table.main(["--check"]) == 0, capsys.readouterr().err


def test_machine_paths_become_placeholders(results_table):
    portable = results_table.portable
    assert portable("/srv/data/datasets/ped2") == "$PED2"
    assert portable("/srv/data/ped2/ped2.mat") == "$PED2/ped2.mat"
    assert portable("/home/u/.cache/vadgpu/ped2-b4708702e4/boxes-bgsub-both.npz") == "$PED2_CACHE/boxes-bgsub-both.npz"
    assert portable("/home/u/vadgpu/runs/ped2/ddl-objects/model.pt") == "runs/ped2/ddl-objects/model.pt"
    assert portable("../shared/models/yolov3-tiny/yolov3-tiny.weights") == "$YOLO/yolov3-tiny.weights"
    assert results_table.machine_path("/srv/x") and results_table.machine_path("../x")
    assert not results_table.machine_path("runs/ped2/x") and not results_table.machine_path("$PED2")


# the runs the README's headline needs, and one more of each kind of table
RUNS = ["ddl-objects-looks", "ddl-objects-looks-seed1", "dualpath-objects-authors-looks", "ddl-objects-place",
        "ddl-objects-place-seed2", "ddl-objects", "dualpath-vadgpu-seed0", "dualpath-authors-seed0",
        "ddl-dynamic-lr1e-2"]


@pytest.fixture
def copy(results_table, tmp_path, monkeypatch):
    """A repository of a few runs, its pages written from them: the module's paths point there."""
    results = tmp_path / "benchmarks" / "results"
    for run in RUNS:
        shutil.copytree(REPO / "benchmarks" / "results" / "ped2" / run, results / "ped2" / run)
    for file in results_table.REFERENCES.values():
        shutil.copy(REPO / "benchmarks" / "results" / "ped2" / file, results / "ped2" / file)
    for pattern in ("throughput-*-cpu.json", "score-*-cpu.json"):
        for file in (REPO / "benchmarks" / "results").glob(pattern):
            shutil.copy(file, results / file.name)
    pages = []
    for page in ("README.md", "docs/results/ped2.md", "docs/results/throughput.md"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        pages.append(Path(shutil.copy(REPO / page, tmp_path / page)))
    for name, value in (("REPO", tmp_path), ("RESULTS", results), ("PED2", results / "ped2"),
                        ("INDEX", results / "ped2" / "runs.jsonl"), ("PAGES", pages)):
        monkeypatch.setattr(results_table, name, value)
    assert results_table.main(["--index"]) == 0 and results_table.main(["--write"]) == 0
    return tmp_path


def _check(results_table, capsys) -> tuple[int, str]:
    code = results_table.main(["--check"])
    return code, capsys.readouterr().err


def test_check_fails_when_a_page_disagrees_with_the_index(results_table, copy, capsys):
    assert _check(results_table, capsys) == (0, "")
    readme = copy / "README.md"
    text = readme.read_text()
    assert "| 3 | 97.98 (97.69-98.12) |" not in text  # two seeds in this copy
    readme.write_text(text.replace("97.90 (97.69-98.11)", "97.99 (97.69-98.11)"))
    code, err = _check(results_table, capsys)
    assert code == 1 and "README.md: a generated table differs from runs.jsonl" in err
    results_table.main(["--write"])
    assert _check(results_table, capsys) == (0, "")


def test_check_fails_when_scores_or_paths_change(results_table, copy, capsys):
    config = copy / "benchmarks" / "results" / "ped2" / "ddl-objects" / "config.yaml"
    config.write_text(config.read_text().replace("root: $PED2", "root: /srv/data/ped2"))
    code, err = _check(results_table, capsys)
    assert code == 1
    assert "machine path in benchmarks/results/ped2/ddl-objects/config.yaml: /srv/data/ped2" in err
    assert "runs.jsonl is not what the run folders give" in err  # the config digest moved too
    assert results_table.main(["--index"]) == 0 and config.read_text().count("root: $PED2") == 1
    assert _check(results_table, capsys) == (0, "")
    # a score that no longer gives the AUC its metrics.json states is refused
    scores = copy / "benchmarks" / "results" / "ped2" / "ddl-objects" / "eval" / "scores.csv"
    lines = scores.read_text().splitlines()  # video, frame, raw_score, score, label
    normal = next(i for i, line in enumerate(lines) if line.endswith(",0"))
    lines[normal] = ",".join([*lines[normal].split(",")[:3], "999", "0"])  # a normal frame now scores highest
    scores.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match="ddl-objects/eval: scores.csv gives AUC"):
        results_table.main(["--check"])
