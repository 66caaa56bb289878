"""Entry point of the `vadgpu` console script: a click group that gathers the command modules."""

from __future__ import annotations

from vadgpu.heap import keep_freed_memory
from vadgpu.threads import prefer_passive_omp_waiting

prefer_passive_omp_waiting()  # before any command module imports torch
keep_freed_memory()  # torch's CPU tensors reuse freed heap blocks instead of fresh pages each step

import click  # noqa: E402

from vadgpu import __version__  # noqa: E402


# name -> (module, attribute, the one line `vadgpu --help` shows): a command's module, and torch with it, is imported
# only when that command runs or shows its own help, so `vadgpu --help` and `--version` start at once.
COMMANDS = {
    "data": ("vadgpu.cli.data", "data", "Datasets: the synthetic set, prepare, boxes, pack."),
    "train": ("vadgpu.cli.train", "train", "Train DDL or the dual-path model; write a run folder."),
    "eval": ("vadgpu.cli.evaluate", "eval_command", "Evaluate a checkpoint on a dataset's test split."),
    "score": ("vadgpu.cli.evaluate", "score_command", "Score a video file, frame folder or live stream."),
    "calibrate": ("vadgpu.cli.evaluate", "calibrate_command",
                  "Fit an object model's calibration record and store it in the weights file."),
    "export": ("vadgpu.cli.export", "export", "Export a model as ONNX or TorchScript, self-checked."),
    "bench": ("vadgpu.cli.bench", "bench", "Benchmarks: loader throughput; the scoring path, stage by stage."),
    "presets": ("vadgpu.cli.presets", "presets", "List the model presets."),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported when used (COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        import importlib

        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, _, short) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="vadgpu")
def cli() -> None:
    """vadgpu: video anomaly detection for fixed cameras, with decoding and pseudo-anomalies on the device.

    \b
    Typical use:
      vadgpu data synth data/synth                      # a small synthetic dataset (no download)
      vadgpu data prepare --dataset synthetic --root data/synth
      vadgpu train --dataset synthetic --root data/synth --model ddl --preset ddl-tiny-cpu --out runs/x
      vadgpu eval --run runs/x --dataset synthetic --root data/synth
      vadgpu score my_camera.mp4 --checkpoint ped2-ddl  # shipped weights, no training
    """
    from vadgpu.log import show_on_terminal

    show_on_terminal()  # library code reports through the `vadgpu` logger; here it becomes plain lines


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
