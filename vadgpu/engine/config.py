"""TrainConfig: the one place for training defaults; YAML in, YAML out.

A run's config is resolved in three layers, later ones winning:
    TrainConfig defaults  <-  --config FILE.yaml  <-  command-line flags
Fields left at None take the model preset's value (temporal, size, channels, window) or the device's (amp); after the
model is built the resolved values are filled in and the whole config is written to `<run>/config.yaml`: an object
model's `window: auto` as the pixels it resolved to (objects/window.py).

How long training runs is one choice made in one of two units, `epochs` (passes over the training clips) or `steps`
(optimiser steps in all; the epochs are then ceil(steps / steps per epoch), the last one cut short so that training
stops at exactly `steps`, and the cosine schedule runs over `steps`). When neither is given, an object model trains
OBJECT_STEPS steps (presets.py: the same length whatever the training split's size) and a frame model
DEFAULT_EPOCHS epochs. A later layer's choice replaces an earlier one's (`--epochs` on the command line replaces
`steps` in the --config file or a resumed run's config.yaml, and the other way round); naming both in one layer is
an error. The resolved config holds exactly one of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_write_text
from vadgpu.models.base import CLIP_MODES, MAX_SIDE, WINDOW_AUTO
from vadgpu.models.presets import OBJECT_STEPS
from vadgpu.models.registry import ARCHITECTURES
from vadgpu.objects.default_boxes import NO_BOXES
from vadgpu.pipelines.choose import LOADERS

# constant; cosine: over all steps down to 0 (vadgpu's); cosine-epochs: the dual-path authors' form, the lr of an
# epoch = lr * (floor + (1 - floor) * 0.5 (1 + cos(pi min(epoch, decay_epochs) / decay_epochs))), constant within
# the epoch (their `cosine_decay_multiplier`, stepped once per epoch), floor = lr_floor
SCHEDULES = ("constant", "cosine", "cosine-epochs")
AMP_DTYPES = ("bf16", "fp16")
CONFIG_NAME = "config.yaml"

# Fields that define what is trained: a resumed run may not change them (the checkpoint would not fit).
LOCKED_ON_RESUME = ("dataset", "root", "variant", "model", "preset", "temporal", "size", "channels", "clips", "window",
                    "batch_size", "tubes_per_clip", "lr", "weight_decay", "schedule", "lr_floor", "decay_epochs",
                    "boxes", "patches", "seed")


@dataclass
class TrainConfig:
    """Everything `vadgpu train` needs; the docstrings of the CLI options repeat these defaults."""

    # data
    dataset: str = ""  # catalog name: ped2, avenue, shanghaitech, generic, synthetic
    root: str = ""  # dataset folder
    variant: str | None = None  # dataset variant, where the catalog knows several layouts
    loader: str = "auto"  # auto | dali | torch (pipelines/choose.py); auto: DALI where it is installed
    workers: int = 2  # DALI decoding threads (torch loader: DataLoader worker processes) per process
    # model
    model: str = "ddl"  # ddl | dualpath
    preset: str | None = None  # registry preset; None: the model's default (presets.DEFAULT_PRESETS: CPU or CUDA)
    temporal: int | None = None  # T frames per clip; None: the preset's
    size: tuple[int, int] | None = None  # (H, W); None: the preset's
    channels: int | None = None  # 1 gray | 3 RGB; None: the preset's
    clips: str | None = None  # frames | objects (object tubes); None: the preset's
    window: int | str | None = None  # objects: tube window in native pixels, or "auto" (from the training boxes);
    # None: the preset's (the object presets': auto)
    tubes_per_clip: int = 4  # objects: tubes drawn from each decoded clip per step
    # pseudo-anomaly inputs
    boxes: str | None = None  # object-box cache from `vadgpu data boxes`; None: when the model needs boxes (object
    # mode, or the ddl / patch pseudo-anomalies) a background-subtraction cache made once; NO_BOXES: none at all
    patches: str | None = None  # patch bank source for pasted patches; None: the patch bank's default
    appearance: str | None = None  # object models: Darknet weights whose box features go into the calibration record
    appearance_weight: float = 1.0  # the appearance term's weight in a tube's score
    # optimisation
    epochs: int | None = None  # passes over the training clips; None: derived from steps, else DEFAULT_EPOCHS
    steps: int | None = None  # optimiser steps in all; None: from epochs, else an object model's OBJECT_STEPS
    batch_size: int = 8  # clips per step per process
    lr: float = 2e-4
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (over all steps) | cosine-epochs (SCHEDULES)
    lr_floor: float = 0.0  # cosine-epochs: the lr it ends at, as a fraction of lr (the dual-path authors: 0.1)
    decay_epochs: int | None = None  # cosine-epochs: epochs the decay takes, then lr stays at the floor; None: all
    grad_clip: float | None = None  # max grad norm; None: no clipping
    seed: int = 0
    # device and speed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool | None = None  # autocast; None: on for CUDA, off for CPU
    amp_dtype: str = "bf16"  # bf16 | fp16 (fp16 adds a gradient scaler)
    compile: bool = False  # torch.compile the model's loss function (CUDA)
    # run folder and what users see
    out: str = ""  # run folder
    checkpoint_every: int = 500  # steps between mid-epoch checkpoints (0: only at epoch ends)
    save_period: int = 0  # epochs between kept checkpoints/epoch-NNN.pt (0: only last.pt and the final model.pt)
    keep_last: int = 0  # how many epoch-NNN.pt files to keep, newest first (0: all of them)
    log_every: int = 20  # steps between logged scalars (the only host syncs of the hot path)
    progress: bool = True  # tqdm bar (also off when stderr is not a terminal)
    max_steps: int | None = None  # stop after this many optimiser steps in all (for smoke tests and benchmarks)
    extra: dict[str, Any] = field(default_factory=dict)  # model overrides passed to build_model (from YAML only)

    def validate(self, complete: bool = True) -> "TrainConfig":
        """Check values a user can get wrong; the message names the option. `complete=False` (--print-config)
        leaves out the options a run needs but a printed config does not (dataset, root, out)."""
        if complete and not self.dataset:
            raise VadgpuError("--dataset is required (e.g. ped2, synthetic)")
        if complete and not self.root:
            raise VadgpuError("--root is required (the dataset folder)")
        if complete and not self.out:
            raise VadgpuError("--out is required (the run folder)")
        if self.preset is not None and not self.preset.strip():
            raise VadgpuError(f"--preset {self.preset!r}: name a preset (`vadgpu presets` lists them), or leave the "
                              "option out for the default")
        if self.model not in ARCHITECTURES:
            raise VadgpuError(f"--model {self.model!r}: choose one of {', '.join(ARCHITECTURES)}")
        if self.schedule not in SCHEDULES:
            raise VadgpuError(f"schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.amp_dtype not in AMP_DTYPES:
            raise VadgpuError(f"amp_dtype {self.amp_dtype!r}: choose one of {', '.join(AMP_DTYPES)}")
        if self.channels is not None and self.channels not in (1, 3):
            raise VadgpuError(f"--channels {self.channels}: use 1 (gray) or 3 (RGB)")
        if self.temporal is not None and self.temporal < 1:
            raise VadgpuError(f"--temporal {self.temporal}: must be >= 1 (frames per clip)")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 8):
            raise VadgpuError(f"--resize {self.size}: give height and width, each >= 8")
        if self.loader not in LOADERS:
            raise VadgpuError(f"--loader {self.loader!r}: choose one of {', '.join(LOADERS)}")
        if self.clips is not None and self.clips not in CLIP_MODES:
            raise VadgpuError(f"--clips {self.clips!r}: choose one of {', '.join(CLIP_MODES)}")
        for name in ("epochs", "steps", "batch_size", "log_every", "workers", "tubes_per_clip"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise VadgpuError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        if self.epochs is not None and self.steps is not None:
            raise VadgpuError(f"--epochs {self.epochs} and --steps {self.steps}: training length is one choice, "
                              "give one of them (with --steps the epochs are derived)")
        if isinstance(self.window, str) and self.window != WINDOW_AUTO:
            raise VadgpuError(f"--window {self.window!r}: give a number of pixels or {WINDOW_AUTO}")
        if isinstance(self.window, int) and not 8 <= self.window <= MAX_SIDE:
            raise VadgpuError(f"--window {self.window}: must be 8 to {MAX_SIDE} pixels (or {WINDOW_AUTO})")
        for name in ("checkpoint_every", "save_period", "keep_last"):
            if getattr(self, name) < 0:
                raise VadgpuError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 0")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise VadgpuError(f"--lr {self.lr}: must be a number > 0")
        if not (math.isfinite(self.lr_floor) and 0 <= self.lr_floor <= 1):
            raise VadgpuError(f"--lr-floor {self.lr_floor}: a fraction of --lr in [0, 1]")
        if self.decay_epochs is not None and self.decay_epochs < 1:
            raise VadgpuError(f"--decay-epochs {self.decay_epochs}: must be >= 1 (or left out: all epochs)")
        if self.schedule != "cosine-epochs" and (self.lr_floor != 0 or self.decay_epochs is not None):
            raise VadgpuError(f"--lr-floor / --decay-epochs shape the cosine-epochs schedule, not {self.schedule}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise VadgpuError(f"weight_decay {self.weight_decay}: must be a number >= 0")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise VadgpuError(f"grad_clip {self.grad_clip}: must be a number > 0 (or null: no clipping)")
        if self.max_steps is not None and self.max_steps < 1:
            raise VadgpuError(f"max_steps {self.max_steps}: must be >= 1")
        if not (math.isfinite(self.appearance_weight) and self.appearance_weight > 0):
            raise VadgpuError(f"--appearance-weight {self.appearance_weight}: must be a number > 0")
        if self.appearance is not None and self.clips == "frames":
            raise VadgpuError("--appearance scores the objects of an object model's tubes; this is a frame model")
        for name in ("boxes", "patches", "appearance"):
            value = getattr(self, name)
            if complete and value is not None and not (name == "boxes" and value == NO_BOXES) \
                    and not Path(value).exists():
                raise VadgpuError(f"--{name} {value}: no such file or folder")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples): what goes into YAML files and checkpoints."""
        out = dataclasses.asdict(self)
        if out["size"] is not None:
            out["size"] = list(out["size"])
        return out

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


DEFAULT_EPOCHS = 10  # a frame model's training length when neither epochs nor steps is given
LENGTH_OPTIONS = ("epochs", "steps")  # the two units of one choice (module docstring)


def with_default_length(config: TrainConfig, clips: str) -> TrainConfig:
    """`config` with its training length filled in when it names none: OBJECT_STEPS steps for an object model
    (`clips`), DEFAULT_EPOCHS epochs for a frame model."""
    if config.epochs is not None or config.steps is not None:
        return config
    return config.replace(steps=OBJECT_STEPS) if clips == "objects" else config.replace(epochs=DEFAULT_EPOCHS)


def planned_epochs(config: TrainConfig, steps_per_epoch: int) -> int:
    """Epochs the run goes through (the last one cut short when `steps` ends inside it)."""
    if config.steps is not None:
        return math.ceil(config.steps / max(steps_per_epoch, 1))
    return config.epochs if config.epochs is not None else DEFAULT_EPOCHS


def planned_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps the run stops after: `steps`, or epochs x steps per epoch, at most `max_steps`."""
    steps = config.steps if config.steps is not None else planned_epochs(config, steps_per_epoch) * steps_per_epoch
    return min(steps, config.max_steps) if config.max_steps is not None else steps


def overlay_length(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """`lower` with `upper` over it (two layers of option: value mappings), where a training length that `upper`
    names (epochs or steps) replaces the one `lower` names in the other unit."""
    chosen = [name for name in LENGTH_OPTIONS if upper.get(name) is not None]
    merged = {**lower, **upper}
    if len(chosen) == 1:
        merged.update({name: None for name in LENGTH_OPTIONS if name not in chosen})
    return merged


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
_FIELD_TYPES = typing.get_type_hints(TrainConfig)
# Options that existed once: a config that still sets one is told why it is gone.
REMOVED_OPTIONS = {"channels_last": "the models store their convolution weights channels-last already"}


def train_config_from_dict(values: dict[str, Any], source: str, base: TrainConfig | None = None) -> TrainConfig:
    """Overlay `values` on `base` (default: the defaults); unknown keys are an error naming `source`. A removed
    option left at its old off value (as every run folder's config.yaml written before its removal holds it) is
    dropped, so those runs still resume."""
    values = {k: v for k, v in values.items() if not (k in REMOVED_OPTIONS and not v)}
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        removed = "".join(f"; {name} was removed: {REMOVED_OPTIONS[name]}, delete it" for name in unknown
                          if name in REMOVED_OPTIONS)
        raise VadgpuError(f"{source}: unknown training option(s) {', '.join(unknown)}{removed} "
                          f"(known: {', '.join(FIELD_NAMES)})")
    values = dict(values)
    if values.get("size") is not None:
        size = values["size"]
        if isinstance(size, int):
            size = (size, size)
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise VadgpuError(f"{source}: size must be [height, width], not {size!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise VadgpuError(f"{source}: size must be [height, width] in whole pixels, not {size!r}")
        values["size"] = (int(size[0]), int(size[1]))
    if "extra" in values and not isinstance(values["extra"], dict):
        raise VadgpuError(f"{source}: extra must be a mapping of model overrides")
    values = {name: _typed(name, value, source) for name, value in values.items()}
    lengths = [name for name in LENGTH_OPTIONS if values.get(name) is not None]
    if len(lengths) == 2:
        raise VadgpuError(f"{source}: epochs {values['epochs']} and steps {values['steps']}: training length is one "
                          "choice, give one of them (with steps the epochs are derived)")
    values = overlay_length({}, values)  # a length named here replaces the base's, in either unit
    return dataclasses.replace(base or TrainConfig(), **values)


_TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false", dict: "a mapping",
               tuple: "a list", type(None): "empty (null)"}


def _typed(name: str, value: Any, source: str) -> Any:
    """`value` checked against the TrainConfig field's type (a YAML file can hold anything); ints are accepted
    (as floats) where a number is expected, and so is text that reads as one (YAML takes `1e-3` for text)."""
    hint = _FIELD_TYPES[name]
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    kinds = tuple(typing.get_origin(member) or member for member in members)
    if value is None and type(None) in kinds:
        return value
    if isinstance(value, bool):
        if bool in kinds:
            return value
    elif float in kinds and isinstance(value, (int, float)):
        return float(value)
    elif float in kinds and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    elif any(isinstance(value, kind) for kind in kinds if kind not in (type(None), float)):
        return value
    wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
    raise VadgpuError(f"{source}: {name} must be {wanted}, not {value!r}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_config_values(path: str | Path) -> dict[str, Any]:
    """The option: value mapping of a YAML config file (only the keys it sets)."""
    path = Path(path)
    if not path.is_file():
        raise VadgpuError(f"--config {path}: no such file")
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise VadgpuError(f"--config {path}: not valid YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise VadgpuError(f"--config {path}: expected a mapping of option: value, got {type(values).__name__}")
    return values


def load_config_file(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML file of TrainConfig fields and overlay it on `base`."""
    return train_config_from_dict(read_config_values(path), f"--config {path}", base)


def write_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def check_resume_compatible(saved: TrainConfig, requested: dict[str, Any]) -> None:
    """A resumed run keeps its saved config; flags may change only what does not alter the trained model."""
    for name in LOCKED_ON_RESUME:
        if name in requested:
            new, old = requested[name], getattr(saved, name)
            if name == "size" and new is not None:
                new = tuple(new)
            if new != old:
                raise VadgpuError(f"--resume: option {name} was {old!r} in the saved run and cannot change to "
                                  f"{new!r} (start a new run folder, or use --overwrite)")
