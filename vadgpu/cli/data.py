"""`vadgpu data ...`: dataset utilities (synth, prepare, boxes)."""

from __future__ import annotations

from pathlib import Path

import click

from vadgpu.cli.options import dataset_options


@click.group()
def data() -> None:
    """Make, prepare and annotate datasets."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scene", type=click.Choice(["walkway", "motion"]), default="walkway", show_default=True,
              help="walkway: small Ped2-like scene, walkers both ways, anomalies that move or look different; "
                   "motion: 640x360, one-way flow, anomalous walkers that look like the others and only move "
                   "differently (running, wrong-way, stopping, zigzag).")
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed writes the same dataset.")
@click.option("--train-videos", default=4, show_default=True, help="Number of normal training videos.")
@click.option("--test-videos", default=4, show_default=True, help="Number of test videos (one anomaly each).")
@click.option("--frames", default=120, show_default=True, help="Frames per video.")
@click.option("--frame-size", nargs=2, type=int, default=None, metavar="H W",
              help="Frame height and width (even), in the order of --resize H W. [default: 120 160; motion: 360 640]")
@click.option("--size", "old_size", nargs=2, type=int, hidden=True, help="Replaced by --frame-size H W.")
@click.option("--overwrite", is_flag=True, help="Replace a synthetic dataset written earlier to OUT.")
def synth(out: Path, scene: str, seed: int, train_videos: int, test_videos: int, frames: int,
          frame_size: tuple[int, int] | None, old_size: tuple[int, int] | None, overwrite: bool) -> None:
    """Write a small synthetic surveillance dataset (MJPEG .avi, H.264 .mp4, jpg frames, labels) to OUT.

    \b
    Example:
      vadgpu data synth data/synth --seed 0 --frames 120 --frame-size 120 160
      vadgpu data synth data/synth-motion --scene motion --train-videos 8 --test-videos 6 --frames 200
    """
    import json

    from vadgpu.data.synth import MANIFEST_NAME, make_synthetic_dataset

    if old_size is not None:  # it was W H: reading it as H W would silently swap the sides
        raise click.UsageError(f"--size W H was replaced by --frame-size H W (height first, like --resize H W): "
                               f"--frame-size {old_size[1]} {old_size[0]}")
    path = make_synthetic_dataset(out, seed=seed, train_videos=train_videos, test_videos=test_videos,
                                  frames=frames, frame_size=frame_size, overwrite=overwrite, scene=scene)
    manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    click.echo(f"synthetic dataset: {path} ({scene} scene, {train_videos} train / {test_videos} test videos, "
               f"{frames} frames, {manifest['width']}x{manifest['height']} (width x height), seed {seed})")


from vadgpu.cli.boxes import boxes as _boxes  # noqa: E402  (its own module: detection is a separate concern)

data.add_command(_boxes)


@data.command("prepare")
@dataset_options("Cache folder")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda: picks the DALI backend.")
@click.option("--loader", type=click.Choice(["dali", "torch"]), default="dali", show_default=True,
              help="Prepare for the DALI loader (its CPU or GPU decoder) or the torch loader (OpenCV decoding).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def prepare(name: str, root: Path, variant: str | None, cache: Path | None, device: str, loader: str,
            no_progress: bool) -> None:
    """Probe every video, transcode what the loader's decoder cannot read into the cache, write the manifest.

    \b
    Example:
      vadgpu data prepare --dataset ped2 --root PED2
      vadgpu data prepare --dataset synthetic --root data/synth --variant mp4 --device cpu
    """
    import time

    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.prepare import load_prepared

    started = time.perf_counter()
    dataset = open_dataset(name, root, variant=variant)
    result = load_prepared(dataset, device, cache=cache, progress=not no_progress, loader=loader)
    rows = [("split", "videos", "frames", "codecs (source -> decoded)", "transcoded")]
    for split, videos in (("train", result.train), ("test", result.test)):
        sources = sorted({result.source_codecs[v.video.path] for v in videos})
        decoded = sorted({v.codec for v in videos})
        rows.append((split, str(len(videos)), str(sum(v.num_frames for v in videos)),
                     f"{','.join(sources)} -> {','.join(decoded)}",
                     str(sum(v.decode_path != v.video.path for v in videos))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo(f"backend {result.backend}; this run probed {result.probed} and transcoded {result.transcoded_now} "
               f"video(s) in {time.perf_counter() - started:.1f} s")
    click.echo(f"manifest: {result.manifest}")



@data.command("pack")
@dataset_options(None)
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="New folder for the packed copy (must not exist).")
@click.option("--codec", type=click.Choice(["h264", "mjpeg"]), default="h264", show_default=True,
              help="Video codec of the copy.")
@click.option("--quality", type=int, default=None,
              help="H.264 crf or MJPEG quantiser, lower is better and larger. [default: 23 / 5]")
@click.option("--scale", type=float, default=None, metavar="F",
              help="Resize every frame: width and height times F, rounded to even (2.0: twice the size).")
@click.option("--resize", "size", nargs=2, type=int, default=None, metavar="H W",
              help="Resize every frame to exactly H x W (even); not with --scale.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def pack(name: str, root: Path, variant: str | None, out: Path, codec: str, quality: int | None,
         scale: float | None, size: tuple[int, int] | None, no_progress: bool) -> None:
    """Copy a dataset as small videos + .npy labels in the generic layout (read with --dataset generic).

    Every frame is kept, so labels stay aligned; OpenCV alone reads the copy, which makes it the way to carry
    a dataset to a machine without PyAV or DALI (benchmarks/gpu_check.sh takes one). --scale or --resize writes
    the same scene at another size (INTER_AREA to shrink, INTER_LINEAR to enlarge), as another camera would see
    it; pack.json in the copy records the sizes.

    \b
    Example:
      vadgpu data pack --dataset ped2 --root PED2 --out ped2-h264
      vadgpu train --dataset generic --root ped2-h264 --loader torch ...
      vadgpu data pack --dataset ped2 --root PED2 --out ped2-2x --codec mjpeg --scale 2
    """
    from vadgpu.data.catalog import open_dataset
    from vadgpu.data.pack import check_resize, pack_dataset
    from vadgpu.errors import VadgpuError
    from vadgpu.outputs import check_not_in_sources

    try:
        check_resize(scale, size)
    except VadgpuError as exc:
        raise click.UsageError(exc.format_message()) from None
    check_not_in_sources(out, "--out", [(root, "the dataset root")])
    dataset = open_dataset(name, root, variant=variant)
    result = pack_dataset(dataset, out, codec=codec, quality=quality, progress=not no_progress, scale=scale,
                          size=size)
    click.echo(f"packed {result.videos} videos ({result.frames} frames) of {name} into {result.out}: "
               f"{result.bytes / 2**20:.1f} MiB")
