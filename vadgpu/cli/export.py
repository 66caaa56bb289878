"""`vadgpu export`: a trained model as an ONNX or TorchScript file, checked against torch before it is written."""

from __future__ import annotations

from pathlib import Path

import click

from vadgpu.cli.options import CHECKPOINT
from vadgpu.export import FORMATS, TOLERANCE


@click.command("export")
@click.option("--checkpoint", type=CHECKPOINT, required=True,
              help="The trained model: RUN/model.pt (or a checkpoint such as RUN/checkpoints/last.pt), or the "
              "name of weights shipped with vadgpu (ped2-ddl).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="onnx", show_default=True,
              help="onnx (onnxruntime, TensorRT, OpenVINO ...; needs the export extra) or torchscript (LibTorch).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The file to write (e.g. model.onnx); not an existing file, unless --overwrite.")
@click.option("--overwrite", is_flag=True, help="Replace --out when it is an earlier export of vadgpu (any other "
              "file is never replaced).")
def export(checkpoint, fmt, out, overwrite) -> None:
    """Export the model's scoring network: clips (N, C, T, H, W) in [0, 1] -> reconstructed centre frame.

    The batch size is dynamic; the model config, the input layout and the training videos' score statistics
    travel in the file as metadata. The written file is run on a random batch and compared with torch first:
    a difference above the tolerance is an error and nothing is written.
    """
    from vadgpu.export import export_model

    result = export_model(checkpoint, fmt, out, overwrite=overwrite)
    cfg = result.metadata["model_config"]
    click.echo(f"exported {result.metadata['model_name']} ({cfg['architecture']}, {cfg['clips']}, input N x "
               f"{cfg['channels']} x {cfg['temporal']} x {cfg['size'][0]} x {cfg['size'][1]}) as {fmt}")
    click.echo(f"check: max abs difference to torch {result.max_abs_error:.3g} (allowed {TOLERANCE:g})")
    click.echo(f"wrote {result.path}")
