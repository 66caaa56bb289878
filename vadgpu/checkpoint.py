"""Checkpoint files: one dict per file, written atomically, read with weights_only=True.

Training writes them (engine.train), evaluation and scoring read them (evaluation.runner); both find a run's
newest one here. The RNG states inside are captured and restored by `engine.rng_state`.

A checkpoint holds
    model_name     the preset the model was built from (registry name)
    model_config   the model's config as a plain dict (model_from_checkpoint rebuilds the model from it)
    model          state_dict
    optimizer, scheduler   state_dicts (training only)
    epoch, step    progress: `epoch` = completed epochs, `step` = optimiser steps so far
    rng            RNG states (torch CPU, CUDA, numpy, python, the pseudo-anomaly generator) for an exact resume
    config         the resolved training config as a plain dict
    vadgpu_version
A run folder keeps `checkpoints/last.pt` (the newest, overwritten; what `--resume` uses), `checkpoints/epoch-NNN.pt`
every `--save-period` epochs (the newest `--keep-last` of them), and, when training finishes, `model.pt`: the
weights-only file (MODEL_KEYS: no optimiser, scheduler or RNG state, plus what scores are measured against,
computed once at the end of training: the training videos' raw scores, or an object model's calibration record)
that `vadgpu eval --run`, `vadgpu score` and `vadgpu export` read. A run extended with --resume and stopped before
its end has a last.pt newer than its model.pt; then `find_run_model` takes last.pt.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import torch

from vadgpu import __version__
from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path

LAST = "last.pt"
MODEL = "model.pt"  # in the run folder itself, beside config.yaml
EVAL_DIR = "eval"  # in the run folder: where `vadgpu eval --run` writes
# train_scores: a frame model's raw scores of its training videos (scoring/train_scores.py); calibration: an object
# model's calibration record (scoring/calibration.py); what --norm train, score and live scoring measure against
MODEL_KEYS = ("model_name", "model_config", "model", "config", "epoch", "step", "train_scores", "calibration")


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:03d}.pt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (plus the vadgpu version) to `path` atomically: a kill mid-write leaves the old file intact."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save({**state, "vadgpu_version": __version__}, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write (disk full, quota) as a RuntimeError
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(path.parent).free
            raise VadgpuError(f"cannot write checkpoint {path} (is the disk full? {free / 1e6:.0f} MB free there): "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from exc
        raise VadgpuError(f"cannot write checkpoint {path}: {exc}") from exc
    return path


def checkpoint_file(path: str | Path) -> Path:
    """The file a --checkpoint value names: `path` itself when it is a file, else the weights shipped with vadgpu
    under that name (a folder of the same name never hides them); neither is a VadgpuError."""
    from vadgpu.weights import SHIPPED, shipped_weights

    path = Path(path)
    if path.is_file():
        return path
    named = shipped_weights(path)
    if named is None:
        raise VadgpuError(f"checkpoint {path} does not exist (weights shipped with vadgpu, loadable by name: "
                          f"{', '.join(SHIPPED)})")
    return named


def shipped_name(path: str | Path) -> str | None:
    """The shipped weights' name when a --checkpoint value names them (no local file of that name), else None."""
    from vadgpu.weights import shipped_weights

    return str(path) if not Path(path).is_file() and shipped_weights(path) is not None else None


def checkpoint_record(path: str | Path) -> dict:
    """How metrics.json and export metadata name a checkpoint: its absolute path, plus `shipped` (the name) for
    weights shipped with vadgpu, whose path is the installed package's file, not a file in the current folder."""
    name = shipped_name(path)
    return {"path": str(checkpoint_file(path).resolve()), **({"shipped": name} if name is not None else {})}


def default_eval_out(checkpoint: str | Path | None, run_dir: str | Path) -> Path:
    """Where `vadgpu eval` writes without --out: RUN/eval for a run's checkpoint; for weights shipped with vadgpu
    (`--checkpoint ped2-ddl`), ./runs/eval-NAME, so that nothing it writes takes the shipped name."""
    name = None if checkpoint is None else shipped_name(checkpoint)
    if name is not None:
        return Path.cwd() / "runs" / f"eval-{name}"
    return Path(run_dir) / EVAL_DIR


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True); a missing or unreadable file is a VadgpuError naming it.

    `path` may also name weights shipped with vadgpu (vadgpu/weights: e.g. "ped2-ddl") when no such file exists."""
    from vadgpu.model_checks import check_train_scores, check_training_config, check_weights
    from vadgpu.zip_limits import check_zip_expansion

    path = checkpoint_file(path)
    check_zip_expansion(path, "checkpoint")  # a small file that would unpack to gigabytes is refused unread
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise VadgpuError(f"checkpoint {path} cannot be read ({_load_failure(exc)})") from exc
    if not isinstance(state, dict):
        raise VadgpuError(f"checkpoint {path} is not a vadgpu checkpoint (it holds a {type(state).__name__}, not a "
                          "mapping)")
    missing = {"model_name", "model_config", "model"} - set(state)
    if missing:
        raise VadgpuError(f"checkpoint {path} is not a vadgpu checkpoint (missing {', '.join(sorted(missing))})")
    for key in ("model_config", "model", "config"):
        if key in state and not isinstance(state[key], dict) and not (key == "config" and state[key] is None):
            raise VadgpuError(f"checkpoint {path} is damaged: its {key} is a {type(state[key]).__name__}, not a "
                              "mapping")
    check_weights(path, state["model"])
    check_train_scores(f"checkpoint {path}", state.get("train_scores"))
    check_training_config(path, state.get("config") or {})
    return state


def _load_failure(exc: Exception) -> str:
    """What torch.load's error says, for users: a refused pickle is named as such (torch's own text advises
    loading with weights_only=False, which would run the file's code: vadgpu never does that)."""
    text = str(exc)
    if "Weights only load failed" in text:
        found = [line.strip() for line in text.splitlines() if "GLOBAL" in line or "Unsupported" in line]
        return ("it holds Python objects other than tensors and plain data, which vadgpu refuses to load since "
                "loading them could run code" + (f": {found[0]}" if found else ""))
    first = text.strip().splitlines()[0][:300] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def save_model_file(path: str | Path, state: dict[str, Any]) -> Path:
    """The weights-only subset (MODEL_KEYS) of a training checkpoint's `state`, written atomically to `path`."""
    return save_checkpoint(path, {key: state[key] for key in MODEL_KEYS if key in state})


def prune_epoch_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest epoch-NNN.pt in `folder` (keep 0: delete none); returns what was deleted."""
    if keep <= 0:
        return []
    epochs = sorted(p for p in Path(folder).glob("epoch-*.pt") if p.stem.removeprefix("epoch-").isdigit())
    doomed = epochs[:-keep]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def find_run_model(run_dir: str | Path) -> Path:
    """What evaluation reads from a run folder: RUN/model.pt, unless checkpoints/last.pt is newer (a resumed run
    that has not finished yet) or model.pt is missing (a run stopped before its end)."""
    model = Path(run_dir) / MODEL
    last = checkpoint_dir(run_dir) / LAST
    if model.is_file() and (not last.is_file() or model.stat().st_mtime_ns >= last.stat().st_mtime_ns):
        return model
    return find_run_checkpoint(run_dir)


def find_run_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run folder (checkpoints/last.pt)."""
    path = checkpoint_dir(run_dir) / LAST
    if not path.is_file():
        raise VadgpuError(f"run folder {run_dir} has no {path.relative_to(run_dir)}; has `vadgpu train` run there?")
    return path
