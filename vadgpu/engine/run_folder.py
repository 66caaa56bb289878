"""The run folder `vadgpu train --out DIR` fills, and the rules that protect it.

    DIR/config.yaml              the resolved training config
    DIR/log.jsonl                one JSON record per log step (losses, sigmoid(l), lr, clips/s)
    DIR/model.pt                 the trained weights, no optimiser state (what `vadgpu eval --run` and score read)
    DIR/checkpoints/last.pt      the newest full checkpoint (what --resume reads), overwritten as training goes
    DIR/checkpoints/epoch-NNN.pt every --save-period epochs (none by default), the newest --keep-last kept
    DIR/tensorboard/             TensorBoard events, when tensorboard is installed
    DIR/summary.json             written when training finishes: steps, epochs, time, clips/s

A folder that already holds a run is left alone unless the user says --resume (continue it) or --overwrite
(delete the run's own files above; anything else in the folder stays).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vadgpu.checkpoint import LAST, MODEL, checkpoint_dir
from vadgpu.engine.config import CONFIG_NAME
from vadgpu.engine.run_log import LOG_NAME, TENSORBOARD_DIR
from vadgpu.errors import VadgpuError

SUMMARY_NAME = "summary.json"
RUN_FILES = (CONFIG_NAME, LOG_NAME, SUMMARY_NAME, MODEL)
RUN_DIRS = ("checkpoints", TENSORBOARD_DIR)


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RUN_FILES + RUN_DIRS)


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> Path:
    """Check (and, with overwrite, clear) the run folder; call on rank 0 only. Returns the folder."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise VadgpuError("--resume and --overwrite exclude each other: continue the run, or start it again")
    if run_dir.exists() and not run_dir.is_dir():
        raise VadgpuError(f"--out {run_dir} is a file, not a folder")
    if resume:
        if not (checkpoint_dir(run_dir) / LAST).is_file():
            raise VadgpuError(f"--resume: {run_dir} has no checkpoints/{LAST} to continue from")
        return run_dir
    if holds_run(run_dir):
        if not overwrite:
            raise VadgpuError(f"--out {run_dir} already holds a training run; pass --resume to continue it "
                              "or --overwrite to start again (deletes its checkpoints and logs)")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        for name in RUN_DIRS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def describe_run_dir(run_dir: Path) -> str:
    """The files of the run that a user goes on with (model, checkpoint, config, log), with sizes, one per line,
    for the message at the end of training; periodic epoch checkpoints are counted, not listed."""
    roles = [(MODEL, "trained weights: what `vadgpu eval` and `vadgpu score` read"),
             (f"{checkpoint_dir('').name}/{LAST}", "full checkpoint: what --resume continues from"),
             (CONFIG_NAME, "the resolved training config"), (LOG_NAME, "losses per log step"),
             (SUMMARY_NAME, "steps, time, clips/s")]
    lines = []
    for name, role in roles:
        path = run_dir / name
        if path.is_file():
            lines.append(f"  {name:<20} {path.stat().st_size / 1e6:8.2f} MB  {role}")
    epochs = sorted(checkpoint_dir(run_dir).glob("epoch-*.pt"))
    if epochs:
        lines.append(f"  {checkpoint_dir('').name}/epoch-*.pt  {len(epochs)} file(s), "
                     f"{sum(p.stat().st_size for p in epochs) / 1e6:.2f} MB")
    return "\n".join(lines)
