"""Checkpoints: one dict per file, written atomically, read with weights_only=True.

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


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """This process's RNG states as tensors and ints (loadable with weights_only=True)."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of `capture_rng`; states missing from `state` (e.g. CUDA in a CPU checkpoint) are left alone."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
