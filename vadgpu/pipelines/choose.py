"""Which clip loader runs: DALI (loader.py, each frame decoded about once) or torch (baseline.py, OpenCV decoding
in DataLoader workers, pinned memory and non-blocking copies on CUDA).

Both take the same clip index and give the same ClipBatch in the same order, so a run's results do not depend
on the choice, only its speed. `auto` is DALI where it is installed, else torch with a notice.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from vadgpu.data.types import PreparedVideo
from vadgpu.errors import VadgpuError
from vadgpu.optional import available, require
from vadgpu.pipelines.clip_index import ClipSpec

LOADERS = ("auto", "dali", "torch")
NO_DALI_NOTICE = ("NVIDIA DALI is not installed: loading clips with the torch loader (OpenCV decoding, slower); "
                  "pip install nvidia-dali-cuda120 for the DALI loader")


def resolve_loader(requested: str | None) -> tuple[str, str | None]:
    """'auto' / None / 'dali' / 'torch' -> ('dali' | 'torch', a notice for the user or None)."""
    requested = requested or "auto"
    if requested not in LOADERS:
        raise VadgpuError(f"--loader {requested!r}: choose one of {', '.join(LOADERS)}")
    if requested == "auto":
        return ("dali", None) if available("nvidia.dali") else ("torch", NO_DALI_NOTICE)
    if requested == "dali":
        require("nvidia.dali", "--loader dali")
    return requested, None


def default_workers(loader: str) -> int:
    """DataLoader worker processes of the torch loader (DALI sizes its own threads)."""
    return min(8, os.cpu_count() or 1) if loader == "torch" else 0


def open_loader(loader: str, videos: Sequence[PreparedVideo], spec: ClipSpec, *, batch_size: int,
                device: torch.device, train: bool, seed: int = 0, shard_id: int = 0, num_shards: int = 1,
                workers: int | None = None):
    """A ClipLoader of kind `loader` ('dali' or 'torch', as resolve_loader returns it) over `videos`."""
    kw = dict(batch_size=batch_size, device=device, train=train, seed=seed, shard_id=shard_id, num_shards=num_shards)
    if loader == "torch":
        from vadgpu.pipelines.baseline import make_baseline_loader

        return make_baseline_loader(videos, spec, num_workers=default_workers(loader) if workers is None else workers,
                                    **kw)
    from vadgpu.pipelines.loader import make_loader

    return make_loader(videos, spec, num_threads=workers, **kw)
