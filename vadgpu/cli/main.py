"""Entry point of the `vadgpu` console script: a click group that gathers the command modules."""

from __future__ import annotations

from vadgpu.threads import prefer_passive_omp_waiting

prefer_passive_omp_waiting()  # before any command module imports torch

import click  # noqa: E402

from vadgpu import __version__  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="vadgpu")
def cli() -> None:
    """vadgpu: video anomaly detection for fixed cameras, with decoding and pseudo-anomalies on the device.

    \b
    Typical use:
      vadgpu data synth data/synth                      # a small synthetic dataset (no download)
      vadgpu data prepare --dataset synthetic --root data/synth
      vadgpu train --dataset synthetic --root data/synth --model ddl --preset ddl-tiny-cpu --out runs/x
      vadgpu eval --run runs/x --dataset synthetic --root data/synth
    """
    from vadgpu.log import show_on_terminal

    show_on_terminal()  # library code reports through the `vadgpu` logger; here it becomes plain lines


def _register() -> None:
    # Each command module owns one command (or group); add new ones here.
    from vadgpu.cli import data

    cli.add_command(data.data)
    from vadgpu.cli import train

    cli.add_command(train.train)
    from vadgpu.cli import evaluate

    cli.add_command(evaluate.eval_command)
    cli.add_command(evaluate.score_command)
    cli.add_command(evaluate.calibrate_command)
    from vadgpu.cli import bench

    cli.add_command(bench.bench)
    from vadgpu.cli import presets

    cli.add_command(presets.presets)
    from vadgpu.cli import export

    cli.add_command(export.export)


_register()


def main() -> None:
    """Run the command group; as click's standalone mode, except that Ctrl-C exits 130 (not 1, "Aborted!")."""
    import sys

    try:
        code = cli.main(prog_name="vadgpu", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
        click.echo("Interrupted." if interrupted else "Aborted!", err=True)
        sys.exit(130 if interrupted else 1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
