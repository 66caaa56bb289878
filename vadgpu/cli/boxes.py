"""`vadgpu data boxes`: detect and track objects once, cache the boxes for object-level pseudo-anomalies."""

from __future__ import annotations

from pathlib import Path

import click

from vadgpu.cli.options import VARIANT_HELP
from vadgpu.errors import VadgpuError


@click.command("boxes")
@click.option("--dataset", required=True, help="Catalog name: ped2, avenue, shanghaitech, generic, synthetic.")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The dataset's folder.")
@click.option("--variant", default=None, help=VARIANT_HELP)
@click.option("--detector", "kind", type=click.Choice(["darknet", "ultralytics", "bgsub"]), default="darknet",
              show_default=True, help="darknet: YOLO .cfg/.weights via OpenCV; ultralytics: a YOLO .pt; "
              "bgsub: background subtraction, no weights.")
@click.option("--weights", type=click.Path(path_type=Path), help="Weights file (darknet .weights / ultralytics .pt).")
@click.option("--cfg", type=click.Path(path_type=Path), help="Darknet .cfg [default: WEIGHTS with suffix .cfg].")
@click.option("--names", type=click.Path(path_type=Path),
              help="Darknet class names [default: coco.names beside WEIGHTS].")
@click.option("--classes", default=None, help="Comma-separated class names to keep "
              "[default: person,bicycle,car,motorbike,bus,truck,skateboard].")
@click.option("--conf", type=float, default=None, help="Detection confidence threshold [default: 0.25].")
@click.option("--split", type=click.Choice(["train", "test", "both"]), default="train", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Cache file (.npz) [default: boxes-DETECTOR-SPLIT.npz in the dataset's prepare cache folder].")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache root, as for `data prepare` [default: $VADGPU_CACHE or ~/.cache/vadgpu].")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def boxes(dataset: str, root: Path, variant: str | None, kind: str, weights: Path | None, cfg: Path | None,
          names: Path | None, classes: str | None, conf: float | None, split: str, out: Path | None,
          cache: Path | None, no_progress: bool) -> None:
    """Detect and track objects in a dataset's videos once; write the box cache (.npz).

    \b
    Examples:
      vadgpu data boxes --dataset ped2 --root data/ped2 --detector darknet \\
          --weights models/yolov3-tiny/yolov3-tiny.weights
      vadgpu data boxes --dataset ped2 --root data/ped2 --detector bgsub --out ped2-bgsub.npz
      vadgpu data boxes --dataset ped2 --root data/ped2 --detector ultralytics --weights yolov8n.pt --classes person
    """
    from vadgpu.objects import build_box_cache, make_detector
    from vadgpu.objects.default_boxes import default_boxes_path
    from vadgpu.outputs import check_output_file

    if kind == "darknet" and weights is not None:
        cfg = cfg or weights.with_suffix(".cfg")
        names = names or weights.parent / "coco.names"
    class_list = [c for c in classes.split(",") if c.strip()] if classes is not None else None
    if class_list == []:
        raise VadgpuError("--classes: give at least one class name")
    detector = make_detector(kind, weights=weights, cfg=cfg, names=names, classes=class_list, conf=conf)
    from vadgpu.data.catalog import open_dataset  # after the detector: a bad --weights fails first, fast

    ds = open_dataset(dataset, root, variant=variant)
    splits = {"train": ds.train, "test": ds.test}
    if split != "both":
        splits = {split: splits[split]}
    out = check_output_file(out or default_boxes_path(ds, kind, split, cache), "--out",
                            sources=[(root, "the dataset root")], kinds=("box cache",), what="a box cache")
    summary = build_box_cache(splits, detector, out, dataset=ds.name, progress=False if no_progress else None)
    click.echo(f"{detector.describe()}: {summary}")
