"""Compile the CUDA kernel sources with NVRTC, without a GPU.

NVRTC is a host library, so a machine without a GPU (CI) can still compile every kernel for the architectures
vadgpu targets and fail the test suite on a kernel error. We drive the low-level `cupy.cuda.nvrtc` API
directly (createProgram / compileProgram / getPTX) instead of `cupy.RawModule`, which would also try to load the
module on a device.

The NVRTC library comes from the nvidia-cuda-nvrtc-cu12 wheel (matching cupy-cuda12x). CuPy finds NVRTC through
`cuda.pathfinder`, which prefers a library that is already loaded, so `load_nvrtc()` loads the wheel's
libnvrtc first (see `preload_wheel_nvrtc` for the case where torch already loaded another NVRTC).

    python -m vadgpu.kernels.nvrtc      # compile every kernel for compute_80 and compute_90, print a summary
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vadgpu.errors import VadgpuError

CUDA_DIR = Path(__file__).with_name("cuda")
ARCHS = ("compute_80", "compute_90")
# --fmad=false: no fused multiply-add contraction, so each float operation rounds like the torch reference's.
COMPILE_OPTIONS = ("--std=c++17", "--fmad=false")
NVRTC_WHEEL = "nvidia-cuda-nvrtc-cu12"


@dataclass(frozen=True)
class CompileResult:
    source: str  # file name under kernels/cuda/
    arch: str  # e.g. compute_80
    entries: tuple[str, ...]  # kernels (.entry) in the PTX
    ptx_bytes: int
    log: str  # NVRTC's log (warnings), empty when clean
    nvrtc: str  # NVRTC version that compiled it, e.g. "12.9"


def kernel_sources() -> dict[str, Path]:
    """Every CUDA source the package ships, by file name."""
    sources = {path.name: path for path in sorted(CUDA_DIR.glob("*.cu"))}
    if not sources:
        raise VadgpuError(f"no CUDA kernel sources (*.cu) found in {CUDA_DIR}; the vadgpu install is incomplete")
    return sources


def _wheel_library() -> Path:
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    if spec is None or not spec.submodule_search_locations:
        raise VadgpuError(
            f"the {NVRTC_WHEEL} wheel is not installed (python package nvidia.cuda_nvrtc); "
            f"`pip install {NVRTC_WHEEL}` provides the NVRTC library CuPy compiles kernels with"
        )
    patterns = ("bin/nvrtc64_12*.dll",) if sys.platform.startswith("win") else ("lib/libnvrtc.so.12",)
    for root in spec.submodule_search_locations:
        for pattern in patterns:
            found = sorted(glob.glob(os.path.join(root, pattern)))
            if found:
                return Path(found[0])
    raise VadgpuError(
        f"the {NVRTC_WHEEL} wheel at {list(spec.submodule_search_locations)} has no libnvrtc.so.12; "
        f"reinstall it (`pip install --force-reinstall {NVRTC_WHEEL}`)"
    )


@functools.lru_cache(maxsize=1)
def preload_wheel_nvrtc() -> Path:
    """dlopen the wheel's libnvrtc globally, so CuPy (through cuda.pathfinder) can bind this loaded copy.

    cuda.pathfinder takes an already-loaded libnvrtc.so.13 before .so.12, and a CUDA-13 build of torch loads
    .so.13 on import: in such a process CuPy binds NVRTC 13 unless it was bound before torch was imported.
    `compile_all` therefore compiles in a fresh interpreter when the current one is bound to another NVRTC.
    """
    library = _wheel_library()
    try:
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise VadgpuError(f"cannot load NVRTC from {library}: {exc}") from exc
    return library


@functools.lru_cache(maxsize=1)
def load_nvrtc() -> tuple[Path, tuple[int, int]]:
    """Load the wheel's NVRTC and return (its path, the NVRTC version CuPy is bound to in this process)."""
    library = preload_wheel_nvrtc()
    from cupy.cuda import nvrtc

    try:
        version = tuple(nvrtc.getVersion())
    except Exception as exc:  # CuPy's loader raises several types (RuntimeError, its own errors)
        raise VadgpuError(f"CuPy cannot use NVRTC (loaded {library}): {exc}") from exc
    return library, version


def cupy_cuda_major() -> int | None:
    """The CUDA major version of the installed CuPy wheel (cupy-cuda12x -> 12), None for a source build."""
    from importlib import metadata

    for major in (13, 12, 11):
        try:
            metadata.version(f"cupy-cuda{major}x")
        except metadata.PackageNotFoundError:
            continue
        return major
    return None


def prepare_runtime_nvrtc() -> None:
    """Before CuPy compiles a kernel at run time: a CUDA-12 CuPy binds the nvidia-cuda-nvrtc-cu12 wheel's NVRTC
    where that wheel is installed; any other CuPy (cupy-cuda13x brings NVRTC through its CUDA 13 dependencies)
    finds its own, and the wheel is not asked for."""
    if cupy_cuda_major() == 12 and importlib.util.find_spec("nvidia.cuda_nvrtc") is not None:
        load_nvrtc()


def entry_points(ptx: str) -> tuple[str, ...]:
    """Names of the kernels (`.entry`) defined in a PTX text."""
    return tuple(re.findall(r"\.entry\s+([A-Za-z_][A-Za-z0-9_]*)", ptx))


def compile_source(path: Path, arch: str, options: tuple[str, ...] = COMPILE_OPTIONS) -> CompileResult:
    """Compile one .cu file to PTX for `arch` in this process; an error raises VadgpuError with NVRTC's log."""
    _, version = load_nvrtc()
    from cupy.cuda import nvrtc

    source = Path(path).read_text(encoding="utf-8")
    program = nvrtc.createProgram(source, Path(path).name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"--gpu-architecture={arch}", *options])
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(program).strip("\x00").strip()
            raise VadgpuError(f"CUDA kernel {path} does not compile for {arch}: {exc}\n{log}") from exc
        log = nvrtc.getProgramLog(program).strip("\x00").strip()
        ptx = nvrtc.getPTX(program)
        if isinstance(ptx, bytes):
            ptx = ptx.decode("utf-8", errors="replace")
    finally:
        nvrtc.destroyProgram(program)
    return CompileResult(Path(path).name, arch, entry_points(ptx), len(ptx), log, f"{version[0]}.{version[1]}")


# Run in a fresh interpreter: bind CuPy to the wheel's NVRTC before anything (torch) loads another one.
_FRESH = """
import ctypes, json, sys
ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
from cupy.cuda import nvrtc
nvrtc.getVersion()
from dataclasses import asdict
from vadgpu.errors import VadgpuError
from vadgpu.kernels.nvrtc import compile_source
try:
    results = [asdict(compile_source(path, arch)) for path in sys.argv[3:] for arch in sys.argv[2].split(",")]
except VadgpuError as exc:
    sys.exit(str(exc))
print(json.dumps(results))
"""


def compile_all(sources: list[Path] | None = None, archs: tuple[str, ...] = ARCHS) -> list[CompileResult]:
    """Compile kernel sources (default: every shipped one) for every arch with the wheel's NVRTC (12.x)."""
    paths = [Path(p) for p in (sources if sources is not None else kernel_sources().values())]
    library, version = load_nvrtc()
    if version[0] == 12:
        return [compile_source(path, arch) for path in paths for arch in archs]
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, str(library), ",".join(archs), *map(str, paths)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        raise VadgpuError(proc.stderr.strip()[-4000:] or f"the NVRTC compile check exited with {proc.returncode}")
    results = [CompileResult(**{**r, "entries": tuple(r["entries"])}) for r in json.loads(proc.stdout)]
    if any(not r.nvrtc.startswith("12.") for r in results):
        raise VadgpuError(f"the fresh interpreter did not bind CuPy to {library} ({results[0].nvrtc})")
    return results


def main() -> None:
    library, _ = load_nvrtc()
    for result in compile_all():
        warn = f"  log: {result.log}" if result.log else ""
        print(f"{result.source:14s} {result.arch}: NVRTC {result.nvrtc} ({library.name}), {result.ptx_bytes:6d} "
              f"bytes PTX, kernels {', '.join(result.entries)}{warn}")


if __name__ == "__main__":
    main()
