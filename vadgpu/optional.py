"""The optional packages: NVIDIA DALI (the fast clip loader), PyAV (probing, transcoding, writing videos, live
streams) and onnx + onnxruntime (`vadgpu export`, scoring with an exported model: the `export` extra).

None of them is needed to import vadgpu or to train, evaluate and score with the torch loader (`--loader torch`,
OpenCV decoding). Code that needs one asks here, where it uses it, and a missing one is one clear error that
names the package and how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vadgpu.errors import VadgpuError

# module -> (what people call it, how to install it)
PACKAGES = {
    "nvidia.dali": ("NVIDIA DALI", "pip install nvidia-dali-cuda120 (wheels exist for Linux x86-64 only)"),
    "av": ("PyAV", "pip install av"),
    "onnx": ("the ONNX package", "pip install 'vadgpu[export]', or pip install onnx onnxruntime"),
    "onnxruntime": ("onnxruntime", "pip install 'vadgpu[export]', or pip install onnx onnxruntime"),
    "paho.mqtt.client": ("paho-mqtt", "pip install 'vadgpu[alarms]', or pip install paho-mqtt"),
}


def available(module: str) -> bool:
    """Whether `module` imports here (importing it once if so)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise VadgpuError saying that `purpose` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name, install = PACKAGES[module]
        raise VadgpuError(f"{purpose} needs {name}, which is not installed here ({install})") from exc
