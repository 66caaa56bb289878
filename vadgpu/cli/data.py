"""`vadgpu data ...`: dataset utilities (synth, prepare, boxes)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def data() -> None:
    """Make, prepare and annotate datasets."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed writes the same dataset.")
@click.option("--train-videos", default=4, show_default=True, help="Number of normal training videos.")
@click.option("--test-videos", default=4, show_default=True, help="Number of test videos (one anomaly each).")
@click.option("--frames", default=120, show_default=True, help="Frames per video.")
@click.option("--size", nargs=2, type=int, default=(160, 120), show_default=True, metavar="W H",
              help="Frame width and height (even).")
@click.option("--overwrite", is_flag=True, help="Replace a synthetic dataset written earlier to OUT.")
def synth(out: Path, seed: int, train_videos: int, test_videos: int, frames: int, size: tuple[int, int],
          overwrite: bool) -> None:
    """Write a small synthetic surveillance dataset (MJPEG .avi, H.264 .mp4, jpg frames, labels) to OUT.

    \b
    Example:
      vadgpu data synth data/synth --seed 0 --frames 120 --size 160 120
    """
    from vadgpu.pipelines.synth import make_synthetic_dataset

    path = make_synthetic_dataset(out, seed=seed, train_videos=train_videos, test_videos=test_videos,
                                  frames=frames, size=size, overwrite=overwrite)
    click.echo(f"synthetic dataset: {path} ({train_videos} train / {test_videos} test videos, {frames} frames, "
               f"{size[0]}x{size[1]}, seed {seed})")
