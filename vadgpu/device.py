"""Decide the device once; everything else asks this module.

CUDA available -> torch on CUDA, DALI on the GPU (NVDEC / nvJPEG), CuPy kernels.
Otherwise       -> torch on CPU, DALI's CPU backend, torch kernels.
An explicit request overrides the choice; asking for CUDA where there is none is an error, never a fallback.
"""

from __future__ import annotations

import torch

from vadgpu.errors import VadgpuError

AUTO = "auto"


def resolve_device(requested: str | torch.device | None = None) -> torch.device:
    """Turn 'auto' / None / 'cpu' / 'cuda' / 'cuda:N' (or a torch.device) into a usable torch.device."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    if requested is None or requested == AUTO:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise VadgpuError(f"--device {requested!r} is not a device name (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VadgpuError(
                f"--device {requested} asks for CUDA, but torch sees no CUDA GPU on this machine "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu or auto"
            )
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise VadgpuError(f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise VadgpuError(f"--device {requested}: vadgpu runs on cpu or cuda, not {device.type}")
    return device


def is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def dali_device_id(device: torch.device) -> int | None:
    """DALI's `device_id`: the GPU index on CUDA, None for a CPU-only pipeline."""
    return device.index if is_cuda(device) else None


def describe(device: torch.device) -> str:
    """One line naming the device, for logs and benchmark outputs."""
    if is_cuda(device):
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
