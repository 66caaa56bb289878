"""Build models by name: `build_model(preset, **overrides)`, `list_presets()`, `model_from_checkpoint(ckpt)`,
`default_preset(architecture, device)` and `preset_table()` (what `vadgpu presets` prints).

A name is a preset (presets.py) or a bare architecture ("ddl", "dualpath": that architecture's defaults, i.e. the
paper settings). Overrides are config fields; unknown ones are a VadgpuError that lists the known fields.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vadgpu.errors import VadgpuError
from vadgpu.models.base import ModelConfig, VadModel, check_window_resolved
from vadgpu.models.ddl import DDLConfig, DDLModel
from vadgpu.models.dualpath import DualPathConfig, DualPathModel
from vadgpu.models.presets import DEFAULT_PRESETS, PRESETS, PURPOSES

ARCHITECTURES: dict[str, tuple[type[ModelConfig], type[VadModel]]] = {
    "ddl": (DDLConfig, DDLModel),
    "dualpath": (DualPathConfig, DualPathModel),
}


def list_presets() -> list[str]:
    """Every preset name, sorted."""
    return sorted(PRESETS)


def architecture_of(name: str) -> str:
    """'ddl' or 'dualpath' for a preset or architecture name."""
    if name in ARCHITECTURES:
        return name
    if name in PRESETS:
        return PRESETS[name][0]
    raise VadgpuError(
        f"unknown model preset {name!r}; presets: {', '.join(list_presets())} (or an architecture: "
        f"{', '.join(ARCHITECTURES)})"
    )


def default_preset(architecture: str, device_type: str) -> str:
    """The preset an architecture trains when none is named: the CPU preset unless the device is CUDA."""
    if architecture not in DEFAULT_PRESETS:
        raise VadgpuError(f"--model {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
    return DEFAULT_PRESETS[architecture]["cuda" if device_type == "cuda" else "cpu"]


def preset_table() -> list[dict[str, Any]]:
    """One row per preset: name, architecture, clips mode, input geometry, tube window (object presets), parameter
    count, purpose.

    The models are built on the meta device, so even the paper presets cost no memory or time here."""
    import torch

    rows = []
    for name in list_presets():
        with torch.device("meta"):
            model = build_model(name)
        cfg = model.config
        rows.append({"preset": name, "model": cfg.architecture, "clips": cfg.clips, "target": cfg.target,
                     "input": f"{cfg.channels} x {cfg.temporal} x {cfg.size[0]} x {cfg.size[1]}",
                     "window": cfg.window if cfg.clips == "objects" else None,
                     "params": count_parameters(model), "for": PURPOSES.get(name, "")})
    return rows


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The config a preset (or architecture) gives, with `overrides` applied and validated."""
    arch = architecture_of(name)
    base = PRESETS[name][1] if name in PRESETS else {}
    config_cls = ARCHITECTURES[arch][0]
    return config_cls.from_dict({**base, **overrides})


def clip_overrides(settings: Any) -> dict[str, Any]:
    """The clip geometry (`temporal`, `size`, `channels`, `clips`, `window`) that `settings` (a training or
    benchmark config) sets, as preset overrides; fields left at None (or absent) keep the preset's value."""
    values = {name: getattr(settings, name, None) for name in ("temporal", "size", "channels", "clips", "window")}
    return {name: value for name, value in values.items() if value is not None}


def model_config_from_dict(data: dict[str, Any], name: str | None = None) -> ModelConfig:
    """Rebuild a config from `to_dict` output (its 'architecture' key, else the preset/architecture `name`)."""
    arch = data.get("architecture") or (architecture_of(name) if name else None)
    if arch not in ARCHITECTURES:
        raise VadgpuError(f"model config names no known architecture ({arch!r}); known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch][0].from_dict({**data, "architecture": arch})


def model_from_config(config: ModelConfig) -> VadModel:
    return ARCHITECTURES[config.architecture][1](config)


def build_model(preset: str, **overrides: Any) -> VadModel:
    """A freshly initialised model for a preset or architecture name, with config overrides."""
    return model_from_config(preset_config(preset, **overrides))


def model_from_checkpoint(ckpt: dict[str, Any]) -> VadModel:
    """Rebuild the model a checkpoint dict describes ('model_name', 'model_config') and load its 'model' weights."""
    missing = {"model_name", "model_config"} - set(ckpt)
    if missing:
        raise VadgpuError(f"checkpoint lacks {', '.join(sorted(missing))}; it was not written by vadgpu train")
    config = model_config_from_dict(ckpt["model_config"], ckpt["model_name"])
    check_window_resolved(config, f"checkpoint of {ckpt['model_name']!r}")
    state = None
    if "model" in ckpt:
        state = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}  # a DDP-wrapped save
        _check_fits(ckpt["model_name"], config, state)
    model = model_from_config(config)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise VadgpuError(
                f"checkpoint weights do not fit model {ckpt['model_name']!r} with its saved config: {exc}"
            ) from exc
    return model


def _check_fits(name: str, config: ModelConfig, state: dict[str, Any]) -> None:
    """The weights of a file fit the model its config describes: compared on torch's meta device (shapes only, no
    memory), so a small file whose config asks for a huge model is refused before that model is allocated."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in model_from_config(config).state_dict().items()}
    given = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()}
    if expected == given:
        return
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    wrong = [k for k in expected if k in given and expected[k] != given[k]]
    parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + (
        [f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + (
        [f"{wrong[0]} is {given[wrong[0]]} in the file, {expected[wrong[0]]} in the model"] if wrong else [])
    raise VadgpuError(f"checkpoint weights do not fit model {name!r} with its saved config: {'; '.join(parts)}")


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
