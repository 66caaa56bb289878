"""Where the DALI loader's time goes on the CPU, per step, at the geometries users train at; commit the result.

    .venv/bin/python benchmarks/profile_pipeline.py            # Ped2 jpgs from ../shared/datasets/ped2
    .venv/bin/python benchmarks/profile_pipeline.py --frames 128 --repeats 5

Each step of the CPU path runs alone on one thread over the same Ped2 frames (median of `repeats` passes):

    decode     DALI's CPU JPEG decoder (fn.decoders.image, RGB or gray), frames at their source size
    to numpy   DALI's output batch as numpy arrays (the hand-over to the host resize)
    resize     OpenCV INTER_AREA to the clip size, written channels first (resize.resize_into)
    gather     the uint8 clips cut from the decoded frames (loader.gather_spans), per clip
    float      the float32 clips in [0, 1] cut from the frames in one pass (loader.gather_unit_float): what a
               model's first access to batch.clips costs, per clip

and the loader's delivery rate (frames + clip rows, 2 threads, one training epoch) beside them. Per-clip costs use
the loader's measured frames decoded per clip. Writes
benchmarks/results/pipeline-profile-cpu.json and prints a Markdown table.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from vadgpu.threads import prefer_passive_omp_waiting

prefer_passive_omp_waiting()

import click  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vadgpu.bench.report import markdown_table  # noqa: E402
from vadgpu.bench.system import describe_system  # noqa: E402
from vadgpu.io import atomic_write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
PED2 = HERE.parent.parent / "shared" / "datasets" / "ped2"
GEOMETRIES = {"256x256 RGB T=16": ((256, 256), 3, 16), "256x256 RGB T=3": ((256, 256), 3, 3),
              "128x128 gray T=16": ((128, 128), 1, 16), "64x64 gray T=3": ((64, 64), 1, 3)}


def median_seconds(call, repeats: int) -> float:
    call()  # warm: allocations, first-use costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_step(encoded: list[np.ndarray], channels: int):
    """A one-thread DALI pipeline decoding `encoded` as one batch; returns (run, outputs-as-numpy)."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=len(encoded), num_threads=1, device_id=None, prefetch_queue_depth=1)
    def pipe():
        data = fn.external_source(source=lambda: encoded, batch=True, dtype=types.UINT8)
        return fn.decoders.image(data, device="cpu", output_type=types.GRAY if channels == 1 else types.RGB)

    p = pipe()
    p.build()
    return (lambda: p.run()[0]), (lambda out: [np.asarray(sample) for sample in out])


def loader_rate(root: Path, size, channels: int, temporal: int) -> tuple[float, float]:
    """Clips/s the DALI loader delivers (frames + rows, 2 threads) over one whole training epoch (its start
    included: a part of an epoch would count batches cut from frames decoded before the clock started), and its
    frames decoded per clip."""
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared
    from vadgpu.pipelines.loader import ClipSpec, make_loader

    prepared = load_prepared(open_dataset("ped2", root), torch.device("cpu"), progress=False, loader="dali")
    loader = make_loader(list(prepared.train), ClipSpec(temporal, size, channels), batch_size=16, device="cpu",
                         train=True, seed=0, num_threads=2)
    start = time.perf_counter()
    clips = sum(len(batch) for batch in loader)
    return clips / (time.perf_counter() - start), loader.frames_decoded_per_clip


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", type=click.Path(path_type=Path), default=PED2, show_default=True, help="UCSD Ped2 folder")
@click.option("--frames", default=96, show_default=True, help="Ped2 training frames per pass")
@click.option("--repeats", default=5, show_default=True)
def main(root: Path, frames: int, repeats: int) -> None:
    """Time each step of the CPU data path; write benchmarks/results/pipeline-profile-cpu.json."""
    from vadgpu.pipelines.loader import gather_spans, gather_unit_float
    from vadgpu.pipelines.resize import resize_into

    files = sorted((root / "training" / "frames" / "01").glob("*.jpg"))[:frames]
    if not files:
        raise click.ClickException(f"{root}: no Ped2 training frames (training/frames/01/*.jpg); pass --root")
    encoded = [np.fromfile(f, dtype=np.uint8) for f in files]
    system = describe_system(torch.device("cpu"))
    rows, out = [], {}
    for name, (size, channels, temporal) in GEOMETRIES.items():
        run, to_numpy = decode_step(encoded, channels)
        decoded = to_numpy(run())
        t_decode = median_seconds(run, repeats) / len(files)
        dali_out = run()
        t_numpy = median_seconds(lambda: to_numpy(dali_out), repeats) / len(files)
        planes = np.empty((len(files), channels, *size), np.uint8)
        t_resize = median_seconds(lambda: [resize_into(d, p) for d, p in zip(decoded, planes)], repeats) / len(files)
        frames_t = torch.from_numpy(planes)
        starts = np.random.default_rng(0).integers(0, len(files) - temporal, 16)
        clip_rows = torch.from_numpy(starts[:, None] + np.arange(temporal))  # 16 clips of T consecutive frames
        t_gather = median_seconds(lambda: gather_spans(frames_t, clip_rows), repeats) / 16
        t_float = median_seconds(lambda: gather_unit_float(frames_t, clip_rows), repeats) / 16
        rate, per_clip = loader_rate(root, size, channels, temporal)
        steps = {"decode": t_decode * per_clip, "to numpy": t_numpy * per_clip, "resize": t_resize * per_clip,
                 "gather (uint8 clips)": t_gather, "float clips (first access)": t_float}
        out[name] = {"ms_per_frame": {"decode": t_decode * 1e3, "to numpy": t_numpy * 1e3, "resize": t_resize * 1e3},
                     "ms_per_clip": {k: v * 1e3 for k, v in steps.items()},
                     "loader_clips_per_s": rate, "frames_decoded_per_clip": per_clip}
        delivered = steps["decode"] + steps["to numpy"] + steps["resize"]
        rows.append([name, f"{t_decode * 1e3:.2f}", f"{t_numpy * 1e3:.3f}", f"{t_resize * 1e3:.2f}",
                     f"{per_clip:.2f}", f"{t_gather * 1e3:.2f}", f"{t_float * 1e3:.2f}",
                     f"{1 / delivered:.0f}", f"{rate:.0f}", f"{1 / (delivered + t_float):.0f}"])
        print(f"{name}: {out[name]}", file=sys.stderr)
    if hasattr(os, "getloadavg"):
        system["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {"system": system, "frames": len(files), "repeats": repeats, "geometries": out}
    path = HERE / "results" / "pipeline-profile-cpu.json"
    atomic_write_json(path, result)
    header = ["geometry", "decode ms/frame", "to numpy ms/frame", "resize ms/frame", "frames decoded/clip",
              "gather ms/clip", "float clips ms/clip", "1 thread clips/s (decode+resize)",
              "loader clips/s (2 threads)", "1 thread clips/s incl. float clips"]
    click.echo(f"load avg {system.get('load_average_start')} -> {system.get('load_average_end')}\n"
               + markdown_table(header, rows) + f"\nwrote {path}")


if __name__ == "__main__":
    main()
