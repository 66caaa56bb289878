"""The process's random number generators as plain data, for checkpoints and an exact resume.

`capture_rng` returns tensors and ints only (what torch.load(weights_only=True) reads back); `restore_rng`
puts them back. A checkpoint holds one such dict per rank (vadgpu.checkpoint describes the file).
"""

from __future__ import annotations

from typing import Any

import torch


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
