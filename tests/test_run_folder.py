"""The run folder's promises: --out is the run folder, always; --overwrite deletes only what a run wrote; one
training per folder at a time; a resumed run keeps config.yaml and summary.json true."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import folder_held_elsewhere, orphan_temporary, read_only_folder

from vadgpu.checkpoint import load_checkpoint
from vadgpu.cli.main import cli
from vadgpu.engine.run_folder import holds_run, prepare_run_dir
from vadgpu.errors import VadgpuError

def _train_args(root: Path, boxes: Path, out: Path | str, *extra: str) -> list[str]:
    return ["train", "--dataset", "synthetic", "--root", str(root), "--preset", "ddl-tiny-cpu", "--out", str(out),
            "--epochs", "1", "--batch-size", "4", "--boxes", str(boxes), "--device", "cpu", "--workers", "1",
            "--log-every", "1", "--no-progress", *extra]


def _invoke(args: list[str]):
    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    """A run stopped after 2 steps (--max-steps 2): (dataset root, boxes, the run folder)."""
    root, boxes, cache = synth
    mp = pytest.MonkeyPatch()
    mp.setenv("VADGPU_CACHE", str(cache))
    run = tmp_path_factory.mktemp("trained") / "run"
    result = _invoke(_train_args(root, boxes, run, "--max-steps", "2"))
    assert result.exit_code == 0, result.output
    yield root, boxes, run
    mp.undo()


# ---------------------------------------------------------------------------------------------- --overwrite


def test_overwrite_deletes_only_the_files_a_run_wrote(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained[2], run)
    shutil.copy(run / "checkpoints" / "last.pt", run / "checkpoints" / "epoch-001.pt")
    (run / "tensorboard").mkdir(exist_ok=True)
    (run / "tensorboard" / "events.out.tfevents.1.host.2.0").write_text("events")
    ours = ["config.yaml", "log.jsonl", "model.pt", "checkpoints/last.pt", "checkpoints/epoch-001.pt",
            "tensorboard/events.out.tfevents.1.host.2.0"]
    assert all((run / n).is_file() for n in ours)
    users = ["notes.txt", "checkpoints/my_best_model.pt", "checkpoints/epoch-best.pt", "tensorboard/README"]
    for name in users + ["eval/metrics.json"]:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(name)
    with pytest.raises(VadgpuError, match="already holds a training run"):
        prepare_run_dir(run, resume=False, overwrite=False)
    prepare_run_dir(run, resume=False, overwrite=True)
    assert [n for n in ours if (run / n).exists()] == []
    assert all((run / n).read_text() == n for n in users)
    assert not (run / "eval").exists()  # the old evaluation does not sit beside the new run ...
    aside = [p for p in run.iterdir() if p.name.startswith("eval-before-")]
    assert len(aside) == 1 and (aside[0] / "metrics.json").read_text() == "eval/metrics.json"  # ... nor is it lost
    assert str(aside[0]) in capsys.readouterr().err  # and the user is told where it went


def _users_files(folder: Path) -> dict[str, bytes]:
    """A user's own files that share a run file's name: a YAML config of another tool, a torch file that is no
    vadgpu checkpoint, a text file named model.pt, a PNG."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("learning_rate: 0.1\nlayers: 3\n")
    torch.save({"weights": torch.zeros(3)}, folder / "summary.json")  # any bytes under a run file's name
    (folder / "model.pt").write_text("x\n")
    (folder / "training.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    (folder / "checkpoints").mkdir(exist_ok=True)
    torch.save({"state": torch.ones(2)}, folder / "checkpoints" / "last.pt")
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_users_files_under_run_names_are_never_replaced_overwrite_or_not(trained, tmp_path):
    root, boxes, _ = trained
    home = tmp_path / "home"
    before = _users_files(home)
    for flags in ([], ["--overwrite"]):
        result = _invoke(_train_args(root, boxes, home, "--max-steps", "1", *flags))
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert "which vadgpu did not write" in result.output and "config.yaml" in result.output
        assert "checkpoints/last.pt" in result.output and "model.pt" in result.output
        assert {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file()} == before
    with pytest.raises(VadgpuError, match=r"holds config\.yaml, summary\.json, model\.pt, training\.png, "
                                          r"checkpoints/last\.pt, which vadgpu did not write"):
        prepare_run_dir(home, resume=False, overwrite=True)


def test_a_run_folder_inside_the_dataset_is_refused_before_anything_is_made(trained):
    root, boxes, _ = trained
    result = _invoke(_train_args(root, boxes, root / "runs" / "x", "--max-steps", "1"))
    assert result.exit_code == 1 and "lies inside the dataset root" in result.output, result.output
    assert not (root / "runs").exists()
    result = _invoke(_train_args(root, boxes, root, "--max-steps", "1"))
    assert result.exit_code == 1 and f"--out {root} is the dataset root" in result.output, result.output


def test_a_folder_with_a_users_checkpoints_is_no_run(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "my_best_model.pt").write_text("mine")
    (tmp_path / "tensorboard").mkdir()
    assert not holds_run(tmp_path)
    prepare_run_dir(tmp_path, resume=False, overwrite=False)  # a fresh run may start there
    assert (tmp_path / "checkpoints" / "my_best_model.pt").read_text() == "mine"


# ----------------------------------------------------------------------------------- --out is the run folder


def test_resume_continues_in_the_folder_given_by_out(trained, tmp_path, monkeypatch):
    root, boxes, run = trained
    before = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    orphans = [orphan_temporary(copy / "checkpoints", "last.pt"), orphan_temporary(copy, "config.yaml")]
    result = _invoke(["train", "--out", str(copy), "--resume", "--max-steps", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in orphans)  # a killed writer's temporaries are gone at the next start
    assert load_checkpoint(copy / "checkpoints" / "last.pt")["step"] == 3
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == before  # the original is untouched
    assert yaml.safe_load((copy / "config.yaml").read_text())["out"] == str(copy.resolve())
    moved = tmp_path / "elsewhere" / "moved"  # a moved run, resumed by a relative --out from another folder
    moved.parent.mkdir()
    shutil.move(str(copy), moved)
    monkeypatch.chdir(moved.parent)
    result = _invoke(["train", "--out", "moved", "--resume", "--max-steps", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(moved / "checkpoints" / "last.pt")["step"] == 4
    assert yaml.safe_load((moved / "config.yaml").read_text())["out"] == str(moved.resolve())


def test_resumed_finished_run_keeps_summary_and_config_true(trained, tmp_path):
    _, _, run = trained
    done = tmp_path / "done"
    shutil.copytree(run, done)
    finish = ["train", "--out", str(done), "--resume", "--epochs", "2", "--max-steps", "1000", "--no-progress"]
    result = _invoke(finish)
    assert result.exit_code == 0, result.output
    summary = json.loads((done / "summary.json").read_text())
    assert summary["seconds"] > 0 and summary["epochs"] == 2
    result = _invoke(finish)  # nothing left to train
    assert result.exit_code == 0, result.output
    assert json.loads((done / "summary.json").read_text()) == summary  # its timing is not zeroed
    result = _invoke(finish[:4] + ["--epochs", "1", "--no-progress"])
    assert result.exit_code == 1 and "--epochs 1: the run in" in result.output
    assert "has trained 2 epochs already" in result.output
    assert yaml.safe_load((done / "config.yaml").read_text())["epochs"] == 2  # config.yaml still matches


# ------------------------------------------------------------------------------------------------- one at a time


def test_second_training_in_a_held_folder_is_refused_naming_the_pid(trained, tmp_path):
    root, boxes, run = trained
    target = tmp_path / "busy"
    with folder_held_elsewhere(target, "vadgpu train") as holder:
        result = _invoke(_train_args(root, boxes, target, "--max-steps", "1"))
        assert result.exit_code == 1, result.output
        assert f"is in use by PID {holder.pid} (vadgpu train)" in result.output
        assert not (target / "log.jsonl").exists() and not (target / "config.yaml").exists()


def test_second_evaluation_into_a_held_folder_is_refused(trained):
    _, _, run = trained
    with folder_held_elsewhere(run / "eval", "vadgpu eval") as holder:
        result = _invoke(["eval", "--run", str(run), "--device", "cpu", "--no-progress"])
        assert result.exit_code == 1 and f"is in use by PID {holder.pid} (vadgpu eval)" in result.output


# ------------------------------------------------------------------------------------------- unwritable --out


def test_unwritable_out_is_one_clear_error(trained, tmp_path):
    root, boxes, run = trained
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (_train_args(root, boxes, blocker / "run", "--max-steps", "1"),
                 ["eval", "--run", str(run), "--out", str(blocker / "eval"), "--device", "cpu"]):
        result = _invoke(args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output  # no traceback
        assert f"--out {blocker}/" in result.output and "cannot write there" in result.output
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only_folder(locked):
        for args in (_train_args(root, boxes, locked / "run", "--max-steps", "1"),
                     ["eval", "--run", str(run), "--out", str(locked / "eval"), "--device", "cpu"]):
            result = _invoke(args)
            assert result.exit_code == 1 and "cannot write there" in result.output, result.output
            assert str(locked) in result.output
