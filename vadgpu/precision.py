"""The arithmetic of the networks when scoring: `fp32` (the default) or `bf16`.

With `bf16` the tube network's reconstruction (scoring/tubes.py, scoring/frames.py) and the appearance backbone
(objects/appearance.py) run under torch autocast to bfloat16; their outputs are cast back to float32 before
anything else, so errors, z-scores and frame scores are computed in float32 from them. That is faster where the
hardware has bfloat16 instructions (x86 CPUs with AVX512-BF16 or AMX, ARM CPUs with BF16, recent GPUs) and moves
the scores slightly (docs/results/throughput.md measures both). `fp32` runs exactly as without this module.
Training and calibration always run in float32 (training has its own `amp` setting). The names import without
torch (the command line's options).
"""

from __future__ import annotations

import contextlib
import re
from functools import lru_cache
from pathlib import Path

from vadgpu.errors import VadgpuError
from vadgpu.log import logger

PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")  # x86 (CPUID / cpuinfo flags) and ARM names


def check_precision(precision: str, device, onnx: bool = False) -> str:
    """`precision` if it is one of PRECISIONS, else a clear error (also for bf16 with an ONNX model, which
    onnxruntime runs in float32); logs once per process where bf16 lacks instructions on a CPU `device`."""
    if precision not in PRECISIONS:
        raise VadgpuError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "bf16" and onnx:
        raise VadgpuError("--precision bf16 runs the torch network under bfloat16 autocast; an ONNX model runs in "
                          "float32 under onnxruntime: leave --precision out")
    if precision == "bf16" and device.type == "cpu" and cpu_has_bf16() is False:
        _notice_no_bf16_cpu()
    return precision


@lru_cache(maxsize=1)
def _notice_no_bf16_cpu() -> None:
    """Once per process."""
    logger.warning("--precision bf16: this CPU has no bfloat16 instructions (AVX512-BF16, AMX or ARM BF16), so bf16 "
                   "is emulated there and likely slower than fp32; scoring goes on")


def inference_autocast(precision: str, device):
    """The context a scoring network runs in: bfloat16 autocast on `device` (a torch.device) for bf16, nothing for
    fp32."""
    if precision == "bf16":
        import torch

        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool | None:
    """Whether this CPU has bfloat16 instructions: torch's CPU capabilities where it has them, else the flags of
    /proc/cpuinfo (Linux); None when neither says."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return any(bool(found.get(flag)) for flag in BF16_FLAGS)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = set(" ".join(re.findall(r"^(?:flags|Features)\s*:(.*)$", text, re.MULTILINE)).split())
    return bool(flags & set(BF16_FLAGS)) if flags else None
