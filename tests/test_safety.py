"""What vadgpu promises about files: nothing from a loaded file executes; writes are atomic, durable, respect the
umask and leave no orphans; one process per output folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import folder_held_elsewhere, orphan_temporary

from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path, atomic_write_text, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[1]


class _Evil:
    """Pickles as a call to os.system: whoever unpickles it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_weights(path: Path, marker: Path) -> Path:
    torch.save({"model": _Evil(f"touch {marker}")}, path)
    return path


# --------------------------------------------------------------------------------------- nothing from a file runs


def test_crafted_ultralytics_weights_run_no_code_from_the_cli(tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil_weights(tmp_path / "evil.pt", marker)
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics")}
    env.pop("ULTRALYTICS_SAFE_LOAD", None)
    done = subprocess.run([sys.executable, "-m", "vadgpu", "data", "boxes", "--dataset", "synthetic", "--root",
                           str(tmp_path), "--detector", "ultralytics", "--weights", str(evil)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert not marker.exists(), "code from the weights file ran"
    assert "evil.pt: refused" in done.stderr and "posix.system" in done.stderr and "Traceback" not in done.stderr


def test_ultralytics_loads_safely_even_when_imported_before(tmp_path):
    import ultralytics  # noqa: F401  (imported without ULTRALYTICS_SAFE_LOAD, as another library might)
    from ultralytics import YOLO

    from vadgpu.objects.detectors import UltralyticsDetector, check_ultralytics_weights

    marker = tmp_path / "pwned"
    with pytest.raises(VadgpuError, match=r"evil\.pt: refused.*posix\.system"):
        UltralyticsDetector(_evil_weights(tmp_path / "evil.pt", marker))
    assert not marker.exists()
    real = tmp_path / "yolov8n-random.pt"
    YOLO("yolov8n.yaml").save(real)  # a genuine ultralytics file: layer classes only
    check_ultralytics_weights(real)
    detector = UltralyticsDetector(real, imgsz=64)
    from ultralytics.nn import tasks

    assert tasks.SAFE_LOAD  # the restricted (weights_only + allow-list) loader did the loading
    assert detector.class_names


def test_checkpoint_loader_runs_no_code(tmp_path):
    from vadgpu.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    evil = _evil_weights(tmp_path / "evil.pt", marker)
    with pytest.raises(VadgpuError, match=r"evil\.pt cannot be read"):
        load_checkpoint(evil)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ atomic writes


def test_written_files_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o640
    old = os.umask(0o002)
    try:
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o664


def test_atomic_write_keeps_the_old_file_on_error_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_text(tmp_path / "f.txt", "x")
    assert synced[-1] == str(tmp_path.resolve())  # the folder, after the file itself
    assert synced[-2].endswith(".tmp")  # the file itself, before the rename


def test_unwritable_target_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VadgpuError, match=r"cannot write .*file/sub/out\.json"):
        atomic_write_text(blocker / "sub" / "out.json", "{}")


def test_orphaned_temporaries_are_removed_and_nothing_else(tmp_path):
    orphan = orphan_temporary(tmp_path, "last.pt")
    alive = tmp_path / f".last.pt.{os.getppid()}-zzzzzz.tmp"  # a running writer's temporary stays
    alive.write_bytes(b"in flight")
    user = tmp_path / ".notes.tmp"
    user.write_text("mine")
    assert remove_stale_temporaries(tmp_path, names=("other.pt",)) == []
    assert remove_stale_temporaries(tmp_path) == [orphan]
    assert alive.exists() and user.exists() and not orphan.exists()


def test_sigkill_mid_write_leaves_a_temporary_the_next_write_cleans(tmp_path):
    script = ("import os, sys, time\nfrom vadgpu.io import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n    open(tmp, 'w').write('half')\n"
              "    print('writing', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "metrics.json")], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and not (tmp_path / "metrics.json").exists()
    assert remove_stale_temporaries(tmp_path) == left


# ------------------------------------------------------------------------------------------------- folder locks


def test_second_process_on_a_locked_folder_is_refused_with_the_holders_pid(tmp_path):
    from vadgpu.folder_lock import hold_folder

    with folder_held_elsewhere(tmp_path / "run", "vadgpu train") as holder:
        with pytest.raises(VadgpuError, match=rf"--out .*run is in use by PID {holder.pid} \(vadgpu train\)"):
            with hold_folder(tmp_path / "run", "vadgpu eval"):
                pass
    deadline = time.monotonic() + 10
    while True:  # the kernel drops a killed holder's lock
        try:
            with hold_folder(tmp_path / "run", "vadgpu eval"):
                break
        except VadgpuError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
