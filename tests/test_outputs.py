"""Where vadgpu writes (vadgpu/outputs.py, vadgpu/folder_lock.py): never over a file it did not write, never inside
what it reads, --overwrite only for what it wrote, shipped weights never shadowed, no lock file left behind."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vadgpu.checkpoint import save_checkpoint
from vadgpu.cli.main import cli
from vadgpu.errors import VadgpuError
from vadgpu.folder_lock import LOCK_NAME, hold_folder
from vadgpu.models.registry import build_model
from vadgpu.outputs import written_by_vadgpu

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]):
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output, result.exception


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and its sha256: what a command may not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _locks(folder: Path) -> list[Path]:
    return list(folder.rglob(LOCK_NAME))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A synthetic dataset (frame folders) and a ddl-tiny-cpu model.pt with random weights."""
    from vadgpu.data.synth import make_synthetic_dataset

    base = tmp_path_factory.mktemp("outputs")
    root = make_synthetic_dataset(base / "synth", seed=4, train_videos=1, test_videos=1, frames=20,
                                  frame_size=(48, 64), formats=("frames",))
    torch.manual_seed(0)
    model = build_model("ddl-tiny-cpu")
    run = base / "run"
    save_checkpoint(run / "model.pt", {"model_name": "ddl-tiny-cpu", "model_config": model.config.to_dict(),
                                       "model": model.state_dict(), "epoch": 1, "step": 1,
                                       "config": {"dataset": "synthetic", "root": str(root)}})
    return {"root": root, "model": run / "model.pt", "frames": root / "testing" / "frames" / "01"}


@pytest.fixture
def cwd(tmp_path, monkeypatch, media):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VADGPU_CACHE", str(tmp_path.parent / f"{tmp_path.name}-cache"))
    return tmp_path


SCORE = ["--device", "cpu", "--loader", "torch", "--no-progress"]


# ------------------------------------------------------------------------------------------------------ export


def test_export_never_replaces_a_file_it_did_not_write(media, cwd):
    notes = cwd / "notes.txt"
    notes.write_text("mine\n")
    for flags in ([], ["--overwrite"]):
        code, output, _ = _run(["export", "--checkpoint", str(media["model"]), "--format", "torchscript", "--out",
                                str(notes), *flags])
        assert code == 1 and "notes.txt exists and is not an export written by vadgpu" in output, output
        assert notes.read_text() == "mine\n"


def test_export_never_writes_over_the_checkpoint_it_reads(media, cwd):
    model = media["model"]
    before = model.read_bytes()
    for flags in ([], ["--overwrite"]):
        code, output, _ = _run(["export", "--checkpoint", str(model), "--format", "torchscript", "--out", str(model),
                                *flags])
        assert code == 1 and "is the checkpoint it exports" in output, output
    code, output, _ = _run(["export", "--checkpoint", "ped2-ddl", "--format", "torchscript", "--out",
                            str(REPO / "vadgpu" / "weights" / "other.ts")])
    assert code == 1 and "lies inside vadgpu's shipped weights" in output, output
    assert model.read_bytes() == before and not (REPO / "vadgpu" / "weights" / "other.ts").exists()


def test_export_replaces_its_own_earlier_export_only_with_overwrite(media, cwd):
    out = cwd / "model.ts"
    args = ["export", "--checkpoint", str(media["model"]), "--format", "torchscript", "--out", str(out)]
    assert _run(args)[0] == 0 and written_by_vadgpu(out, ("torchscript",))
    first = out.read_bytes()
    code, output, _ = _run(args)
    assert code == 1 and "model.ts exists (an export written earlier); pass --overwrite" in output, output
    assert out.read_bytes() == first
    code, output, _ = _run([*args, "--overwrite"])
    assert code == 0, output


# ------------------------------------------------------------------------------------------ never in a source


def test_score_into_its_input_frame_folder_is_refused_and_nothing_is_made(media, cwd):
    frames = media["frames"]
    before = _tree(frames)
    for out in (frames, frames / "scored"):
        code, output, _ = _run(["score", str(frames), "--checkpoint", str(media["model"]), "--out", str(out), *SCORE])
        assert code == 1 and "vadgpu never writes into what it reads" in output, output
        assert "the input" in output
    assert _tree(frames) == before
    code, output, _ = _run(["score", str(frames), "--checkpoint", str(media["model"]), "--out", str(cwd / "s"),
                            *SCORE])
    assert code == 0, output
    code, output, _ = _run(["score", str(frames), "--checkpoint", str(media["model"]), "--out", str(cwd / "s"),
                            *SCORE])
    assert code == 0, output  # its own earlier output is replaced, the input folder is still the input


def test_eval_out_inside_the_dataset_root_is_refused_and_nothing_is_made(media, cwd):
    root = media["root"]
    before = _tree(root)
    for out in (root / "eval", root / "testing" / "x", root):
        code, output, _ = _run(["eval", "--checkpoint", str(media["model"]), "--out", str(out), *SCORE])
        assert code == 1 and "the dataset root" in output, output
    code, output, _ = _run(["eval", "--checkpoint", str(media["model"]), "--root", str(root), "--dataset",
                            "synthetic", "--out", str(root / "e"), *SCORE])
    assert code == 1 and "lies inside the dataset root" in output, output
    assert _tree(root) == before and not (root / "eval").exists()


def test_eval_and_score_replace_their_own_outputs_never_a_users(media, cwd):
    folder = cwd / "results"
    folder.mkdir()
    (folder / "scores.csv").write_text("my,own,table\n")
    before = _tree(folder)
    code, output, _ = _run(["eval", "--checkpoint", str(media["model"]), "--out", str(folder), *SCORE])
    assert code == 1 and "holds scores.csv, which vadgpu did not write" in output, output
    code, output, _ = _run(["score", str(media["frames"]), "--checkpoint", str(media["model"]), "--out",
                            str(folder), *SCORE])
    assert code == 1 and "holds scores.csv, which vadgpu did not write" in output, output
    assert _tree(folder) == before and not _locks(folder)
    code, output, _ = _run(["eval", "--checkpoint", str(media["model"]), "--out", str(cwd / "ev"), *SCORE])
    assert code == 0, output
    assert all(written_by_vadgpu(p, anchor=cwd / "ev" / "metrics.json") for p in (cwd / "ev").rglob("*")
               if p.is_file())
    code, output, _ = _run(["eval", "--checkpoint", str(media["model"]), "--out", str(cwd / "ev"), *SCORE])
    assert code == 0, output


def test_a_foreign_heatmap_name_stops_only_the_score_that_would_write_it(media, cwd):
    folder = cwd / "scored"
    folder.mkdir()
    (folder / "01-heatmap.mp4").write_bytes(b"not vadgpu's")
    code, output, _ = _run(["score", str(media["frames"]), "--checkpoint", str(media["model"]), "--out",
                            str(folder), *SCORE])
    assert code == 0, output  # it writes no heatmap: the file is left alone
    code, output, _ = _run(["score", str(media["frames"]), "--checkpoint", str(media["model"]), "--out",
                            str(folder), "--heatmap-mp4", *SCORE])
    assert code == 1 and "holds 01-heatmap.mp4, which vadgpu did not write" in output, output
    assert (folder / "01-heatmap.mp4").read_bytes() == b"not vadgpu's"


@pytest.mark.av
def test_live_video_out_never_replaces_the_input_or_a_users_file(media, cwd):
    from vadgpu.data.synth import encode_video

    video = cwd / "clip.mp4"
    encode_video(np.zeros((10, 48, 64, 3), np.uint8), video, "mp4", "libx264", "yuv420p")
    before = video.read_bytes()
    mine = cwd / "mine.mp4"
    mine.write_bytes(before)
    base = ["score", str(video), "--live", "--checkpoint", str(media["model"]), "--norm", "none", "--device", "cpu"]
    code, output, _ = _run([*base, "--out", str(cwd / "live"), "--video-out", str(video)])
    assert code == 1 and "--video-out" in output and "is the input" in output, output
    code, output, _ = _run([*base, "--out", str(cwd / "live"), "--video-out", str(mine)])
    assert code == 1 and "mine.mp4 exists and is not a video written by vadgpu" in output, output
    assert video.read_bytes() == before == mine.read_bytes() and not (cwd / "live").exists()
    code, output, _ = _run([*base, "--out", str(cwd / "live"), "--video-out", str(cwd / "annotated.mp4")])
    assert code == 0, output
    assert written_by_vadgpu(cwd / "annotated.mp4")  # tagged: the next run may replace it
    code, output, _ = _run([*base, "--out", str(cwd / "live"), "--video-out", str(cwd / "annotated.mp4")])
    assert code == 0, output


def test_box_cache_out_inside_the_dataset_is_refused(media, cwd):
    root = media["root"]
    code, output, _ = _run(["data", "boxes", "--dataset", "synthetic", "--root", str(root), "--variant", "frames",
                            "--detector", "bgsub", "--out", str(root / "boxes.npz")])
    assert code == 1 and "lies inside the dataset root" in output, output
    assert not (root / "boxes.npz").exists()
    (cwd / "boxes.npz").write_text("mine")
    code, output, _ = _run(["data", "boxes", "--dataset", "synthetic", "--root", str(root), "--variant", "frames",
                            "--detector", "bgsub", "--out", str(cwd / "boxes.npz")])
    assert code == 1 and "is not a box cache written by vadgpu" in output, output


# ---------------------------------------------------------------------------------------------- shipped weights


def test_shipped_weights_evaluate_into_runs_and_are_never_shadowed(media, cwd):
    (cwd / "ped2-ddl").mkdir()  # what an older vadgpu left: ./ped2-ddl/eval/
    (cwd / "ped2-ddl" / "eval").mkdir()
    code, output, _ = _run(["eval", "--checkpoint", "ped2-ddl", "--dataset", "synthetic", "--root",
                            str(media["root"]), *SCORE])
    assert code == 0, output
    out = cwd / "runs" / "eval-ped2-ddl"
    assert f"writing to {out}" in output and f"wrote {out}/metrics.json" in output
    record = json.loads((out / "metrics.json").read_text())["checkpoint"]
    assert record["shipped"] == "ped2-ddl" and record["path"] == str(REPO / "vadgpu" / "weights" / "ped2-ddl.pt")
    assert sorted(p.name for p in cwd.iterdir()) == ["ped2-ddl", "runs"] and not _locks(cwd)
    code, output, _ = _run(["export", "--checkpoint", "ped2-ddl", "--format", "torchscript", "--out",
                            str(cwd / "p.ts")])
    assert code == 0, output  # the folder ./ped2-ddl does not hide the shipped weights
    from vadgpu.export import read_torchscript_metadata

    metadata = read_torchscript_metadata(cwd / "p.ts")
    assert metadata["checkpoint_shipped"] == "ped2-ddl" and metadata["checkpoint"].endswith("weights/ped2-ddl.pt")


def test_a_command_that_fails_early_leaves_nothing_behind(media, cwd):
    code, output, _ = _run(["eval", "--checkpoint", "ped2-ddl", "--dataset", "synthetic", "--root",
                            str(cwd / "no-such-root"), *SCORE])
    assert code == 1, output
    code, output, _ = _run(["score", str(media["frames"]), "--checkpoint", str(cwd / "missing.pt"), "--out",
                            str(cwd / "a" / "b"), *SCORE])
    assert code == 1, output
    code, output, _ = _run(["train", "--dataset", "synthetic", "--root", str(cwd / "nothing"), "--preset",
                            "ddl-tiny-cpu", "--out", str(cwd / "run"), "--device", "cpu"])
    assert code == 1, output
    assert list(cwd.iterdir()) == []


# ------------------------------------------------------------------------------------------------------- locks


def test_locks_do_not_outlive_their_holder(tmp_path):
    folder = tmp_path / "deep" / "out"
    with hold_folder(folder, "vadgpu eval"):
        assert (folder / LOCK_NAME).is_file()
        (folder / "metrics.json").write_text("{}")
    assert not (folder / LOCK_NAME).exists() and (folder / "metrics.json").is_file()
    empty = tmp_path / "made" / "here"
    with pytest.raises(RuntimeError):
        with hold_folder(empty, "vadgpu eval"):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "made").exists()  # the folders it created, empty again, are gone too


def test_a_killed_holders_lock_file_is_removed_by_the_next_holder(tmp_path):
    script = ("import os, sys\nfrom vadgpu.folder_lock import hold_folder\n"
              "with hold_folder(sys.argv[1], 'vadgpu score'):\n    os._exit(9)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], cwd=REPO, timeout=60)
    assert done.returncode == 9 and (tmp_path / "out" / LOCK_NAME).is_file()
    with hold_folder(tmp_path / "out", "vadgpu score"):
        pass
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_a_waiter_on_a_deleted_lock_file_takes_the_new_one(tmp_path, monkeypatch):
    """The lock file is deleted while locked; a process that opened it just before must not count as the holder
    of a file nobody else can see (two writers at once)."""
    import fcntl

    import vadgpu.folder_lock as lock_module

    folder = tmp_path / "out"
    folder.mkdir()
    real_flock = fcntl.flock
    swapped = []

    def flock_after_swap(fd, flags):  # between open and flock, the holder finished and a new file appeared
        if not swapped:
            swapped.append(True)
            (folder / LOCK_NAME).unlink()
            (folder / LOCK_NAME).write_text("")
        return real_flock(fd, flags)

    monkeypatch.setattr(lock_module.fcntl, "flock", flock_after_swap)
    (folder / LOCK_NAME).write_text("")
    with hold_folder(folder, "vadgpu eval"):
        held = (folder / LOCK_NAME).stat().st_ino
        fds = [int(p.name) for p in Path("/proc/self/fd").iterdir()]
        inodes = {Path(f"/proc/self/fd/{fd}").stat().st_ino for fd in fds if Path(f"/proc/self/fd/{fd}").exists()}
        assert held in inodes  # the descriptor it holds is the file at the path now
    assert swapped


# ------------------------------------------------------------------------------------------------ recognising


def test_vadgpu_recognises_its_own_files_by_content(media, tmp_path):
    from vadgpu.outputs import png_metadata

    assert written_by_vadgpu(media["model"])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert not written_by_vadgpu(tmp_path / "other.pt")
    (tmp_path / "config.yaml").write_text("dataset: x\nroot: y\nout: z\nlr: 0.1\n")
    (tmp_path / "other.yaml").write_text("dataset: x\nroot: y\nout: z\nmy_key: 1\n")
    assert written_by_vadgpu(tmp_path / "config.yaml") and not written_by_vadgpu(tmp_path / "other.yaml")
    (tmp_path / "metrics.json").write_text(json.dumps({"vadgpu_version": "0.1.0"}))
    (tmp_path / "mine.json").write_text(json.dumps({"name": "x"}))
    assert written_by_vadgpu(tmp_path / "metrics.json") and not written_by_vadgpu(tmp_path / "mine.json")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    Figure().savefig(tmp_path / "tagged.png", metadata=png_metadata())
    Figure().savefig(tmp_path / "plain.png")
    assert written_by_vadgpu(tmp_path / "tagged.png") and not written_by_vadgpu(tmp_path / "plain.png")
    assert written_by_vadgpu(tmp_path / "plain.png", anchor=tmp_path / "metrics.json")  # an older vadgpu's plot
    assert not written_by_vadgpu(tmp_path / "plain.png", anchor=tmp_path / "mine.json")
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "notes.jsonl").write_text('{"a": 1}\n')
    assert written_by_vadgpu(tmp_path / "events.jsonl") and not written_by_vadgpu(tmp_path / "notes.jsonl")
    with pytest.raises(VadgpuError):
        from vadgpu.outputs import check_output_file

        check_output_file(tmp_path / "mine.json", "--json", kinds=("json",))
