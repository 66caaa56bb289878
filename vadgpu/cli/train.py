"""`vadgpu train`: flags -> TrainConfig -> engine.train.fit (or torchrun workers with --nproc N).

Every option defaults to None here so that the config layers combine cleanly (defaults <- --config file <- flags
actually given); the defaults shown in --help are read from TrainConfig, the one place that holds them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from vadgpu.cli.options import VARIANT_HELP
from vadgpu.engine.config import (AMP_DTYPES, CONFIG_NAME, DEFAULT_EPOCHS, NO_BOXES, SCHEDULES, TrainConfig,
                                  check_resume_compatible, load_config_file, overlay_length, read_config_values,
                                  train_config_from_dict, with_default_length, write_config)
from vadgpu.errors import VadgpuError
from vadgpu.models.base import CLIP_MODES, WINDOW_AUTO
from vadgpu.models.presets import DEFAULT_PRESETS, OBJECT_STEPS
from vadgpu.objects.window import MIN_WINDOW, WINDOW_PER_HEIGHT
from vadgpu.models.registry import ARCHITECTURES, list_presets
from vadgpu.pipelines.choose import LOADERS

_DEFAULTS = TrainConfig()


def _default(name: str, when_none: str = "the preset's") -> str:
    value = getattr(_DEFAULTS, name)
    return f" [default: {when_none if value is None else value}]"


def _channels(value: str | None) -> int | None:
    if value is None:
        return None
    named = {"1": 1, "gray": 1, "grey": 1, "3": 3, "rgb": 3}
    if value.lower() not in named:
        raise click.BadParameter(f"{value!r}: use 1 / gray or 3 / rgb", param_hint="--channels")
    return named[value.lower()]


def _window(value: str | None) -> int | str | None:
    if value is None or value.strip().lower() == WINDOW_AUTO:
        return None if value is None else WINDOW_AUTO
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a number of pixels or {WINDOW_AUTO}", param_hint="--window")


def _explicit_flags(ctx: click.Context, opts: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields the user actually set on the command line."""
    given = {name: value for name, value in opts.items()
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE and value is not None}
    flags: dict[str, Any] = {}
    height, width = given.pop("resize_height", None), given.pop("resize_width", None)
    if "resize" in given:
        flags["size"] = tuple(given.pop("resize"))
    elif height is not None or width is not None:
        if height is None or width is None:
            raise VadgpuError("--resize_height and --resize_width go together (or use --resize H W)")
        flags["size"] = (height, width)
    if "channels" in given:
        flags["channels"] = _channels(given.pop("channels"))
    if "window" in given:
        flags["window"] = _window(given.pop("window"))
    for name in ("boxes", "patches", "root", "appearance"):  # absolute: `vadgpu eval --run` may run from another folder
        if name in given and not (name == "boxes" and given[name] == NO_BOXES):
            given[name] = str(Path(given[name]).expanduser().resolve())
    flags.update(given)
    return flags


def resolve_config(flags: dict[str, Any], config_file: str | None, resume: bool) -> TrainConfig:
    """TrainConfig defaults <- the preset's training settings (presets.PRESET_TRAINING) <- config file <- flags;
    with --resume the run's saved config.yaml is the base.

    `--out` is the run folder, always, stored as an absolute path: a resumed run continues in the folder named
    now (a copied or moved run too), never in the one its saved config recorded."""
    requested = overlay_length(read_config_values(config_file) if config_file else {}, flags)
    source = f"--config {config_file} and flags" if config_file else "command line"
    out = requested.pop("out", None)
    if out is not None and not isinstance(out, str):
        raise VadgpuError(f"{source}: out must be a folder path, not {out!r}")
    out = str(Path(out).expanduser().resolve()) if out else ""
    if not resume:
        if requested.get("preset") and "model" not in requested:  # --preset alone names the method too
            from vadgpu.models.registry import architecture_of

            requested["model"] = architecture_of(requested["preset"])
        from vadgpu.models.presets import PRESET_TRAINING

        requested = {**PRESET_TRAINING.get(requested.get("preset"), {}), **requested}
        return train_config_from_dict({**requested, "out": out}, source)
    if not out:
        raise VadgpuError("--resume needs --out (the run folder to continue)")
    saved_path = Path(out) / CONFIG_NAME
    if not saved_path.is_file():
        raise VadgpuError(f"--resume: {saved_path} not found; {out} holds no run to continue")
    saved = load_config_file(saved_path)
    check_resume_compatible(saved, requested)
    return train_config_from_dict({**requested, "out": out}, source, saved)


def with_preset_values(config: TrainConfig) -> TrainConfig:
    """`config` with the preset (the device's default when none is named), its clip geometry and the training
    length filled in, as training resolves them, without building the model (an object model's window `auto`
    stays `auto`: training measures it on the boxes)."""
    from vadgpu.device import resolve_device
    from vadgpu.models.registry import clip_overrides, default_preset, preset_config

    preset = config.preset or default_preset(config.model, resolve_device(config.device).type)
    model = preset_config(preset, **clip_overrides(config), **config.extra)
    config = with_default_length(config, model.clips)
    return config.replace(preset=preset, temporal=model.temporal, size=tuple(model.size), channels=model.channels,
                          clips=model.clips, window=model.window if model.clips == "objects" else config.window)


@click.command("train", context_settings={"show_default": False})
@click.option("--dataset", "--dataset_name", "dataset", help="Dataset catalog name: ped2, avenue, shanghaitech, "
              "generic, synthetic. [required]")
@click.option("--root", type=click.Path(file_okay=False), help="Dataset folder. [required]")
@click.option("--variant", help=VARIANT_HELP + _default("variant", "the standard layout"))
@click.option("--model", type=click.Choice(list(ARCHITECTURES)), help="Method: ddl (Dynamic Distinction "
              "Learning) or dualpath (dual-path memory autoencoder). [default: the preset's method, else ddl]")
@click.option("--preset", help=f"Model preset: {', '.join(list_presets())} (`vadgpu presets` describes them). "
              "[default: " + "; ".join(f"{arch}: {d['cpu']} on a CPU, {d['cuda']} on CUDA"
                                        for arch, d in DEFAULT_PRESETS.items()) + "]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of training options "
              "(TrainConfig field names); flags given here win over it.")
@click.option("--out", type=click.Path(), help="[required] Run folder: config.yaml, log.jsonl, checkpoints/, "
              "summary.json.")
@click.option("--epochs", type=int, help="Passes over the training clips. One choice with --steps: give one; either "
              "replaces the other set by --config or a resumed run. [default: derived from --steps; "
              f"{DEFAULT_EPOCHS} for a frame model]")
@click.option("--steps", type=int, help="Optimiser steps in all, whatever the training split's size: the epochs are "
              "ceil(STEPS / steps per epoch), the last cut short at exactly STEPS, and --schedule cosine runs over "
              f"STEPS. [default: {OBJECT_STEPS} for an object model, none for a frame model (--epochs)]")
@click.option("--batch-size", "--training_batch_size", "batch_size", type=int,
              help="Clips per step on each process." + _default("batch_size"))
@click.option("--lr", type=float, help="Adam learning rate." + _default("lr"))
@click.option("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule: constant, cosine (over all "
              "steps to 0) or cosine-epochs (per epoch, to --lr-floor x lr over --decay-epochs, the dual-path "
              "authors' form)." + _default("schedule"))
@click.option("--lr-floor", type=float, help="cosine-epochs: the final lr as a fraction of --lr."
              + _default("lr_floor"))
@click.option("--decay-epochs", type=int, help="cosine-epochs: epochs the decay takes, then the lr stays at the floor "
              "[default: all epochs].")
@click.option("--temporal", type=int, help="Frames per clip T (centre frame T // 2)." + _default("temporal"))
@click.option("--resize", type=int, nargs=2, metavar="H W", help="Frame size the clips are resized to."
              + _default("size"))
@click.option("--resize_height", type=int, help="Alias: height of --resize.")
@click.option("--resize_width", type=int, help="Alias: width of --resize.")
@click.option("--channels", help="1 / gray or 3 / rgb." + _default("channels"))
@click.option("--clips", type=click.Choice(CLIP_MODES), help="Unit of work: whole frames resized to "
              "--resize, or object tubes (T frames cut around each tracked object at the video's resolution in the "
              "preset's window, resized to its size). [default: the preset's]")
@click.option("--window", metavar="PIXELS|auto", help="Object mode: side of the square tube window in the video's "
              f"own pixels, or auto: {WINDOW_PER_HEIGHT:g} x the median height of the training boxes (even, at "
              f"least {MIN_WINDOW} px, at most the frame's shorter side), written as pixels into config.yaml and "
              "model.pt. [default: the preset's; the object presets': auto]")
@click.option("--tubes-per-clip", type=int, help="Object mode: tubes drawn from each decoded clip per step."
              + _default("tubes_per_clip"))
@click.option("--device", help="auto, cpu, cuda or cuda:N (under torchrun: auto or cuda)." + _default("device"))
@click.option("--seed", type=int, help="Seed of weights, shuffling and pseudo-anomalies." + _default("seed"))
@click.option("--loader", type=click.Choice(LOADERS), help="Clip loader: dali (each frame decoded about once), torch "
              "(OpenCV in DataLoader workers) or auto (dali where installed)." + _default("loader"))
@click.option("--workers", type=int, help="DALI decoding threads (torch loader: worker processes) per process."
              + _default("workers"))
@click.option("--boxes", type=click.Path(dir_okay=False), help="Object-box cache from `vadgpu data boxes`, or "
              f"'{NO_BOXES}'. Without it, a model that needs boxes (object mode, the ddl blend, pasted patches) gets "
              "the dataset's background-subtraction cache of both splits, made once (path printed); "
              f"'{NO_BOXES}' turns the object-based pseudo-anomalies off (frame mode only).")
@click.option("--appearance", type=click.Path(dir_okay=False), help="Object models: Darknet YOLO weights (its .cfg "
              "beside them, e.g. yolov3-tiny.weights) whose box features go into model.pt's calibration record, so "
              "every tube's score adds how unlike the training objects its object looks. [default: none]")
@click.option("--appearance-weight", type=float, help="Weight of the appearance z-score in a tube's score."
              + _default("appearance_weight"))
@click.option("--patches", type=click.Path(), help="Patch bank for pasted patches (folder of images or an .npz). "
              "[default: the patch bank's built-in source]")
@click.option("--resume", is_flag=True, default=False, help="Continue the run in --out from checkpoints/last.pt "
              "(mid-epoch too). [default: off]")
@click.option("--overwrite", is_flag=True, default=False, help="Start again in an --out that holds a run "
              "(deletes its checkpoints and logs). [default: off]")
@click.option("--checkpoint-every", type=int, help="Steps between mid-epoch checkpoints; 0: only at epoch ends."
              + _default("checkpoint_every"))
@click.option("--save-period", type=int, help="Epochs between kept checkpoints/epoch-NNN.pt; 0: none, only "
              "last.pt (overwritten) and the final weights-only model.pt." + _default("save_period"))
@click.option("--keep-last", type=int, help="With --save-period: keep only the newest K epoch-NNN.pt; 0: all."
              + _default("keep_last"))
@click.option("--log-every", type=int, help="Steps between logged losses (the only host syncs of a step)."
              + _default("log_every"))
@click.option("--max-steps", type=int, help="A cap on the training length (smoke tests, benchmarks): stop after this "
              "many optimiser steps in all, the schedule shortened to them."
              + _default("max_steps", "no limit"))
@click.option("--amp/--no-amp", default=None, help="Autocast (bf16 or fp16) on CUDA. [default: on for CUDA]")
@click.option("--amp-dtype", type=click.Choice(AMP_DTYPES), help="Autocast type." + _default("amp_dtype"))
@click.option("--compile", "compile", is_flag=True, default=None,
              help="torch.compile the model's loss function. [default: off]")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (off anyway when not a terminal). [default: on]")
@click.option("--nproc", type=int, default=None, help="Launch N local DDP workers (torchrun --standalone "
              "--nproc_per_node=N). [default: 1, or what torchrun set]")
@click.option("--print-config", is_flag=True, default=False, help="Print the resolved training config (YAML: what "
              "DIR/config.yaml would hold, the preset's values filled in) and exit without training.")
@click.pass_context
def train(ctx: click.Context, config_file: str | None, resume: bool, overwrite: bool, nproc: int | None,
          print_config: bool, **opts: Any) -> None:
    """Train DDL or the dual-path model; write a run folder that `vadgpu eval --run DIR` reads.

    \b
    Examples:
      vadgpu train --dataset synthetic --root data/synth --model ddl --preset ddl-tiny-cpu --out runs/ddl
      vadgpu train --dataset ped2 --root PED2 --model dualpath --out runs/dp --nproc 2
      torchrun --nproc_per_node=4 -m vadgpu train --dataset ped2 --root PED2 --model ddl --out runs/ddl4
    """
    from vadgpu.engine.distributed import launch_workers, launched_by_torchrun

    config = resolve_config(_explicit_flags(ctx, opts), config_file, resume)
    if print_config:
        import yaml

        config.validate(complete=False)  # what it prints must be a config training would accept

        click.echo(yaml.safe_dump(with_preset_values(config).to_dict(), sort_keys=False), nl=False)
        return
    config.validate()
    if nproc is not None and nproc > 1 and not launched_by_torchrun():
        from vadgpu.engine.run_folder import check_run_out, prepare_run_dir
        from vadgpu.folder_lock import hold_folder

        check_run_out(config)
        with hold_folder(config.out, "vadgpu train"):  # rank 0 takes the folder's lock again in its process
            prepare_run_dir(config.out, resume, overwrite)  # refuse here, once, rather than in every worker
        # The workers read the resolved config from a file, so every rank trains exactly this configuration.
        with tempfile.TemporaryDirectory(prefix="vadgpu-train-") as tmp:
            path = write_config(config, Path(tmp) / CONFIG_NAME)
            argv = ["train", "--config", str(path)] + (["--resume", "--out", config.out] if resume else []) + (
                ["--overwrite"] if overwrite else [])
            sys.exit(launch_workers(nproc, argv))

    from vadgpu.engine.run_folder import describe_run_dir
    from vadgpu.engine.train import fit

    result = fit(config, resume=resume, overwrite=overwrite)
    if result.is_main:
        p = result.position
        if result.interrupted:
            launch = f" --nproc {result.world_size}  (or the same torchrun command)" if result.world_size > 1 else ""
            click.echo(f"Interrupted: checkpoint saved at epoch {p.epoch + 1}, step {p.step}. Continue with:\n"
                       f"  vadgpu train --out {config.out} --resume{launch}", err=True)
        else:
            part = f" + {p.batch} steps" if p.batch else ""
            click.echo(f"Trained {p.step} steps ({p.epoch} epochs{part}) in {result.seconds:.1f} s, "
                       f"{result.clips_per_s:.1f} clips/s. Run folder {config.out}:")
            click.echo(describe_run_dir(Path(config.out)))
            click.echo(f"Next (dataset and root are read from the checkpoint):\n  vadgpu eval --run {config.out}")
    if result.interrupted:
        sys.exit(130)
