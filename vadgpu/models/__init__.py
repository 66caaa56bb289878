"""Models: the DDL Conv3d-skip U-Net and the dual-path memory autoencoder, built by name from presets.

    build_model(preset, **overrides) -> model with .config, .training_losses(clips, anomalies), .reconstruct(clips)
    list_presets(); model_from_checkpoint(ckpt_dict)
"""

from vadgpu.models.base import PSEUDO_KINDS, ModelConfig, VadModel, centre_frame
from vadgpu.models.ddl import DDLConfig, DDLModel
from vadgpu.models.dualpath import DualPathConfig, DualPathModel
from vadgpu.models.memory import MemoryBank, MemoryRead
from vadgpu.models.registry import (
    ARCHITECTURES,
    build_model,
    model_config_from_dict,
    count_parameters,
    list_presets,
    model_from_checkpoint,
    preset_config,
)

__all__ = [
    "ARCHITECTURES",
    "PSEUDO_KINDS",
    "DDLConfig",
    "DDLModel",
    "DualPathConfig",
    "DualPathModel",
    "MemoryBank",
    "MemoryRead",
    "ModelConfig",
    "VadModel",
    "build_model",
    "centre_frame",
    "model_config_from_dict",
    "count_parameters",
    "list_presets",
    "model_from_checkpoint",
    "preset_config",
]
