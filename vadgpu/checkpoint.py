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
A run folder keeps `checkpoints/last.pt` (the newest; what `--resume` and `vadgpu eval --run` use) and
`checkpoints/epoch-NNN.pt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vadgpu import __version__
from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path

LAST = "last.pt"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (plus the vadgpu version) to `path` atomically: a kill mid-write leaves the old file intact."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**state, "vadgpu_version": __version__}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True); a missing or unreadable file is a VadgpuError naming it."""
    path = Path(path)
    if not path.is_file():
        raise VadgpuError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise VadgpuError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    missing = {"model_name", "model_config", "model"} - set(state)
    if missing:
        raise VadgpuError(f"checkpoint {path} is not a vadgpu checkpoint (missing {', '.join(sorted(missing))})")
    return state


def find_run_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run folder (checkpoints/last.pt)."""
    path = checkpoint_dir(run_dir) / LAST
    if not path.is_file():
        raise VadgpuError(f"run folder {run_dir} has no {path.relative_to(run_dir)}; has `vadgpu train` run there?")
    return path
