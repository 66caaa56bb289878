"""What every vadgpu model shares: the config base class and the model interface.

A model's config is a dataclass (one subclass per architecture) that carries the clip geometry the loader must
deliver (`temporal`, `size`, `channels`, `max_skip`) and the pseudo-anomaly settings the training engine turns into
a `kernels.PseudoAnomalyPolicy` (`pseudo_p`, `pseudo_kinds`, `pseudo_weights`, `noise_sigma`, `skips`). Configs
travel inside checkpoints as plain dicts (`to_dict` / `from_dict`), so a model can be rebuilt without pickles.

Models implement `training_losses(clips, anomalies)` and `reconstruct(clips)`; they have no `forward` of their own.
Under DDP the engine wraps its `TrainingObjective` (whose `forward` makes the pseudo-anomalies and calls
`training_losses`), so DDP sees the whole training computation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from vadgpu.errors import VadgpuError
from vadgpu.kernels.kinds import DRAWS, KIND_BY_NAME, SKIP_SOURCES

# Pseudo-anomaly kinds by name, as users write them in presets and YAML: the kernels' names.
PSEUDO_KINDS = tuple(KIND_BY_NAME)
# The unit of work: whole frames resized to `size`, or object tubes (objects/tubes.py) of `size` cut from frames
# at the video's resolution around each tracked object, in a window of `window` native pixels.
CLIP_MODES = ("frames", "objects")
# The tube window of an object model left for training to size from the training boxes (objects/window.py):
# the object presets' default. Model files always hold a number of pixels (`check_window_resolved`).
WINDOW_AUTO = "auto"
# What the network makes of the centre frame: rebuild it from the whole clip, or predict it with the centre hidden.
TARGETS = ("reconstruct", "predict")
# What the network sees: the loader's [0, 1] pixels ("unit"), or each frame z-scored on its own ("zscore": the
# dual-path authors' data.py, (frame - its mean) / its std over all pixels and channels). The training objective
# applies it before the pseudo-anomalies, so they act in the model's input space (see `model_input`).
INPUT_NORMS = ("unit", "zscore")
ZSCORE_MIN_STD = 1e-6  # a constant frame is not divided by 0 (the authors' data.py floor)
# Bounds a config read from a file must keep (the largest preset: 16 x 256 x 256): a config asking for clips of
# 100000 x 100000 pixels is refused here, not by a memory error in the loader.
MAX_SIDE, MAX_TEMPORAL, MAX_CLIP_PIXELS, MAX_SKIP = 4096, 256, 1 << 26, 64
MAX_WIDTH = 4096  # channels of a layer, memory items and the like (the presets use at most 2000)


def _like(value: Any, example: Any) -> bool:
    """`value` has the type of `example` (an int is no bool, an int will do for a float)."""
    if isinstance(example, bool) or isinstance(example, str):
        return type(value) is type(example)
    if isinstance(example, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(example, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


class Anomalies(Protocol):
    """What `training_losses` reads from `kernels.PseudoAnomalies` (any object with these attributes works)."""

    clips: torch.Tensor  # (N, C, T, H, W) perturbed; equal to the input where kind == 0
    kind: torch.Tensor  # (N,) int64, kernels.KIND_NONE (0) = normal
    mask: torch.Tensor  # (N, 1, T, H, W) float, where the perturbation lies


@dataclass
class ModelConfig:
    """Fields common to every architecture; subclasses add their own and set `architecture`."""

    architecture: ClassVar[str] = ""

    temporal: int = 3
    size: tuple[int, int] = (64, 64)
    channels: int = 1
    max_skip: int = 0
    pseudo_p: float = 1.0
    pseudo_kinds: tuple[str, ...] = ("ddl",)
    pseudo_weights: tuple[float, ...] | None = None
    noise_sigma: float = 0.1
    skips: tuple[int, ...] = (2, 3, 4, 5)
    clips: str = "frames"  # CLIP_MODES
    target: str = "reconstruct"  # TARGETS
    window: int | str = 48  # objects: side of the tube window in the video's own pixels, or WINDOW_AUTO
    input_norm: str = "unit"  # INPUT_NORMS
    pseudo_kind_draw: str = "sample"  # DRAWS: each pseudo sample draws its source, or one source per batch
    shuffle_draw: str = "sample"  # DRAWS: one frame permutation per shuffled sample, or one per batch
    skip_source: str = "same"  # SKIP_SOURCES

    def __post_init__(self) -> None:
        # YAML and JSON give lists; the dataclass keeps tuples so configs compare and hash predictably.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                value = tuple(value)
                setattr(self, field.name, value)
            self._check_type(field.name, value, field.default)
        self.validate()

    def _check_type(self, name: str, value: Any, default: Any) -> None:
        # A YAML typo ("width: 8x") should name the option, not surface as a TypeError deep in the model.
        if default is None:  # optional options (None by default) take None or their value
            return
        if name == "window" and value == WINDOW_AUTO:
            return
        if value is None:
            ok = False
        elif isinstance(default, bool) or isinstance(default, str):
            ok = type(value) is type(default)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                setattr(self, name, float(value))
        elif isinstance(default, tuple):
            ok = isinstance(value, tuple) and all(_like(v, default[0]) for v in value) if default else \
                isinstance(value, tuple)
        else:
            ok = True
        if not ok:
            raise VadgpuError(
                f"model option {name}={value!r} ({self.architecture}): expected {type(default).__name__} "
                f"like the default {default!r}"
            )

    def validate(self) -> None:
        """Raise VadgpuError naming the option that is out of range."""
        for field in dataclasses.fields(self):  # NaN passes every comparison: refused here, once, for all
            value = getattr(self, field.name)
            if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, tuple)
                                                                           else (value,))):
                self._bad(field.name, "must be a finite number")
        if not isinstance(self.temporal, int) or not 1 <= self.temporal <= MAX_TEMPORAL:
            self._bad("temporal", f"must be an integer in [1, {MAX_TEMPORAL}]")
        if len(self.size) != 2 or not all(isinstance(s, int) and 0 < s <= MAX_SIDE for s in self.size):
            self._bad("size", f"must be two integers (H, W) in [1, {MAX_SIDE}]")
        if self.temporal * self.size[0] * self.size[1] > MAX_CLIP_PIXELS:
            self._bad("size", f"with temporal {self.temporal} makes clips of more than {MAX_CLIP_PIXELS} pixels")
        if self.channels not in (1, 3):
            self._bad("channels", "must be 1 (gray) or 3 (RGB)")
        if not 0.0 <= float(self.pseudo_p) <= 1.0:
            self._bad("pseudo_p", "is a probability and must lie in [0, 1]")
        unknown = [k for k in self.pseudo_kinds if k not in PSEUDO_KINDS]
        if unknown:
            self._bad("pseudo_kinds", f"has unknown kind(s) {unknown}; choose from {list(PSEUDO_KINDS)}")
        if self.pseudo_weights is not None:
            if not isinstance(self.pseudo_weights, tuple) or not all(_like(w, 0.0) for w in self.pseudo_weights):
                self._bad("pseudo_weights", "must be a list of numbers, one per kind")
            if len(self.pseudo_weights) != len(self.pseudo_kinds):
                self._bad("pseudo_weights", f"needs one weight per kind ({len(self.pseudo_kinds)})")
            if any(w < 0 for w in self.pseudo_weights) or sum(self.pseudo_weights) <= 0:
                self._bad("pseudo_weights", "must be non-negative with a positive sum")
        if self.clips not in CLIP_MODES:
            self._bad("clips", f"choose from {list(CLIP_MODES)}")
        if self.target not in TARGETS:
            self._bad("target", f"choose from {list(TARGETS)}")
        if self.target == "predict" and (self.temporal < 3 or self.temporal % 2 == 0):
            self._bad("temporal", "must be odd and >= 3 to predict the centre frame from neighbours on both sides")
        if self.window == WINDOW_AUTO:
            if self.clips != "objects":
                self._bad("window", "sizes object tubes from the training boxes; a frame model cuts no tubes "
                                    "(give a number of pixels, or leave the window out)")
        elif not 8 <= self.window <= MAX_SIDE:
            self._bad("window", f"must be 8 to {MAX_SIDE} pixels, or {WINDOW_AUTO!r} for an object model")
        if self.clips == "objects" and self.size[0] != self.size[1]:
            self._bad("size", "object tubes are square: give H == W")
        for option, choices in (("input_norm", INPUT_NORMS), ("pseudo_kind_draw", DRAWS), ("shuffle_draw", DRAWS),
                                ("skip_source", SKIP_SOURCES)):
            if getattr(self, option) not in choices:
                self._bad(option, f"choose from {list(choices)}")
        if not (math.isfinite(self.noise_sigma) and self.noise_sigma >= 0):
            self._bad("noise_sigma", "must be a number >= 0")
        if any((not isinstance(s, int)) or not 2 <= s <= MAX_SKIP for s in self.skips):
            self._bad("skips", f"must be integers in [2, {MAX_SKIP}] (a skip of 1 is a normal clip)")
        if not 0 <= self.max_skip <= MAX_SKIP:
            self._bad("max_skip", f"must lie in [0, {MAX_SKIP}]")
        if "skip" in self.pseudo_kinds and self.max_skip < max(self.skips, default=0):
            self._bad("max_skip", f"must be >= max(skips) = {max(self.skips)} when 'skip' is a pseudo kind")

    def _bad(self, option: str, problem: str) -> None:
        raise VadgpuError(f"model option {option}={getattr(self, option)!r} ({self.architecture}): {problem}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, numbers, strings) for checkpoints and YAML; includes the architecture name."""
        out: dict[str, Any] = {"architecture": self.architecture}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from `to_dict` output; unknown keys or a different architecture are a VadgpuError."""
        data = dict(data)
        arch = data.pop("architecture", cls.architecture)
        if arch != cls.architecture:
            raise VadgpuError(f"model config is for architecture {arch!r}, not {cls.architecture!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise VadgpuError(
                f"model option(s) {unknown} do not exist for {cls.architecture}; known: {sorted(names)}"
            )
        return cls(**data)

    def replace(self, **overrides: Any) -> "ModelConfig":
        """A copy with some fields changed (validated like a fresh config)."""
        return type(self).from_dict({**self.to_dict(), **overrides})


def check_window_resolved(config: ModelConfig, where: str) -> None:
    """A model read from a file must carry the pixels its tubes were cut with: `auto` is resolved by training
    (objects/window.py) before any file is written."""
    if config.window == WINDOW_AUTO:
        raise VadgpuError(f"{where}: its model config leaves the tube window {WINDOW_AUTO!r}, which `vadgpu train` "
                          "resolves from the training boxes before it writes a file; this file was not written by "
                          "vadgpu train")


def zscore_frames(clips: torch.Tensor) -> torch.Tensor:
    """Each frame minus its mean, over its std (population std over C, H, W, at least ZSCORE_MIN_STD):
    (N, C, T, H, W) -> the same shape. Works on skip windows (N, C, L, H, W) alike. Scale-free, so frames in [0, 1]
    give what the authors' code gets from 0..255 pixels."""
    mean = clips.mean(dim=(1, 3, 4), keepdim=True)
    std = clips.std(dim=(1, 3, 4), keepdim=True, correction=0).clamp_min(ZSCORE_MIN_STD)
    return (clips - mean) / std


def model_input(config: "ModelConfig", clips: torch.Tensor) -> torch.Tensor:
    """The loader's [0, 1] clips as the model of `config` sees them (its `input_norm`)."""
    return zscore_frames(clips) if config.input_norm == "zscore" else clips


def channels_last_convolutions(module: nn.Module) -> None:
    """Store every convolution weight channels-last (NHWC / NDHWC), in place.

    oneDNN then runs its channels-last kernels, and their outputs stay channels-last down the network. Measured on
    a 2-core CPU (one thread, batch 8, fwd + bwd per clip): dual-path 64x64 T=8 104 -> 57 ms (the NCDHW backward
    of small-channel Conv3d is slow), DDL 64x64 39-47 -> 34 ms. cuDNN prefers the same layout under mixed precision.
    Values are unchanged; state_dict holds the same numbers, and loading copies into the existing layout.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            layer.to(memory_format=torch.channels_last)
        elif isinstance(layer, (nn.Conv3d, nn.ConvTranspose3d)):
            layer.to(memory_format=torch.channels_last_3d)


def centre_frame(clips: torch.Tensor) -> torch.Tensor:
    """The centre frame (index T // 2) of (N, C, T, H, W) clips -> (N, C, H, W)."""
    return clips[:, :, clips.shape[2] // 2]


def without_centre(clips: torch.Tensor) -> torch.Tensor:
    """The T - 1 frames around the centre: (N, C, T, H, W) -> (N, C, T - 1, H, W) (predict mode, DDL)."""
    half = clips.shape[2] // 2
    return torch.cat([clips[:, :, :half], clips[:, :, half + 1:]], dim=2)


def blank_centre(clips: torch.Tensor) -> torch.Tensor:
    """The clip with its centre frame set to 0, shape kept (predict mode, models that rebuild the whole clip)."""
    keep = torch.ones(clips.shape[2], device=clips.device, dtype=clips.dtype)
    keep[clips.shape[2] // 2] = 0
    return clips * keep.view(1, 1, -1, 1, 1)


class VadModel(nn.Module):
    """Interface of every vadgpu model (see module docstring)."""

    config: ModelConfig

    def training_losses(self, clips: torch.Tensor, anomalies: Anomalies) -> dict[str, torch.Tensor]:
        """Loss terms for one batch: 'loss' is the total; all 0-dim tensors on the clips' device. `clips` and
        `anomalies.clips` are in the model's input space (`model_input`: the engine normalises a batch before it
        makes the pseudo-anomalies)."""
        raise NotImplementedError

    def reconstruct(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(target, recon), both (N, C, H, W), from the loader's [0, 1] clips: the centre frame of each clip as the
        model sees it (`model_input`) and its reconstruction (in [0, 1] where the output passes a sigmoid)."""
        raise NotImplementedError

    def check_clips(self, clips: torch.Tensor) -> None:
        """Shape check against the config, done on metadata only (no host sync)."""
        cfg = self.config
        expected = (cfg.channels, cfg.temporal, *cfg.size)
        if clips.dim() != 5 or tuple(clips.shape[1:]) != expected:
            raise VadgpuError(
                f"{cfg.architecture} model expects clips (N, C, T, H, W) = (N, {', '.join(map(str, expected))}), "
                f"got {tuple(clips.shape)}; set the loader's temporal/size/channels from the model config"
            )
