"""A Darknet YOLO (.cfg + .weights) read into torch up to one intermediate layer, for appearance features on the
model's device.

`DarknetBackbone` gives the same map as OpenCV's DNN module (`cv2.dnn.readNetFromDarknet(cfg, weights)` then
`net.forward(layer)`), within float rounding, for the same input: (N, 3, H, W) float32 RGB in [0, 1], which is what
`cv2.dnn.blobFromImages(bgr_frames, 1 / 255, swapRB=True)` gives. Layers are named as OpenCV names them: section k of
the cfg (counting from 0 after [net]) gives `conv_k` (then `bn_k` with batch_normalize=1) or `pool_k`, and its
activation, unless linear, `<activation>_<k+1>` (yolov3-tiny's `leaky_9` is the activation of section 8, the
256-channel convolution at stride 16). The backbone ends at a section's output: its activation, or for a linear one
`bn_k` / `conv_k` / `pool_k`. Batch norm is folded into the convolutions with OpenCV's arithmetic
(scale / sqrt(variance + 1e-6)), so the module is convolutions, activations and max pools only.

    backbone = DarknetBackbone.from_darknet("yolov3-tiny.cfg", "yolov3-tiny.weights", "leaky_9").to(device)
    maps = backbone(blob)                                   # (N, 3, H, W) -> (N, 256, H / 16, W / 16)
    checkpoint["appearance"] = backbone.to_record()         # plain values and tensors (torch.load weights_only)
    backbone = DarknetBackbone.from_record(checkpoint["appearance"])

Only [convolutional] and [maxpool] sections are read; the layer must come before any other section type.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vadgpu.errors import VadgpuError

FORMAT = 1  # of `to_record`
BN_EPS = 1e-6  # OpenCV's batch norm epsilon for Darknet nets (Darknet itself divides by sqrt(var) + 1e-6)
# those OpenCV 4.x reads; in place where torch has it (a convolution's output is read by its activation alone)
ACTIVATIONS = {"leaky": lambda: nn.LeakyReLU(0.1, inplace=True), "relu": lambda: nn.ReLU(inplace=True),
               "swish": lambda: nn.SiLU(inplace=True), "mish": lambda: nn.Mish(inplace=True),
               "logistic": nn.Sigmoid, "tanh": nn.Tanh, "linear": None}
_SPEC_KEYS = {"convolutional": ("channels", "filters", "size", "stride", "padding", "groups"),
              "maxpool": ("size", "stride", "padding")}
_RECORD_KEYS = ("format", "name", "layer", "weights_sha256", "cfg_sha256", "specs", "state")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_cfg(path: Path) -> tuple[dict, list[tuple[str, dict]]]:
    """([net] options, [(section type, options)]) of a Darknet cfg; whitespace inside lines is ignored, as Darknet
    and OpenCV do."""
    net, sections, current = None, [], None
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[" and line[-1] == "]":
            current = {}
            if line in ("[net]", "[network]") and net is None and not sections:
                net = current
            else:
                sections.append((line[1:-1], current))
        elif "=" in line and current is not None:
            key, value = line.split("=", 1)
            current[key] = value
        else:
            raise VadgpuError(f"{path}:{number}: cannot read {raw.strip()!r} (expected [section] or key=value)")
    if net is None:
        raise VadgpuError(f"{path}: not a Darknet cfg (its first section is not [net])")
    return net, sections


def _section_number(layer: str) -> int:
    """The number OpenCV puts at the end of a layer's name (conv_8 -> 8), -1 for a name without one."""
    prefix, _, number = layer.rpartition("_")
    return int(number) if prefix and number.isdigit() else -1


def _int(options: dict, key: str, default: int, where: str) -> int:
    try:
        return int(options.get(key, default))
    except ValueError:
        raise VadgpuError(f"{where}: {key}={options[key]} is not an integer") from None


def _check_spec(spec: dict, channels: int, where: str) -> None:
    """A section spec (see DarknetBackbone) whose convolution reads `channels` channels, else a VadgpuError."""
    if not isinstance(spec, dict) or spec.get("type") not in _SPEC_KEYS:
        raise VadgpuError(f"{where}: not a convolutional or maxpool spec ({spec!r})")
    keys = _SPEC_KEYS[spec["type"]]
    if not all(isinstance(spec.get(k), int) and spec[k] >= (k != "padding") for k in keys):
        raise VadgpuError(f"{where}: {spec!r} needs integers {', '.join(keys)} (padding >= 0, the others >= 1)")
    if spec.get("activation") not in ACTIVATIONS:
        raise VadgpuError(f"{where}: activation {spec.get('activation')!r} is not one of {', '.join(ACTIVATIONS)}")
    if spec["type"] == "convolutional" and (spec["channels"] != channels or channels % spec["groups"]
                                            or spec["filters"] % spec["groups"]):
        raise VadgpuError(f"{where}: a convolution of {spec['channels']} channels to {spec['filters']} in "
                          f"{spec['groups']} groups, on {channels} channels")


class _MaxPool(nn.Module):
    """Darknet's max pool: `padding` (default size - 1) split floor / ceil between the left / top and the right /
    bottom, padded cells never chosen; output (w + padding - size) // stride + 1."""

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride
        self.pad = (padding // 2, padding - padding // 2) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a traced graph (export) keeps the padding: it takes frames of any size
        if any(self.pad) and (torch.jit.is_tracing() or not self._padding_unread(x)):
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def _padding_unread(self, x: torch.Tensor) -> bool:
        """Whether no window reaches a padded cell (nothing on the left and top, and the right and bottom padding
        adds no output: yolov3-tiny's 2 x 2 pools on even sizes), so the padded copy can be skipped."""
        left, right, top, bottom = self.pad
        return left == 0 and top == 0 and all(
            side >= self.size and (side + extra - self.size) // self.stride == (side - self.size) // self.stride
            for side, extra in ((x.shape[-1], right), (x.shape[-2], bottom)))


class DarknetBackbone(nn.Module):
    """The first layers of a Darknet network, up to and including `layer` (module docstring). `specs`: one dict per
    cfg section kept, {"type": "convolutional", channels, filters, size, stride, padding, groups, activation} or
    {"type": "maxpool", size, stride, padding, activation}; `source`: name, weights_sha256, cfg_sha256."""

    def __init__(self, specs: list[dict], layer: str, source: dict) -> None:
        super().__init__()
        modules, channels = [], 3
        for index, spec in enumerate(specs):
            _check_spec(spec, channels, f"darknet backbone {layer!r}: section {index}")
            if spec["type"] == "convolutional":
                channels = spec["filters"]
                modules.append(nn.Conv2d(spec["channels"], channels, spec["size"], spec["stride"], spec["padding"],
                                         groups=spec["groups"]))
            else:
                modules.append(_MaxPool(spec["size"], spec["stride"], spec["padding"]))
            if ACTIVATIONS[spec["activation"]] is not None:
                modules.append(ACTIVATIONS[spec["activation"]]())
        self.layers = nn.Sequential(*modules)
        self.specs = [dict(spec) for spec in specs]
        self.layer = layer
        self.source = {key: str(source[key]) for key in ("name", "weights_sha256", "cfg_sha256")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float RGB in [0, 1] -> the layer's map (N, C, h, w)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise VadgpuError(f"darknet backbone: input of shape {tuple(x.shape)}, expected (N, 3, H, W)")
        return self.layers(x)

    def identity(self) -> dict:
        """{name (the weights file's name), layer, weights_sha256, cfg_sha256}: what the features come from."""
        return {"name": self.source["name"], "layer": self.layer, "weights_sha256": self.source["weights_sha256"],
                "cfg_sha256": self.source["cfg_sha256"]}

    def to_record(self) -> dict:
        """{format, name, layer, weights_sha256, cfg_sha256, specs, state (the module's tensors, on the CPU)}: plain
        values and tensors only, for a checkpoint read back with torch.load(weights_only=True)."""
        return {"format": FORMAT, **self.identity(), "specs": [dict(spec) for spec in self.specs],
                "state": {key: value.detach().cpu().clone() for key, value in self.state_dict().items()}}

    @classmethod
    def from_record(cls, record: dict) -> "DarknetBackbone":
        """The backbone `to_record` gave (on the CPU); a record of another format or shape is a VadgpuError."""
        if not isinstance(record, dict) or sorted(record) != sorted(_RECORD_KEYS):
            got = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise VadgpuError(f"darknet backbone record: expected keys {', '.join(_RECORD_KEYS)}, got {got}")
        if record["format"] != FORMAT:
            raise VadgpuError(f"darknet backbone record: format {record['format']!r}, this version reads {FORMAT}")
        if not isinstance(record["specs"], list) or not record["specs"] or not isinstance(record["state"], dict):
            raise VadgpuError("darknet backbone record: specs must be a non-empty list and state a dict of tensors")
        backbone = cls(record["specs"], str(record["layer"]), record)
        expected = backbone.state_dict()
        state = record["state"]
        wrong = sorted(set(expected) ^ set(state)) + sorted(
            key for key in set(expected) & set(state)
            if not isinstance(state[key], torch.Tensor) or state[key].shape != expected[key].shape)
        if wrong:
            raise VadgpuError(f"darknet backbone record: tensors missing, unexpected or of the wrong shape: "
                              f"{', '.join(wrong)}")
        backbone.load_state_dict({key: value.float() for key, value in state.items()})
        return backbone

    @classmethod
    def from_darknet(cls, cfg: str | os.PathLike, weights: str | os.PathLike, layer: str) -> "DarknetBackbone":
        """Read `cfg` and as much of `weights` as the sections up to `layer` (OpenCV's name) need."""
        cfg, weights = Path(cfg), Path(weights)
        for path, what in ((cfg, "network description (.cfg)"), (weights, "weights")):
            if not path.is_file():
                raise VadgpuError(f"darknet backbone: {what} {path}: no such file")
        net, sections = _read_cfg(cfg)
        channels = _int(net, "channels", 3, f"{cfg} [net]")
        if channels != 3:
            raise VadgpuError(f"{cfg}: [net] channels={channels}; the backbone reads 3-channel (RGB) networks")
        specs, outputs, stop = [], [], ""  # outputs: each section's output, as OpenCV names it
        for index, (kind, options) in enumerate(sections):
            where = f"{cfg} section {index} [{kind}]"
            if kind not in _SPEC_KEYS:
                reads = "the torch backbone reads [convolutional] and [maxpool] sections only"
                if _section_number(layer) >= index:  # OpenCV names a section's layers <type>_<index or index + 1>
                    raise VadgpuError(f"{where}: layer {layer!r} is not before this section, and {reads}")
                stop = f"; {reads}, then comes section {index} [{kind}]"
                break
            activation = options.get("activation", "linear")
            size = _int(options, "size", -1 if kind == "convolutional" else 2, where)
            stride = _int(options, "stride", 1 if kind == "convolutional" else 2, where)
            if kind == "convolutional":
                padding = size // 2 if _int(options, "pad", 0, where) else _int(options, "padding", 0, where)
                spec = {"type": kind, "channels": channels, "filters": _int(options, "filters", -1, where),
                        "size": size, "stride": stride, "padding": padding, "groups": _int(options, "groups", 1, where)}
                names = [f"conv_{index}"] + [f"bn_{index}"] * (_int(options, "batch_normalize", 0, where) == 1)
            else:
                spec = {"type": kind, "size": size, "stride": stride,
                        "padding": _int(options, "padding", size - 1, where)}
                names = [f"pool_{index}"]
            spec["activation"] = activation
            _check_spec(spec, channels, where)
            specs.append(spec)
            channels = spec.get("filters", channels)
            if activation != "linear":
                names.append(f"{activation}_{index + 1}")
            outputs.append(names[-1])
            if layer == names[-1]:
                break
            if layer in names:
                raise VadgpuError(f"{where}: {layer!r} is inside this section; the torch backbone ends at a "
                                  f"section's output, here {names[-1]!r} (OpenCV fuses a section's layers, its own "
                                  "output inside one is unreliable)")
        if layer not in outputs:
            raise VadgpuError(f"{cfg} has no layer {layer!r} (it has {', '.join(outputs) or 'none'}{stop})")
        backbone = cls(specs, layer, {"name": weights.name, "weights_sha256": _sha256(weights),
                                      "cfg_sha256": _sha256(cfg)})
        backbone.load_state_dict(_read_weights(weights, sections, specs, layer))
        return backbone


def _read_weights(path: Path, sections: list, specs: list[dict], layer: str) -> dict:
    """The convolutions' weights and biases for `specs`, batch norm folded in, from a Darknet .weights file: a header
    (int32 major, minor, revision; images seen, int64 where major * 10 + minor >= 2, else int32), then per
    convolution its biases, with batch norm its scales, means and variances, then its weights (filters,
    channels / groups, size, size), all little-endian float32. Only what `specs` need is read."""
    convs = [(f"layers.{module}", spec["filters"], _int(sections[index][1], "batch_normalize", 0, str(path)) == 1,
              (spec["filters"], spec["channels"] // spec["groups"], spec["size"], spec["size"]))
             for index, (spec, module) in enumerate(zip(specs, _module_indices(specs)))
             if spec["type"] == "convolutional"]
    needed = sum(filters * (4 if bn else 1) + int(np.prod(shape)) for _, filters, bn, shape in convs)
    with open(path, "rb") as fh:
        header = fh.read(12)  # major, minor, revision
        major, minor = (int(v) for v in np.frombuffer(header[:8], "<i4")) if len(header) == 12 else (0, 0)
        if major > 1000 or minor > 1000:
            raise VadgpuError(f"{path}: transposed Darknet weights (version {major}.{minor}) are not supported")
        seen_bytes = 8 if major * 10 + minor >= 2 else 4  # images seen: int64 or int32
        complete = len(header) == 12 and len(fh.read(seen_bytes)) == seen_bytes
        data = np.frombuffer(fh.read(4 * needed), "<f4").astype(np.float64)
        size = fh.tell()
    if not complete or len(data) < needed:
        raise VadgpuError(f"{path}: too short for the layers up to {layer!r}: they need a header and {needed} "
                          f"float32 weights, the file has {size} bytes")
    state, at = {}, 0
    for prefix, filters, bn, shape in convs:
        bias, at = data[at:at + filters], at + filters
        if bn:  # biases, scales, rolling means, rolling variances
            scales, means, variances = data[at:at + 3 * filters].reshape(3, filters)
            at += 3 * filters
        weight, at = data[at:at + int(np.prod(shape))].reshape(shape), at + int(np.prod(shape))
        if bn:
            scale = scales / np.sqrt(variances + BN_EPS)
            weight, bias = weight * scale[:, None, None, None], bias - means * scale
        state[f"{prefix}.weight"] = torch.from_numpy(weight.astype(np.float32))
        state[f"{prefix}.bias"] = torch.from_numpy(bias.astype(np.float32))
    return state


def _module_indices(specs: list[dict]) -> list[int]:
    """Index in `DarknetBackbone.layers` of each spec's convolution or pool (an activation follows unless linear)."""
    indices, at = [], 0
    for spec in specs:
        indices.append(at)
        at += 1 + (spec["activation"] != "linear")
    return indices
