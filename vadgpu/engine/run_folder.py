"""The run folder `vadgpu train --out DIR` fills, and the rules that protect it.

    DIR/config.yaml              the resolved training config
    DIR/log.jsonl                one JSON record per log step (losses, sigmoid(l), lr, clips/s)
    DIR/training.png             log.jsonl drawn over steps: loss terms, DDL's anomaly_weight, lr (training_plot.py)
    DIR/model.pt                 the trained weights, no optimiser state (what `vadgpu eval --run` and score read)
    DIR/checkpoints/last.pt      the newest full checkpoint (what --resume reads), overwritten as training goes
    DIR/checkpoints/epoch-NNN.pt every --save-period epochs (none by default), the newest --keep-last kept
    DIR/tensorboard/             TensorBoard events, when tensorboard is installed
    DIR/summary.json             written when training finishes: steps, epochs, time, clips/s

A folder that already holds a run is left alone unless the user says --resume (continue it) or --overwrite
(delete the run's own files above, matched by their exact names; anything else in the folder stays, a user's
`checkpoints/my_model.pt` too). A file at one of those names counts as the run's only when its content shows
that vadgpu wrote it (outputs.written_by_vadgpu: config.yaml holds training options, model.pt a vadgpu
checkpoint, ...); a folder where any of those names holds something else is refused, --overwrite or not, since
training would replace that file. A folder counts as a run when it holds one of the run's files. An earlier
`vadgpu eval` output (`DIR/eval/`) would describe the old run, so --overwrite moves it aside and says where. The
run folder never lies inside the dataset it trains on (outputs.check_not_in_sources).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from vadgpu.checkpoint import EVAL_DIR, LAST, MODEL, checkpoint_dir
from vadgpu.engine.config import CONFIG_NAME
from vadgpu.engine.run_log import LOG_NAME, TENSORBOARD_DIR
from vadgpu.engine.training_plot import TRAINING_PLOT
from vadgpu.errors import VadgpuError

SUMMARY_NAME = "summary.json"
RUN_FILES = (CONFIG_NAME, LOG_NAME, SUMMARY_NAME, MODEL, TRAINING_PLOT)
RUN_DIRS = ("checkpoints", TENSORBOARD_DIR)


_EPOCH_CHECKPOINT = re.compile(r"^epoch-\d{3,}\.pt$")
_TENSORBOARD_EVENTS = re.compile(r"^events\.out\.tfevents\.")


def run_files(run_dir: Path) -> list[Path]:
    """The files of `run_dir` that a training run writes, by their exact names (nothing a user put there)."""
    run_dir = Path(run_dir)
    checkpoints, events = checkpoint_dir(run_dir), run_dir / TENSORBOARD_DIR
    files = [run_dir / name for name in RUN_FILES] + [checkpoints / LAST]
    files += [p for p in checkpoints.glob("epoch-*.pt") if _EPOCH_CHECKPOINT.match(p.name)]
    files += [p for p in events.glob("events.out.tfevents.*") if _TENSORBOARD_EVENTS.match(p.name)]
    return [p for p in files if p.is_file()]


def foreign_run_files(run_dir: Path) -> list[Path]:
    """The files at the run's names (RUN_FILES, checkpoints/...) that vadgpu did not write: what training would
    replace or --overwrite delete if it trusted the names alone."""
    from vadgpu.outputs import written_by_vadgpu

    anchor = Path(run_dir) / LOG_NAME if written_by_vadgpu(Path(run_dir) / LOG_NAME) else Path(run_dir) / CONFIG_NAME
    return [p for p in run_files(run_dir) if not written_by_vadgpu(p, anchor=anchor)]


def holds_run(run_dir: Path) -> bool:
    return bool(run_files(run_dir))


def check_run_out(config) -> None:
    """Before anything is created: the run folder (`config.out`) is not the dataset root nor inside it."""
    from vadgpu.outputs import check_not_in_sources

    check_not_in_sources(config.out, "--out", [(config.root or None, "the dataset root")])


def clear_run(run_dir: Path) -> None:
    """--overwrite: delete the run's own files (and their folders, once empty); move an old eval/ aside."""
    from vadgpu.io import remove_stale_temporaries

    for path in run_files(run_dir):
        path.unlink(missing_ok=True)
    for name in RUN_DIRS:
        folder = run_dir / name
        remove_stale_temporaries(folder)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    old_eval = run_dir / EVAL_DIR
    if old_eval.is_dir():
        aside = run_dir / f"{EVAL_DIR}-before-{time.strftime('%Y%m%d-%H%M%S')}"
        old_eval.rename(aside)
        click.echo(f"--overwrite: moved the old run's evaluation {old_eval} to {aside} (delete it when done)",
                   err=True)


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> Path:
    """Check (and, with overwrite, clear) the run folder; call on rank 0 only. Returns the folder."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise VadgpuError("--resume and --overwrite exclude each other: continue the run, or start it again")
    if run_dir.exists() and not run_dir.is_dir():
        raise VadgpuError(f"--out {run_dir} is a file, not a folder")
    foreign = foreign_run_files(run_dir)
    if foreign:
        names = ", ".join(str(p.relative_to(run_dir)) for p in foreign)
        raise VadgpuError(f"--out {run_dir} holds {names}, which vadgpu did not write and training would replace; "
                          "vadgpu never replaces a file it did not write (--overwrite neither): move it away or "
                          "choose another --out")
    if resume:
        if not (checkpoint_dir(run_dir) / LAST).is_file():
            raise VadgpuError(f"--resume: {run_dir} has no checkpoints/{LAST} to continue from")
        return run_dir
    if holds_run(run_dir):
        if not overwrite:
            raise VadgpuError(f"--out {run_dir} already holds a training run; pass --resume to continue it "
                              "or --overwrite to start again (deletes its checkpoints and logs)")
        clear_run(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VadgpuError(f"--out {run_dir}: cannot create the run folder ({exc.strerror})") from exc
    return run_dir


def describe_run_dir(run_dir: Path) -> str:
    """The files of the run that a user goes on with (model, checkpoint, config, log), with sizes, one per line,
    for the message at the end of training; periodic epoch checkpoints are counted, not listed."""
    roles = [(MODEL, "trained weights: what `vadgpu eval` and `vadgpu score` read"),
             (f"{checkpoint_dir('').name}/{LAST}", "full checkpoint: what --resume continues from"),
             (CONFIG_NAME, "the resolved training config"), (LOG_NAME, "losses per log step"),
             (TRAINING_PLOT, "loss terms, DDL's anomaly_weight and lr over steps"),
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
