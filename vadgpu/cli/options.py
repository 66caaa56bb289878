"""Click options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path

import click

from vadgpu.precision import DEFAULT_PRECISION, PRECISIONS

# The layouts the catalog knows (data/catalog.py: SYNTHETIC_VARIANTS, PED2_VARIANTS); the other datasets have one.
VARIANT_HELP = "Layout variant (synthetic: avi, mp4, frames; ped2: jpg, ucsd)."


def dataset_options(cache_help: str | None):
    """--dataset (as `name`), --root, --variant and --cache: how a command finds a dataset and its prepare cache
    (no --cache when `cache_help` is None)."""
    options = [
        click.option("--dataset", "name", required=True,
                     help="Catalog name: ped2, avenue, shanghaitech, generic, synthetic."),
        click.option("--root", required=True, type=click.Path(path_type=Path),
                     help="The dataset's folder (read only)."),
        click.option("--variant", default=None, help=VARIANT_HELP),
    ]
    if cache_help is not None:
        options.append(click.option("--cache", default=None, type=click.Path(file_okay=False, path_type=Path),
                                    help=f"{cache_help} [default: $VADGPU_CACHE or ~/.cache/vadgpu]."))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


class CheckpointPath(click.ParamType):
    """--checkpoint: a file, or the name of weights shipped with vadgpu (ped2-ddl), which a folder of the same
    name in the current folder (an old `vadgpu eval` output, say) does not hide."""

    name = "file"

    def convert(self, value, param, ctx):
        from vadgpu.weights import shipped_weights

        if isinstance(value, Path):
            return value
        path = Path(value)
        if path.is_dir() and shipped_weights(value) is None:
            self.fail(f"{value!r} is a folder, not a checkpoint file", param, ctx)
        return path


CHECKPOINT = CheckpointPath()

# --precision of the commands that score (vadgpu/precision.py)
PRECISION = click.option(
    "--precision", type=click.Choice(PRECISIONS), default=DEFAULT_PRECISION, show_default=True,
    help="Arithmetic of the tube network and the appearance backbone: fp32, or bf16 (bfloat16 autocast; errors and "
    "scores are still computed in float32). bf16 is faster on CPUs with bfloat16 instructions (AVX512-BF16, AMX) "
    "and on GPUs, slower on other CPUs, and changes the scores slightly.")
