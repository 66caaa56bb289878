"""`vadgpu export`: a trained model as an ONNX or TorchScript file that runs without vadgpu, and its reader.

The exported network is the scoring path of the model, `reconstruct`: clips (N, C, T, H, W) float32 in [0, 1] in,
the reconstructed (or predicted) centre frame (N, C, H, W) in [0, 1] out, with a dynamic batch size. The input is
named `clips`, the output `recon`; the score is computed from the output and the input's centre frame (index
T // 2) as vadgpu does (evaluation/scores.py). Object models export the same way: their input is a batch of
object tubes, cut from the frames around each box by the caller (objects/tubes.py).

Metadata travels inside the file as one JSON document (`METADATA_KEY`): the model name and config (clip geometry,
channels, clips mode, target), the input and output layout, the vadgpu version, and the training videos' scores
(`train_scores`, when the weights file has them) for normalisation and the default alarm threshold. ONNX keeps it
in the model's metadata_props, TorchScript in an extra file of the archive.

Every export checks itself before the file is moved into place: the written file runs in onnxruntime (or is loaded
back with torch.jit.load) on a random batch of a different size than the one traced, and its output must equal
the torch model's within `TOLERANCE` (the largest absolute difference is reported).

`OnnxModel` reads an exported ONNX file (a data file: nothing in it executes as Python) and behaves like a vadgpu
model where scoring needs one (`config`, `reconstruct`), so `vadgpu score --model FILE` runs the same code.
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
from vadgpu.evaluation.train_scores import location_kind
from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path
from vadgpu.optional import require

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4
METADATA_KEY = "vadgpu"
TORCHSCRIPT_EXTRA = "vadgpu.json"
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "clips", "recon"
TRACE_BATCH, CHECK_BATCH = 2, 3  # the check runs another batch size than the trace: the batch axis is dynamic


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_error: float
    metadata: dict


class ScoringNetwork(nn.Module):
    """The model's inference path as a module with a `forward`: clips -> reconstructed centre frame."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(clips)[1]


def export_metadata(ckpt: dict, model: nn.Module, source: Path | None = None) -> dict:
    """The JSON document an exported file carries (see the module docstring)."""
    cfg = model.config
    shape = ["batch", cfg.channels, cfg.temporal, *cfg.size]
    record = {"vadgpu_version": __version__, "model_name": ckpt.get("model_name"),
              "model_config": cfg.to_dict(), "epoch": ckpt.get("epoch"), "step": ckpt.get("step"),
              "input": {"name": INPUT_NAME, "shape": shape, "layout": "N, C, T, H, W", "dtype": "float32",
                        "range": [0.0, 1.0], "channels": "gray" if cfg.channels == 1 else "RGB"},
              "output": {"name": OUTPUT_NAME, "shape": ["batch", cfg.channels, *cfg.size],
                         "meaning": f"the centre frame (index {cfg.temporal // 2}) reconstructed, in [0, 1]"},
              "train_scores": train_scores_to_json(ckpt.get("train_scores"))}
    if source is not None:
        from vadgpu.checkpoint import checkpoint_record

        named = checkpoint_record(source)  # shipped weights: the package's file, and their name
        record["checkpoint"] = named["path"]
        if "shipped" in named:
            record["checkpoint_shipped"] = named["shipped"]
    return record


def train_scores_to_json(scores: dict | None) -> dict | None:
    """A checkpoint's `train_scores` (tensors per video) as plain lists, for JSON metadata."""
    if not scores:
        return None
    out = {}
    for key, value in scores.items():
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
            out[key] = [v.double().tolist() for v in value]
        elif isinstance(value, dict):  # the location statistics of object models
            out[key] = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in value.items()}
        else:
            out[key] = value
    return out


def train_scores_from_json(scores: dict | None) -> dict | None:
    """The inverse of `train_scores_to_json` (lists of floats back to float64 tensors)."""
    if not scores:
        return None
    out = dict(scores)
    for kind in ("patch-max", "psnr", "mse", location_kind("mse")):
        if kind in out:
            out[kind] = [torch.tensor(v, dtype=torch.float64) for v in out[kind]]
    return out


def export_model(checkpoint: str | Path, fmt: str, out: str | Path, seed: int = 0,
                 overwrite: bool = False) -> ExportResult:
    """Export a vadgpu checkpoint (RUN/model.pt or a training checkpoint) as `fmt` to `out`, checked (see above).
    An existing `out` is replaced only when it is an earlier vadgpu export and `overwrite` is set."""
    from vadgpu.checkpoint import load_checkpoint
    from vadgpu.models.registry import model_from_checkpoint
    from vadgpu.outputs import check_export_out

    if fmt not in FORMATS:
        raise VadgpuError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    check_export_out(out, checkpoint, overwrite)
    if fmt == "onnx":  # both, before any work: the export writes with one and checks with the other
        require("onnx", "vadgpu export --format onnx")
        require("onnxruntime", "vadgpu export --format onnx (its self-check)")
    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    model = model_from_checkpoint(ckpt).eval()
    network = ScoringNetwork(model).eval()
    metadata = export_metadata(ckpt, model, checkpoint)
    cfg = model.config
    generator = torch.Generator().manual_seed(seed)
    example = torch.rand(TRACE_BATCH, cfg.channels, cfg.temporal, *cfg.size, generator=generator)
    check = torch.rand(CHECK_BATCH, cfg.channels, cfg.temporal, *cfg.size, generator=generator)
    with torch.inference_mode():
        expected = network(check).numpy()
    with atomic_path(out) as tmp:
        if fmt == "onnx":
            _write_onnx(network, example, tmp, metadata)
            got = OnnxModel(tmp).run(check.numpy())
        else:
            _write_torchscript(network, example, tmp, metadata)
            with _quiet_tracing(), torch.inference_mode():
                got = torch.jit.load(str(tmp), map_location="cpu")(check).numpy()
        if got.shape != expected.shape:
            raise VadgpuError(f"export check: the {fmt} file gives shape {got.shape} for a batch of {CHECK_BATCH}, "
                              f"torch gives {expected.shape}")
        error = float(np.abs(got.astype(np.float64) - expected).max())
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
        yield


def _write_onnx(network: nn.Module, example: torch.Tensor, path: Path, metadata: dict) -> None:
    onnx = require("onnx", "vadgpu export --format onnx")
    try:
        with _quiet_tracing():
            # The TorchScript-based exporter: it needs no onnxscript and handles every op of both models.
            torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    except Exception as exc:  # the exporter raises many types; the user needs the op that failed
        raise VadgpuError(f"ONNX export of {metadata['model_name']} failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300]}") from exc
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.producer_name, proto.producer_version = "vadgpu", __version__
    onnx.save(proto, str(path))


def _write_torchscript(network: nn.Module, example: torch.Tensor, path: Path, metadata: dict) -> None:
    try:
        with _quiet_tracing(), torch.no_grad():
            traced = torch.jit.trace(network, (example,), check_trace=False)
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


class OnnxModel:
    """An exported ONNX file in onnxruntime (CPU), with the parts of a vadgpu model that scoring uses:
    `config` (rebuilt from the metadata), `reconstruct(clips) -> (centre frame, reconstruction)`, `train_scores`."""

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

    def run(self, clips: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(clips, dtype=np.float32)})[0]

    def reconstruct(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from vadgpu.models.base import centre_frame, model_input

        cfg = self.config
        expected = (cfg.channels, cfg.temporal, *cfg.size)
        if clips.dim() != 5 or tuple(clips.shape[1:]) != expected:
            raise VadgpuError(f"--model {self.path} expects clips (N, {', '.join(map(str, expected))}), got "
                              f"{tuple(clips.shape)}")
        recon = torch.from_numpy(self.run(clips.detach().float().cpu().numpy())).to(clips.device)
        return centre_frame(model_input(cfg, clips)), recon  # the target as the model saw it

    # the nn.Module calls scoring makes on a model
    def to(self, *_args, **_kwargs) -> "OnnxModel":
        return self

    def eval(self) -> "OnnxModel":
        return self
