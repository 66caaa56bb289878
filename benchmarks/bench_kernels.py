"""Time each pseudo-anomaly kernel (median of repeats) with the torch backend and, on a GPU, the CuPy backend.

    .venv/bin/python benchmarks/bench_kernels.py                 # small preset: N=8, C=1, 64x64, T=3 and T=16
    .venv/bin/python benchmarks/bench_kernels.py --device cuda   # adds the CuPy column and the speed-up

Writes benchmarks/results/kernels-<host kind>.json (host kind: "cpu", or the GPU's name such as
"nvidia-h100-80gb-hbm3") with the date, hardware, library versions and one row per (T, kernel).
On CUDA every repeat is timed between two synchronisations, so a row is the full kernel time, not a launch.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from vadgpu import kernels as K
from vadgpu.device import describe, resolve_device
from vadgpu.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
MAX_SKIP = 5
KERNELS = ("skip_frames", "shuffle_motion", "gaussian_noise", "paste_patches", "ddl_blend", "policy_all_kinds")


class Batch:
    def __init__(self, clips: torch.Tensor, window: torch.Tensor):
        self.clips, self.window = clips, window


def make_inputs(n: int, c: int, t: int, size: int, device: torch.device, seed: int = 0) -> dict:
    """A random batch with a window for skips, one drifting box per sample (1 in 4 without object), a bank."""
    g = torch.Generator(device=device).manual_seed(seed)
    clips = torch.rand(n, c, t, size, size, generator=g, device=device)  # (N, C, T, H, W)
    window = torch.rand(n, c, MAX_SKIP * (t - 1) + 1, size, size, generator=g, device=device)
    corner = 0.1 + 0.4 * torch.rand(n, 1, 2, generator=g, device=device)  # (N, 1, 2)
    drift = torch.linspace(0, 0.1, t, device=device)[None, :, None]  # (1, T, 1)
    boxes = torch.cat([corner + drift, corner + 0.35 + drift], dim=2).clamp(0, 1)  # (N, T, 4)
    valid = torch.arange(n, device=device) % 4 != 3
    patches = torch.rand(64, c, 32, 32, generator=g, device=device)  # (P, C, h, w) like a CIFAR bank
    return dict(batch=Batch(clips, window), boxes=boxes, valid=valid, patches=patches,
                skips=torch.randint(2, MAX_SKIP + 1, (n,), generator=g, device=device),
                logit=torch.zeros((), device=device, requires_grad=True))


def kernel_calls(x: dict, backend: str) -> dict:
    """name -> a zero-argument call running that kernel once on `x` (None where it does not apply)."""
    clips, t = x["batch"].clips, x["batch"].clips.shape[2]
    g = torch.Generator(device=clips.device).manual_seed(1)
    kinds = ["skip", "noise", "patch", "ddl"] + (["shuffle"] if t >= 4 else [])
    policy = K.PseudoAnomalyPolicy(0.5, kinds, backend=backend)
    return {
        "skip_frames": lambda: K.skip_frames(x["batch"].window, x["skips"], t, backend=backend),
        "shuffle_motion": (lambda: K.shuffle_motion(clips, g, backend=backend)) if t >= 4 else None,
        "gaussian_noise": lambda: K.gaussian_noise(clips, 0.1, g, backend=backend),
        "paste_patches": lambda: K.paste_patches(clips, x["boxes"], x["valid"], x["patches"], g, backend=backend),
        "ddl_blend": lambda: K.ddl_blend(clips, x["boxes"], x["valid"], x["logit"], g, backend=backend),
        "policy_all_kinds": lambda: policy(x["batch"], x["boxes"], x["valid"], x["patches"], g, logit=x["logit"]),
    }


def median_ms(call, device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median wall time of `call` in milliseconds, synchronising around each repeat on CUDA."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):  # first calls compile CuPy kernels and fill caches
            call()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def host_kind(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    try:
        import cupy

        out["cupy"] = cupy.__version__
    except Exception as exc:  # record why there is no CuPy column
        out["cupy"] = f"unavailable: {exc}"
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--batch", "n", default=8, show_default=True, help="clips per batch (N)")
@click.option("--channels", default=1, show_default=True, type=click.Choice(["1", "3"]), help="C")
@click.option("--size", default=64, show_default=True, help="frame height = width")
@click.option("--temporal", default="3,16", show_default=True, help="comma-separated clip lengths T")
@click.option("--repeats", default=20, show_default=True, help="timed repeats per kernel (median reported)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="result file (default benchmarks/results/kernels-<host kind>.json)")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def main(device, n, channels, size, temporal, repeats, out, threads, no_progress):
    """Benchmark the pseudo-anomaly kernels: torch backend, and CuPy on a GPU."""
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    temporals = [int(t) for t in temporal.split(",")]
    backends = ["torch", "cupy"] if device.type == "cuda" else ["torch"]
    rows = []
    jobs = [(t, name) for t in temporals for name in KERNELS]
    bar = tqdm(jobs, desc="kernels", disable=no_progress or not sys.stderr.isatty())
    inputs = {t: make_inputs(n, int(channels), t, size, device) for t in temporals}
    for t, name in bar:
        row = {"temporal": t, "kernel": name}
        for backend in backends:
            call = kernel_calls(inputs[t], backend)[name]
            row[f"{backend}_ms"] = None if call is None else round(median_ms(call, device, repeats), 4)
        if row.get("cupy_ms") and row.get("torch_ms"):
            row["speedup"] = round(row["torch_ms"] / row["cupy_ms"], 2)
        if row["torch_ms"] is None:
            row["note"] = f"motion shuffling needs T >= 4 (T={t} has no valid permutation)"
        rows.append(row)

    result = {
        "benchmark": "kernels",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hardware": {"device": describe(device), "host": platform.node(), "cpu": platform.processor() or
                     platform.machine(), "torch_threads": torch.get_num_threads(),
                     # other work on a shared machine slows the CPU rows; the load says how busy it was
                     "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "versions": versions(),
        "preset": {"batch": n, "channels": int(channels), "size": [size, size], "temporal": temporals,
                   "max_skip": MAX_SKIP, "patch_bank": [64, int(channels), 32, 32], "repeats": repeats},
        "columns": {"torch_ms": "median ms, torch backend", "cupy_ms": "median ms, CuPy kernels (GPU only)",
                    "speedup": "torch_ms / cupy_ms"},
        "results": rows,
    }
    out = out or RESULTS / f"kernels-{host_kind(device)}.json"
    atomic_write_json(out, result)
    header = f"{'T':>3} {'kernel':18s} " + " ".join(f"{b + ' ms':>10s}" for b in backends)
    click.echo(f"{describe(device)}, N={n} C={channels} {size}x{size}, median of {repeats}\n{header}")
    for row in rows:
        cells = " ".join(f"{row[b + '_ms']:10.3f}" if row[b + "_ms"] is not None else f"{'-':>10s}" for b in backends)
        extra = f"  x{row['speedup']}" if "speedup" in row else ""
        click.echo(f"{row['temporal']:>3} {row['kernel']:18s} {cells}{extra}")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
