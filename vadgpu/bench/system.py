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


class PeakMemory:
    """Peak host RSS (this process and its largest finished child) and, on CUDA, peak torch GPU memory per stage.

    Host RSS peaks are process-lifetime maxima (getrusage), so a stage's value is the peak *so far*; the GPU peak
    is reset at each stage start. DALI's own GPU allocations are outside torch's allocator and not included.
    """

    def __init__(self, device: torch.device):
        self.device = device

    def start_stage(self) -> None:
        if is_cuda(self.device):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict[str, float]:
        scale = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
        out = {"host_rss_peak_mib": round(own / 2**20, 1), "child_rss_peak_mib": round(children / 2**20, 1)}
        if is_cuda(self.device):
            out["gpu_torch_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return out
