"""What a new user meets first: defaults that fit the machine, the presets listing, help text that matches what
each command accepts, the box cache made when a model needs one, and the files a training run leaves."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
import yaml
from click.testing import CliRunner

from vadgpu.cli.main import cli
from vadgpu.engine.components import resolve_model
from vadgpu.engine.config import TrainConfig
from vadgpu.engine.distributed import DistContext
from vadgpu.models.presets import DEFAULT_PRESETS, PRESETS, PURPOSES
from vadgpu.models.registry import default_preset, list_presets

REPO = Path(__file__).resolve().parents[1]

CPU = DistContext(0, 1, 0, torch.device("cpu"))


# ---------------------------------------------------------------- defaults and presets


@pytest.mark.parametrize("model, preset", [("ddl", "ddl-ped2-cpu"), ("dualpath", "dualpath-ped2-cpu")])
def test_default_preset_on_a_cpu_is_a_cpu_preset_and_said(model, preset, tmp_path):
    config = TrainConfig(dataset="synthetic", root="r", out=str(tmp_path), model=model, device="cpu")
    built, resolved, notices = resolve_model(config, CPU)
    assert resolved.preset == preset and built.config.size == PRESETS[preset][1]["size"]
    assert any(f"no --preset: training {preset}" in n for n in notices)
    assert default_preset(model, "cuda") == DEFAULT_PRESETS[model]["cuda"] and "cpu" not in DEFAULT_PRESETS[model][
        "cuda"]


def test_presets_command_and_train_help_list_every_preset():
    assert set(PURPOSES) == set(PRESETS)  # every preset says what it is for
    result = CliRunner().invoke(cli, ["presets"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in list_presets():
        row = next(line for line in lines if line.split()[0] == name)
        assert PURPOSES[name] in row and " M " in row + " "
    assert "98.99 M" in result.output  # ddl-paper's size, counted on the meta device
    help_text = CliRunner().invoke(cli, ["train", "--help"], terminal_width=400).output
    for name in list_presets():
        assert name in help_text


# ---------------------------------------------------------------- help text matches what is accepted


def _commands(group: click.Group, prefix=()):
    context = click.Context(group)
    for name in group.list_commands(context):  # the top group loads its commands lazily
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def test_every_value_named_in_help_is_accepted():
    """Choice options: every `value:` their help explains is one of the choices. --variant: every layout the help
    names opens in the catalog's reader. --preset: every preset named in train's help builds."""
    from vadgpu.data.catalog import PED2_VARIANTS, SYNTHETIC_VARIANTS
    from vadgpu.models.registry import architecture_of

    checked = 0
    for path, command in _commands(cli):
        for param in command.params:
            help_text = getattr(param, "help", None) or ""
            if isinstance(param.type, click.Choice):
                for value in re.findall(r"(?:^|; )([a-z][\w-]*): ", help_text):
                    assert value in param.type.choices, f"{' '.join(path)} {param.opts[0]}: {value!r} in help"
                    checked += 1
            if param.name == "variant" and "(default: from the checkpoint)" not in help_text:
                named = dict(re.findall(r"(\w+): ([\w, ]+)", help_text.split("[default")[0]))
                assert set(named) == {"synthetic", "ped2"}, (path, help_text)
                assert named["synthetic"].split(", ") == list(SYNTHETIC_VARIANTS)
                assert named["ped2"].split(", ") == list(PED2_VARIANTS)
                checked += 1
    assert checked >= 8
    score_help = CliRunner().invoke(cli, ["score", "--help"], terminal_width=400).output
    assert "train: z-score with training-set statistics" in score_help  # the ones model.pt holds
    train_help = CliRunner().invoke(cli, ["train", "--help"], terminal_width=400).output
    for name in re.findall(r"\b((?:ddl|dualpath)-[\w-]+)", train_help):
        architecture_of(name)


def test_synth_help_and_train_resize_share_the_height_width_order():
    synth_help = CliRunner().invoke(cli, ["data", "synth", "--help"], terminal_width=400).output
    train_help = CliRunner().invoke(cli, ["train", "--help"], terminal_width=400).output
    assert "--frame-size H W" in synth_help and "--resize H W" in train_help and "W H" not in synth_help


# ---------------------------------------------------------------- training: boxes, checkpoints, model.pt


def _train(synth, tmp_path, monkeypatch, *extra):
    root, _, cache = synth
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--root", str(root), "--preset", "ddl-tiny-cpu", "--out", str(run),
            "--batch-size", "8", "--device", "cpu", "--workers", "1", "--no-progress", *extra]
    return run, CliRunner().invoke(cli, args)


def test_auto_box_cache_save_period_and_weights_only_model(synth, tmp_path, monkeypatch):
    from vadgpu.checkpoint import MODEL_KEYS, find_run_model, load_checkpoint

    run, result = _train(synth, tmp_path, monkeypatch, "--epochs", "3", "--save-period", "1", "--keep-last", "2")
    assert result.exit_code == 0, result.output
    # DDL's blend needs boxes: without --boxes the background-subtraction cache is made, said, and recorded
    made = tmp_path / "cache" / next(p.name for p in (tmp_path / "cache").iterdir()) / "boxes-bgsub-both.npz"
    assert made.is_file() and str(made) in result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["boxes"] == str(made)
    assert "object-based pseudo-anomalies" not in result.output
    # one epoch file per period, only the newest two kept; last.pt has the optimiser, model.pt only the weights
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-002.pt", "epoch-003.pt", "last.pt"]
    model = load_checkpoint(run / "model.pt")
    # a frame model keeps its training scores (an object model its calibration record instead)
    assert set(model) == set(MODEL_KEYS) - {"calibration"} | {"vadgpu_version"} and "optimizer" in load_checkpoint(
        run / "checkpoints" / "last.pt")
    assert (run / "model.pt").stat().st_size < (run / "checkpoints" / "last.pt").stat().st_size
    assert find_run_model(run) == run / "model.pt"
    last_log = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert 0 < last_log["anomaly_weight"] < 1 and "sigmoid_l" not in last_log  # DDL's weight, logged once
    # the closing listing names the files that matter and the next command, not every file
    assert "model.pt" in result.output and "checkpoints/epoch-*.pt  2 file(s)" in result.output
    assert "epoch-002.pt" not in result.output and f"vadgpu eval --run {run}" in result.output
    # eval reads model.pt
    evaluated = CliRunner().invoke(cli, ["eval", "--run", str(run), "--device", "cpu", "--no-progress"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["checkpoint"]["path"] == str((run / "model.pt").resolve())
    # model.pt holds the training videos' raw scores (every frame of both), which --norm train reads
    assert [len(s) for s in model["train_scores"]["patch-max"]] == [20, 20]
    normed = CliRunner().invoke(cli, ["eval", "--run", str(run), "--device", "cpu", "--no-progress", "--norm", "train",
                                      "--out", str(run / "eval-train")])
    assert normed.exit_code == 0, normed.output
    stats = json.loads((run / "eval-train" / "metrics.json").read_text())["protocol"]["train_stats"]
    assert stats["from"].startswith("the weights file") and stats["frames"] == 40


def test_default_keeps_no_epoch_files_and_boxes_none_turns_the_blend_off(synth, tmp_path, monkeypatch):
    run, result = _train(synth, tmp_path, monkeypatch, "--max-steps", "2", "--boxes", "none")
    assert result.exit_code == 0, result.output
    assert "--boxes none: object-based pseudo-anomalies (ddl) are off" in result.output
    assert not list((tmp_path / "cache").rglob("boxes-*.npz"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"] and (run / "model.pt").is_file()
    _, objects = _train(synth, tmp_path / "o", monkeypatch, "--preset", "ddl-objects-cpu", "--max-steps", "1",
                        "--boxes", "none")
    assert objects.exit_code == 1 and "--boxes none" in objects.output and "object tubes" in objects.output


@pytest.mark.parametrize("kind", ["darknet", "ultralytics"])
def test_detector_without_weights_names_weights_and_where_they_come_from(kind, tmp_path):
    base = ["data", "boxes", "--dataset", "synthetic", "--root", str(tmp_path), "--detector", kind]
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 1 and f"--detector {kind} needs --weights FILE" in result.output
    assert "releases" in result.output and "--cfg" not in result.output.split("(default")[0]
    missing = CliRunner().invoke(cli, base + ["--weights", str(tmp_path / "yolo.weights")])
    assert missing.exit_code == 1 and f"--weights {tmp_path / 'yolo.weights'}: no such file" in missing.output


# ---------------------------------------------------------------- units


def test_people_read_percent_json_keeps_fractions(tmp_path, monkeypatch):
    import numpy as np

    from vadgpu.evaluation import plots, report
    from vadgpu.evaluation.metrics import frame_metrics

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.9, 0.2, 0.3])
    video = report.VideoScores("01", 6, np.arange(6), scores, scores, labels)
    metrics = frame_metrics({"01": (labels, scores)})
    content = report.write_eval_outputs(tmp_path, [video], metrics, {"protocol": {"score_label": "score"}})
    auc = plots.percent(metrics.micro_auc)
    assert 0 < metrics.micro_auc < 1 and content["units"].startswith("auc, eer, average_precision: fractions")
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["micro_auc"] == metrics.micro_auc
    curve, roc = figures
    assert curve.axes[0].get_title(loc="right") == f"video 01  AUC {auc} %"
    legend = [t.get_text() for t in roc.axes[0].get_legend().get_texts()]
    assert f"ROC (micro AUC {auc} %)" in legend and any(t.startswith("EER ") and t.endswith(" %") for t in legend)
    assert f"{auc:>8} %" in report.format_table(metrics)


# ---------------------------------------------------------------- what the library does to its user's process


def test_import_leaves_the_environment_alone_and_the_cli_sets_omp_waiting(monkeypatch):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, vadgpu, vadgpu.engine.train; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None"
    from vadgpu.threads import prefer_passive_omp_waiting

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    prefer_passive_omp_waiting()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    prefer_passive_omp_waiting()  # an explicit setting wins
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


HEAP_PROBE = """
import ctypes, sys
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
libc.malloc.argtypes, libc.free.argtypes = [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "cli":
    import vadgpu.cli.main
import vadgpu, vadgpu.engine.train
before = libc.mallinfo2().hblkhd
block = libc.malloc(24 << 20)  # 24 MiB, an activation's size
print(libc.mallinfo2().hblkhd - before)  # bytes served by mmap (fresh pages) instead of the heap
libc.free(block)
"""


def test_import_leaves_the_heap_alone_and_the_cli_keeps_freed_memory():
    """A 24 MiB block comes from fresh mmap'd pages in a plain process, also after `import vadgpu`; once the
    `vadgpu` command's module is loaded it comes from the heap (vadgpu/heap.py), unless glibc's variables say
    otherwise."""
    import os
    import subprocess
    import sys

    from vadgpu.heap import GLIBC_VARIABLES

    if not sys.platform.startswith("linux") or not hasattr(__import__("ctypes").CDLL(None), "mallinfo2"):
        pytest.skip("glibc >= 2.33 (mallinfo2) is needed to see where a block came from")
    env = {k: v for k, v in os.environ.items() if k not in GLIBC_VARIABLES}

    def mapped(mode: str, **extra: str) -> int:
        run = subprocess.run([sys.executable, "-c", HEAP_PROBE, mode], env={**env, **extra}, capture_output=True,
                             text=True, check=True)
        return int(run.stdout.split()[-1])

    assert mapped("library") >= 24 << 20
    assert mapped("cli") == 0
    assert mapped("cli", MALLOC_TRIM_THRESHOLD_="131072") >= 24 << 20  # the environment's own setting wins


def test_library_reports_through_the_vadgpu_logger_tensorboard_hint_once(tmp_path, monkeypatch):
    import logging
    import sys

    from vadgpu.engine import run_log
    from vadgpu.log import logger

    records = []

    class _Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    monkeypatch.setattr(run_log, "_told", set())
    handler = _Keep()
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            run = run_log.RunLogger(tmp_path / name, show_progress=False)
            run.message("a notice")
            run.close()
    finally:
        logger.removeHandler(handler)
    assert records.count(run_log.TENSORBOARD_MISSING) == 1 and "pip install tensorboard" in records[0]
    assert records.count("a notice") == 2


# ---------------------------------------------------------------- scripts and packaging


def test_benchmark_scripts_name_a_missing_dataset_without_a_traceback(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    for script in ("frame_difference.py", "object_difference.py", "appearance_knn.py"):
        done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ped2" / script), "--root",
                               str(tmp_path / "ped2")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert f"--root {tmp_path / 'ped2'}: no such folder" in done.stderr
    table = REPO / "benchmarks" / "ped2" / "results_table.py"
    done = subprocess.run([sys.executable, str(table), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage:") and "--check" in done.stdout, done.stderr
    done = subprocess.run([sys.executable, str(table), str(tmp_path / "none")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr and "Traceback" not in done.stderr


def test_package_data_matches_files_and_the_license_is_there():
    from conftest import REPO

    setup = (REPO / "setup.py").read_text()
    patterns = re.findall(r'"([\w/]+/\*\.\w+)"', setup.split("package_data=")[1].split("\n")[0])
    assert patterns and all(list((REPO / "vadgpu").glob(p)) for p in patterns), patterns
    assert (REPO / "LICENSE").read_text().startswith("MIT License") and 'license="MIT"' in setup
    # every folder of Python modules is a regular package, so find_packages installs it
    folders = {p.parent for p in (REPO / "vadgpu").rglob("*.py")}
    assert [f for f in folders if not (f / "__init__.py").is_file()] == []
    assert "AGPL-3.0" in (REPO / "README.md").read_text()


def test_print_config_shows_the_resolved_config_and_trains_nothing(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--model", "dualpath", "--epochs", "3", "--out", str(tmp_path / "r"),
                                      "--device", "cpu", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert (printed["preset"], printed["temporal"], printed["size"], printed["epochs"]) == (
        "dualpath-ped2-cpu", 8, [64, 64], 3)
    assert not (tmp_path / "r").exists()


def test_ctrl_c_while_the_command_loads_exits_130_without_a_traceback(tmp_path):
    """SIGINT arriving while torch is imported (the first second or two of any command) is a KeyboardInterrupt
    there; it ends the command as Ctrl-C does anywhere: status 130, one line."""
    script = ("import os, runpy, signal, sys\n"
              "class Trip:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'torch':\n"
              "            sys.meta_path.remove(self)\n"
              "            os.kill(os.getpid(), signal.SIGINT)\n"
              "        return None\n"
              "sys.meta_path.insert(0, Trip())\n"
              "sys.argv = ['vadgpu', 'presets']\n"
              "runpy.run_module('vadgpu', run_name='__main__')\n")
    # the command starts as from a terminal, with Ctrl-C at its default (a process that inherits SIGINT ignored
    # never sees it, and Python then installs no KeyboardInterrupt handler)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert done.stderr.strip() == "Interrupted."
