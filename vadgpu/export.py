"""`vadgpu export`: a trained model as an ONNX or TorchScript file that runs without vadgpu, and what scoring needs.

The exported network is the scoring path of the model, `reconstruct`: clips (N, C, T, H, W) float32 in [0, 1] in,
the reconstructed (or predicted) centre frame (N, C, H, W) in [0, 1] out, with a dynamic batch size. The input is
named `clips`, the output `recon`; the score is computed from the output and the input's centre frame (index
T // 2) as vadgpu does (scoring/kinds.py). Object models export the same way: their input is a batch of object
tubes, cut from the frames around each box by the caller (objects/tubes.py). An object model whose calibration
record has an appearance term also exports its backbone in the same graph: a second input `frames` (N, 3, h, w) RGB
in [0, 1] (the frames resized as objects/appearance.py does, dynamic in N, h and w) and a second output `maps`.

Metadata travels inside the file as one JSON document (`METADATA_KEY`): the model name and config (clip geometry,
channels, clips mode, target), the input and output layout, the vadgpu version, a frame model's training scores
(`train_scores`) for normalisation and the default alarm threshold, and an object model's calibration record
(`calibration`: location statistics, the appearance bank, training frame scores; tensors as base64 bytes), so
`vadgpu score --model FILE` scores exactly as the weights file does (models/onnx_model.py reads it). ONNX keeps it
in the model's metadata_props, TorchScript in an extra file of the archive (TorchScript holds the network only).

Every export checks itself before the file is moved into place: the written file runs in onnxruntime (or is loaded
back with torch.jit.load) on a random batch of a different size than the one traced, and its outputs must equal
the torch model's within `TOLERANCE` (the largest absolute difference is reported).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vadgpu import __version__
from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path
from vadgpu.models.onnx_model import FRAMES_NAME, INPUT_NAME, MAPS_NAME, METADATA_KEY, OUTPUT_NAME, OnnxModel
from vadgpu.optional import require
from vadgpu.scoring.train_scores import to_json

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4
TORCHSCRIPT_EXTRA = "vadgpu.json"
OPSET = 17
TRACE_BATCH, CHECK_BATCH = 2, 3  # the check runs another batch size than the trace: the batch axis is dynamic


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_error: float
    metadata: dict


class ScoringNetwork(nn.Module):
    """The model's inference path as a module with a `forward`: clips -> reconstructed centre frame; with an
    appearance backbone also frames -> its feature map."""

    def __init__(self, model: nn.Module, backbone: nn.Module | None = None):
        super().__init__()
        self.model, self.backbone = model, backbone

    def forward(self, clips: torch.Tensor, frames: torch.Tensor | None = None):
        recon = self.model.reconstruct(clips)[1]
        if self.backbone is None:
            return recon
        return recon, self.backbone(frames)


def export_metadata(ckpt: dict, model: nn.Module, calibration=None, source: Path | None = None) -> dict:
    """The JSON document an exported file carries (see the module docstring)."""
    from vadgpu.models.onnx_model import tensors_to_json

    cfg = model.config
    shape = ["batch", cfg.channels, cfg.temporal, *cfg.size]
    record = {"vadgpu_version": __version__, "model_name": ckpt.get("model_name"),
              "model_config": cfg.to_dict(), "epoch": ckpt.get("epoch"), "step": ckpt.get("step"),
              "input": {"name": INPUT_NAME, "shape": shape, "layout": "N, C, T, H, W", "dtype": "float32",
                        "range": [0.0, 1.0], "channels": "gray" if cfg.channels == 1 else "RGB"},
              "output": {"name": OUTPUT_NAME, "shape": ["batch", cfg.channels, *cfg.size],
                         "meaning": f"the centre frame (index {cfg.temporal // 2}) reconstructed, in [0, 1]"},
              "train_scores": to_json(ckpt.get("train_scores")), "calibration": None}
    if calibration is not None:
        stored = calibration.to_record()
        if calibration.appearance is not None:  # the backbone's weights are in the graph, not the metadata
            features = stored["appearance"]["features"]
            stored["appearance"]["features"] = {"identity": calibration.appearance.features.identity(),
                                                "short_side": features["short_side"], "pool": features["pool"]}
            record["frames_input"] = {"name": FRAMES_NAME, "shape": ["batch", 3, "height", "width"],
                                      "meaning": "frames resized for the appearance backbone, RGB in [0, 1]",
                                      "output": MAPS_NAME}
        record["calibration"] = tensors_to_json(stored)
    if source is not None:
        from vadgpu.checkpoint import checkpoint_record

        named = checkpoint_record(source)  # shipped weights: the package's file, and their name
        record["checkpoint"] = named["path"]
        if "shipped" in named:
            record["checkpoint_shipped"] = named["shipped"]
    return record


def export_model(checkpoint: str | Path, fmt: str, out: str | Path, seed: int = 0,
                 overwrite: bool = False) -> ExportResult:
    """Export a vadgpu checkpoint (RUN/model.pt or a training checkpoint) as `fmt` to `out`, checked (see above).
    An existing `out` is replaced only when it is an earlier vadgpu export and `overwrite` is set."""
    from vadgpu.checkpoint import load_checkpoint
    from vadgpu.models.registry import model_from_checkpoint
    from vadgpu.outputs import check_export_out
    from vadgpu.scoring.calibration import stored_calibration

    if fmt not in FORMATS:
        raise VadgpuError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    check_export_out(out, checkpoint, overwrite)
    if fmt == "onnx":  # both, before any work: the export writes with one and checks with the other
        require("onnx", "vadgpu export --format onnx")
        require("onnxruntime", "vadgpu export --format onnx (its self-check)")
    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = model_from_checkpoint(ckpt).eval()
    calibration = stored_calibration(ckpt, checkpoint) if model.config.clips == "objects" else None
    backbone = None
    if fmt == "onnx" and calibration is not None and calibration.appearance is not None:
        backbone = calibration.appearance.features.backbone
    network = ScoringNetwork(model, backbone).eval()
    metadata = export_metadata(ckpt, model, calibration if fmt == "onnx" else None, checkpoint)
    cfg = model.config
    generator = torch.Generator().manual_seed(seed)

    def inputs(batch: int) -> tuple[torch.Tensor, ...]:
        clips = torch.rand(batch, cfg.channels, cfg.temporal, *cfg.size, generator=generator)
        if backbone is None:
            return (clips,)
        return clips, torch.rand(batch, 3, 64 + 32 * batch, 96, generator=generator)

    example, check = inputs(TRACE_BATCH), inputs(CHECK_BATCH)
    with torch.inference_mode():
        expected = network(*check)
    expected = [e.numpy() for e in (expected if isinstance(expected, tuple) else (expected,))]
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _write_onnx(network, example, tmp, metadata)
            exported = OnnxModel(tmp)
            feeds = {INPUT_NAME: check[0].numpy(), **({} if backbone is None else {FRAMES_NAME: check[1].numpy()})}
            got = [exported.run(feeds, name) for name in (OUTPUT_NAME, MAPS_NAME)[:len(expected)]]
        else:
            _write_torchscript(network, example, tmp, metadata)
            with _quiet_tracing(), torch.inference_mode():
                got = [torch.jit.load(str(tmp), map_location="cpu")(*check).numpy()]
        error = 0.0
        for name, have, want in zip((OUTPUT_NAME, MAPS_NAME), got, expected):
            if have.shape != want.shape:
                raise VadgpuError(f"export check: the {fmt} file gives {name} of shape {have.shape} for a batch of "
                                  f"{CHECK_BATCH}, torch gives {want.shape}")
            error = max(error, float(np.abs(have.astype(np.float64) - want).max()))
        if not error <= TOLERANCE:
            raise VadgpuError(f"export check failed: the {fmt} file differs from the torch model by {error:.3g} "
                              f"(allowed {TOLERANCE:g}); {out} was not written")
    return ExportResult(out, fmt, error, metadata)


@contextlib.contextmanager
def _quiet_tracing():
    with warnings.catch_warnings():
        # the shape check in check_clips is a constant of the traced graph, which is what we want
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        warnings.filterwarnings("ignore", message="Constant folding")  # a strided slice stays an op: that is fine
        yield


def _write_onnx(network: nn.Module, example: tuple[torch.Tensor, ...], path: Path, metadata: dict) -> None:
    onnx = require("onnx", "vadgpu export --format onnx")
    names, outputs = [INPUT_NAME], [OUTPUT_NAME]
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if len(example) == 2:  # the appearance backbone: frames of any size
        names, outputs = names + [FRAMES_NAME], outputs + [MAPS_NAME]
        axes.update({FRAMES_NAME: {0: "frames", 2: "height", 3: "width"},
                     MAPS_NAME: {0: "frames", 2: "map_height", 3: "map_width"}})
    try:
        with _quiet_tracing():
            # The TorchScript-based exporter: it needs no onnxscript and handles every op of both models.
            torch.onnx.export(network, example, str(path), dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=outputs, dynamic_axes=axes)
    except Exception as exc:  # the exporter raises many types; the user needs the op that failed
        raise VadgpuError(f"ONNX export of {metadata['model_name']} failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300]}") from exc
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.producer_name, proto.producer_version = "vadgpu", __version__
    onnx.save(proto, str(path))


def _write_torchscript(network: nn.Module, example: tuple[torch.Tensor, ...], path: Path, metadata: dict) -> None:
    try:
        with _quiet_tracing(), torch.no_grad():
            traced = torch.jit.trace(network, example, check_trace=False)
    except Exception as exc:
        raise VadgpuError(f"TorchScript export of {metadata['model_name']} failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300]}") from exc
    with _quiet_tracing():
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(metadata)})


def read_torchscript_metadata(path: str | Path) -> dict:
    """The metadata of an exported TorchScript file (read from its archive, without loading the code)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith(f"extra/{TORCHSCRIPT_EXTRA}"))
            return json.loads(archive.read(name))
    except (OSError, zipfile.BadZipFile, StopIteration, ValueError) as exc:
        raise VadgpuError(f"{path} is not a TorchScript file exported by vadgpu ({exc})") from exc
