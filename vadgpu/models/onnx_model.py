"""An exported ONNX file (`vadgpu export`) read back as a model that vadgpu's scorers take like a torch one.

The file is data: onnxruntime runs its graph (CPU), and the vadgpu metadata inside it (a JSON document, see
export.py) gives the model's config, a frame model's training scores and an object model's calibration record.
When the record has an appearance term, the graph has a second input, `frames` (N, 3, h, w) RGB in [0, 1], and a
second output, `maps`, the backbone's feature map: the record's BoxFeatures run on it, so scoring from the ONNX file
alone gives the scores of the weights file it was exported from. Nothing in the file executes as Python.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vadgpu.errors import VadgpuError
from vadgpu.optional import require

METADATA_KEY = "vadgpu"
INPUT_NAME, OUTPUT_NAME = "clips", "recon"
FRAMES_NAME, MAPS_NAME = "frames", "maps"
PLACEHOLDER_SIDE = 32  # the input an ONNX call does not need is fed a minimal tensor of this side


class OnnxBackbone:
    """The appearance backbone inside an exported graph: (N, 3, h, w) -> maps, as a DarknetBackbone is called."""

    def __init__(self, model: "OnnxModel", identity: dict):
        self.model, self._identity = model, identity

    def eval(self) -> "OnnxBackbone":
        return self

    def to(self, *_args, **_kwargs) -> "OnnxBackbone":
        return self

    def identity(self) -> dict:
        return dict(self._identity)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.model.config
        clips = np.zeros((1, cfg.channels, cfg.temporal, *cfg.size), np.float32)
        maps = self.model.run({INPUT_NAME: clips, FRAMES_NAME: x.detach().float().cpu().numpy()}, MAPS_NAME)
        return torch.from_numpy(maps).to(x.device)


class OnnxModel:
    """An exported ONNX file in onnxruntime (CPU), with the parts of a vadgpu model that scoring uses:
    `config` (rebuilt from the metadata), `reconstruct(clips) -> (centre frame, reconstruction)`, `train_scores`
    (frame models) and `calibration` (object models; None when the file has none)."""

    def __init__(self, path: str | Path):
        ort = require("onnxruntime", "scoring with an ONNX model (--model)")
        self.path = Path(path)
        if not self.path.is_file():
            raise VadgpuError(f"--model {self.path} does not exist")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise VadgpuError(f"--model {self.path} is not an ONNX model onnxruntime can run "
                              f"({str(exc).splitlines()[0][:200]})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if meta is None:
            raise VadgpuError(f"--model {self.path} has no vadgpu metadata: export it with `vadgpu export`")
        from vadgpu.model_checks import read_onnx_metadata  # checked against the graph, train_scores too

        self.metadata, self.config, self.train_scores = read_onnx_metadata(self.path, self.session, meta)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.calibration = self._calibration()

    def _calibration(self):
        record = self.metadata.get("calibration")
        if record is None:
            return None
        from vadgpu.objects.appearance import BoxFeatures
        from vadgpu.scoring.calibration import Calibration

        record = tensors_from_json(record)
        appearance = record.get("appearance")
        features = None
        if appearance is not None:
            if FRAMES_NAME not in self.inputs:
                raise VadgpuError(f"--model {self.path}: its calibration record has an appearance term but the graph "
                                  f"has no {FRAMES_NAME!r} input")
            spec = appearance["features"]
            features = BoxFeatures(OnnxBackbone(self, spec.get("identity") or {}), int(spec["short_side"]),
                                   int(spec["pool"]))
            appearance = {**appearance, "features": None}
        calibration = Calibration.from_record({**record, "appearance": appearance}, f"--model {self.path}",
                                              features=features)
        return calibration

    def run(self, feeds: dict, output: str = OUTPUT_NAME) -> np.ndarray:
        if FRAMES_NAME in self.inputs and FRAMES_NAME not in feeds:
            feeds = {**feeds, FRAMES_NAME: np.zeros((1, 3, PLACEHOLDER_SIDE, PLACEHOLDER_SIDE), np.float32)}
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
        return self.session.run([output], feeds)[0]

    def reconstruct(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from vadgpu.models.base import centre_frame, model_input

        cfg = self.config
        expected = (cfg.channels, cfg.temporal, *cfg.size)
        if clips.dim() != 5 or tuple(clips.shape[1:]) != expected:
            raise VadgpuError(f"--model {self.path} expects clips (N, {', '.join(map(str, expected))}), got "
                              f"{tuple(clips.shape)}")
        recon = torch.from_numpy(self.run({INPUT_NAME: clips.detach().float().cpu().numpy()})).to(clips.device)
        return centre_frame(model_input(cfg, clips)), recon  # the target as the model saw it

    # the nn.Module calls scoring makes on a model
    def to(self, *_args, **_kwargs) -> "OnnxModel":
        return self

    def eval(self) -> "OnnxModel":
        return self


def tensors_to_json(value):
    """A record of plain values and tensors as JSON-ready values: each tensor as {dtype, shape, base64 bytes}."""
    import base64

    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().contiguous().numpy()
        return {"__tensor__": str(array.dtype), "shape": list(array.shape),
                "base64": base64.b64encode(array.tobytes()).decode("ascii")}
    if isinstance(value, dict):
        return {k: tensors_to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tensors_to_json(v) for v in value]
    return value


ALLOWED_DTYPES = ("float16", "float32", "float64", "int64", "int32", "uint8", "bool")


def tensors_from_json(value):
    """The inverse of `tensors_to_json` (only plain numeric dtypes; sizes checked against the shape)."""
    import base64

    if isinstance(value, dict) and "__tensor__" in value:
        dtype, shape = str(value.get("__tensor__")), value.get("shape")
        if dtype not in ALLOWED_DTYPES or not isinstance(shape, list) or not all(
                isinstance(s, int) and s >= 0 for s in shape):
            raise VadgpuError(f"a tensor in the model's metadata has dtype {dtype!r} and shape {shape!r}")
        try:
            data = base64.b64decode(str(value.get("base64", "")), validate=True)
        except ValueError as exc:
            raise VadgpuError(f"a tensor in the model's metadata is not valid base64 ({exc})") from exc
        count = int(np.prod(shape)) if shape else 1
        if len(data) != count * np.dtype(dtype).itemsize:
            raise VadgpuError(f"a tensor in the model's metadata holds {len(data)} bytes for shape {shape} {dtype}")
        return torch.from_numpy(np.frombuffer(data, dtype=dtype).reshape(shape).copy())
    if isinstance(value, dict):
        return {k: tensors_from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tensors_from_json(v) for v in value]
    return value
