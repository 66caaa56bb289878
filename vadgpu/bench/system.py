"""What a benchmark result was measured on (date, CPU, cores, load, device, versions) and its peak memory."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import sys

import numpy as np
import torch

from vadgpu.device import describe, is_cuda


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def library_versions() -> dict[str, str]:
    """Versions of the libraries on the measured path; a library that cannot load says why."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name, module in (("dali", "nvidia.dali"), ("cupy", "cupy"), ("opencv", "cv2"), ("pyav", "av")):
        try:
            out[name] = __import__(module, fromlist=["__version__"]).__version__
        except Exception as exc:  # recorded, not raised: a missing CuPy only removes the CUDA path
            out[name] = f"unavailable: {type(exc).__name__}"
    out["torch_cuda"] = str(torch.version.cuda)
    return out


def source_commit() -> dict | None:
    """The git commit of the vadgpu source that runs (and whether it has uncommitted changes), or None when it is
    not a git checkout or git is missing."""
    import subprocess
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2]  # the checkout holding vadgpu/, if it is one

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != folder:  # an installed copy inside some other repository
        return None
    commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return None if commit is None or status is None else {"commit": commit, "dirty": bool(status)}


def describe_system(device: torch.device) -> dict:
    """Date, host, CPU, cores, load average, device and versions, for the JSON and the table header."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "device": describe(device),
        "versions": library_versions(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
    return info


def _proc_status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmHWM, VmRSS) in MiB; None where there is no such file."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak host RSS of each stage (this process; and its largest finished child) and, on CUDA, peak torch GPU
    memory per stage.

    On Linux the process's peak is reset at each stage start (/proc/self/clear_refs), so `host_rss_peak_mib` is the
    stage's own peak, counting what the process held before it (the libraries: `host_rss_start_mib`); elsewhere it
    is the process-lifetime maximum (getrusage) and `host_rss_scope` says "process". The child peak is always a
    lifetime maximum over finished children (the torch loader's workers). DALI's own GPU allocations are outside
    torch's allocator and not included.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.scope = "process"
        self.start_rss: float | None = None

    def start_stage(self) -> None:
        if is_cuda(self.device):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.scope = "stage" if _reset_peak_rss() and _proc_status_mib("VmHWM") is not None else "process"
        self.start_rss = _proc_status_mib("VmRSS")

    def read(self) -> dict:
        scale = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS
        own = (_proc_status_mib("VmHWM") if self.scope == "stage"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
        out = {"host_rss_peak_mib": round(own, 1), "host_rss_scope": self.scope,
               "child_rss_peak_mib": round(children / 2**20, 1)}
        if self.start_rss is not None:
            out["host_rss_start_mib"] = round(self.start_rss, 1)
        if is_cuda(self.device):
            out["gpu_torch_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return out
