"""The torch Darknet backbone: the same maps as OpenCV DNN for the same blob (the tiny test network, every section
kind it reads, the real yolov3-tiny up to leaky_9), the checkpoint record, clear errors, CUDA equal to the CPU."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_tiny_darknet

from vadgpu.errors import VadgpuError
from vadgpu.objects.darknet_torch import DarknetBackbone
from vadgpu.objects.detectors import load_darknet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blob(height: int, width: int, count: int = 2, seed: int = 0) -> np.ndarray:
    """What the appearance features feed the network: BGR uint8 frames -> (N, 3, H, W) RGB float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    return cv2.dnn.blobFromImages(frames, 1 / 255.0, swapRB=True, crop=False)


def _opencv(cfg: Path, weights: Path, layer: str, blob: np.ndarray) -> np.ndarray:
    net = load_darknet(cfg, weights, "test network")
    net.setInput(blob)
    return net.forward(layer)


def _torch(backbone: DarknetBackbone, blob: np.ndarray, device: str = "cpu") -> np.ndarray:
    with torch.inference_mode():
        return backbone.to(device)(torch.from_numpy(blob).to(device)).cpu().numpy()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def _assert_same_map(ours: np.ndarray, opencv: np.ndarray) -> None:
    """Within 1e-4 for maps of magnitude up to 10 (yolov3-tiny's leaky_9 peaks near 10), proportionally more beyond:
    float32 rounding grows with the values, and the random weights of the tiny test network take its maps to ~90
    (there OpenCV itself is 1e-4 to 3e-4 from a float64 evaluation)."""
    scale = max(1.0, float(np.abs(opencv).max()) / 10)
    assert _max_diff(ours, opencv) < 1e-4 * scale


def _write_darknet(folder: Path, sections: list[tuple[str, dict]], version=(0, 2, 0), seed: int = 0) -> Path:
    """folder/net.cfg + net.weights (returned) of `sections`, with random batch-norm statistics and weights."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = ["[net]", "width=64", "height=64", "channels=3", ""]
    seen = np.array([1000], np.int64 if version[0] * 10 + version[1] >= 2 else np.int32)
    parts = [np.array(version, np.int32).tobytes(), seen.tobytes()]
    channels = 3
    for kind, options in sections:
        lines += [f"[{kind}]", *(f"{key}={value}" for key, value in options.items()), ""]
        if kind == "convolutional":
            filters, size = options["filters"], options["size"]
            parts.append(rng.normal(0, 0.1, filters).astype(np.float32).tobytes())
            if options.get("batch_normalize"):
                parts += [rng.uniform(0.5, 2, filters).astype(np.float32).tobytes(),
                          rng.normal(0, 0.3, filters).astype(np.float32).tobytes(),
                          rng.uniform(0.2, 2, filters).astype(np.float32).tobytes()]
            count = filters * channels // options.get("groups", 1) * size * size
            parts.append(rng.normal(0, 0.3, count).astype(np.float32).tobytes())
            channels = filters
    (folder / "net.cfg").write_text("\n".join(lines))
    (folder / "net.weights").write_bytes(b"".join(parts))
    return folder / "net.weights"


def _conv(**options) -> tuple[str, dict]:
    return "convolutional", {"batch_normalize": 1, "filters": 4, "size": 3, "stride": 1, "pad": 1,
                             "activation": "leaky", **options}


# every section kind and option the backbone reads: convolutions with and without batch norm, strides, groups,
# explicit padding, each activation OpenCV knows; max pools of stride 1 and 2, odd sizes, explicit padding
SECTIONS = [_conv(), ("maxpool", {"size": 2, "stride": 2}), _conv(batch_normalize=0, activation="linear"),
            ("maxpool", {"size": 3, "stride": 1}), _conv(activation="relu", stride=2),
            ("maxpool", {"size": 2, "stride": 1}), _conv(activation="swish", size=1, pad=0),
            _conv(activation="mish", filters=6, groups=2), ("maxpool", {"size": 3, "stride": 2}),
            _conv(activation="logistic", pad=0, padding=2), _conv(activation="tanh", filters=8, groups=2),
            _conv(activation="linear"), ("maxpool", {"size": 3, "stride": 2, "padding": 1})]
OUTPUTS = ["leaky_1", "pool_1", "conv_2", "pool_3", "relu_5", "pool_5", "swish_7", "mish_8", "pool_8",
           "logistic_10", "tanh_11", "bn_11", "pool_12"]  # each section's output, as OpenCV names it


@pytest.mark.parametrize("size", [(64, 64), (48, 72), (40, 56)])
def test_tiny_network_equals_opencv(tmp_path, size):
    weights = make_tiny_darknet(tmp_path)
    blob = _blob(*size)
    backbone = DarknetBackbone.from_darknet(weights.with_suffix(".cfg"), weights, "leaky_9")
    ours, theirs = _torch(backbone, blob), _opencv(weights.with_suffix(".cfg"), weights, "leaky_9", blob)
    assert ours.shape[:2] == (2, 16)
    _assert_same_map(ours, theirs)


@pytest.mark.parametrize("version", [(0, 2, 0), (0, 1, 0)])  # images seen: int64 / int32
def test_every_section_kind_and_layer_equals_opencv(tmp_path, version):
    weights = _write_darknet(tmp_path, SECTIONS, version)
    cfg = weights.with_suffix(".cfg")
    assert [n for n in load_darknet(cfg, weights, "test").getLayerNames() if n in OUTPUTS] == OUTPUTS
    blob = _blob(49, 75)
    for layer in OUTPUTS:
        backbone = DarknetBackbone.from_darknet(cfg, weights, layer)
        _assert_same_map(_torch(backbone, blob), _opencv(cfg, weights, layer, blob))


@pytest.mark.shared
def test_yolov3_tiny_leaky_9_equals_opencv(yolov3_tiny_dir):
    cfg, weights = yolov3_tiny_dir / "yolov3-tiny.cfg", yolov3_tiny_dir / "yolov3-tiny.weights"
    blob = _blob(320, 480, count=1)
    backbone = DarknetBackbone.from_darknet(cfg, weights, "leaky_9")
    ours = _torch(backbone, blob)
    assert ours.shape == (1, 256, 20, 30)
    assert _max_diff(ours, _opencv(cfg, weights, "leaky_9", blob)) < 1e-4
    assert backbone.identity()["name"] == "yolov3-tiny.weights"


def test_record_round_trip_through_a_weights_only_checkpoint(tmp_path):
    weights = _write_darknet(tmp_path, SECTIONS)
    backbone = DarknetBackbone.from_darknet(weights.with_suffix(".cfg"), weights, "tanh_11")
    torch.save({"appearance": backbone.to_record()}, tmp_path / "model.pt")
    record = torch.load(tmp_path / "model.pt", weights_only=True)["appearance"]
    again = DarknetBackbone.from_record(record)
    blob = _blob(40, 56)
    assert np.array_equal(_torch(again, blob), _torch(backbone, blob))
    assert again.identity() == backbone.identity() == {
        "name": "net.weights", "layer": "tanh_11",
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "cfg_sha256": hashlib.sha256(weights.with_suffix(".cfg").read_bytes()).hexdigest()}

    broken = dict(record, state=dict(record["state"]))
    broken["state"]["layers.0.weight"] = broken["state"]["layers.0.weight"][:2]
    with pytest.raises(VadgpuError, match=r"wrong shape: layers\.0\.weight"):
        DarknetBackbone.from_record(broken)
    with pytest.raises(VadgpuError, match="expected keys"):
        DarknetBackbone.from_record({key: value for key, value in record.items() if key != "specs"})
    with pytest.raises(VadgpuError, match="activation 'gelu'"):
        DarknetBackbone.from_record(dict(record, specs=[dict(record["specs"][0], activation="gelu")]))
    with pytest.raises(VadgpuError, match="on 4 channels"):  # a spec chain that does not fit together
        DarknetBackbone.from_record(dict(record, specs=[record["specs"][0]] * 2))


def test_an_unsupported_section_before_the_layer_is_a_clear_error(tmp_path):
    sections = [_conv(), _conv(), ("shortcut", {"from": -2, "activation": "linear"}), _conv()]
    weights = _write_darknet(tmp_path, sections)
    cfg = weights.with_suffix(".cfg")
    assert "leaky_4" in load_darknet(cfg, weights, "test").getLayerNames()
    with pytest.raises(VadgpuError, match=r"net\.cfg section 2 \[shortcut\]: layer 'leaky_4' is not before"):
        DarknetBackbone.from_darknet(cfg, weights, "leaky_4")
    with pytest.raises(VadgpuError, match=r"no layer 'nope' \(it has leaky_1, leaky_2; .* then comes section 2 "
                                          r"\[shortcut\]\)"):
        DarknetBackbone.from_darknet(cfg, weights, "nope")
    # layers before it are read
    blob = _blob(32, 32)
    backbone = DarknetBackbone.from_darknet(cfg, weights, "leaky_2")
    _assert_same_map(_torch(backbone, blob), _opencv(cfg, weights, "leaky_2", blob))


def test_unknown_layers_are_clear_errors_listing_the_names(tmp_path):
    weights = make_tiny_darknet(tmp_path)
    cfg = weights.with_suffix(".cfg")
    with pytest.raises(VadgpuError, match=r"no layer 'leaky_99' \(it has leaky_1, pool_1, leaky_3, .*, leaky_9\)"):
        DarknetBackbone.from_darknet(cfg, weights, "leaky_99")
    with pytest.raises(VadgpuError, match="'bn_8' is inside this section; .* here 'leaky_9'"):
        DarknetBackbone.from_darknet(cfg, weights, "bn_8")
    with pytest.raises(VadgpuError, match=r"absent\.weights: no such file"):
        DarknetBackbone.from_darknet(cfg, tmp_path / "absent.weights", "leaky_9")
    cfg.write_text(cfg.read_text().replace("channels=3", "channels=1"))
    with pytest.raises(VadgpuError, match="channels=1"):
        DarknetBackbone.from_darknet(cfg, weights, "leaky_9")


def test_a_truncated_weights_file_is_a_clear_error_but_earlier_layers_read(tmp_path):
    weights = make_tiny_darknet(tmp_path)
    cfg = weights.with_suffix(".cfg")
    blob = _blob(32, 32)
    whole = _torch(DarknetBackbone.from_darknet(cfg, weights, "leaky_1"), blob)
    data = weights.read_bytes()
    weights.write_bytes(data[:20 + 4 * (4 * 4 + 4 * 3 * 9)])  # the header and the first convolution only
    assert np.array_equal(_torch(DarknetBackbone.from_darknet(cfg, weights, "leaky_1"), blob), whole)
    with pytest.raises(VadgpuError, match=r"tiny\.weights: too short for the layers up to 'leaky_3'"):
        DarknetBackbone.from_darknet(cfg, weights, "leaky_3")
    weights.write_bytes(data[:10])
    with pytest.raises(VadgpuError, match=r"tiny\.weights: too short"):
        DarknetBackbone.from_darknet(cfg, weights, "leaky_1")


@pytest.mark.gpu
@pytest.mark.parametrize("network", ["sections", "yolov3-tiny"])
def test_cuda_equals_the_cpu(tmp_path, request, network):
    if network == "yolov3-tiny":
        folder = request.getfixturevalue("yolov3_tiny_dir")  # skips without ../shared
        cfg, weights = folder / "yolov3-tiny.cfg", folder / "yolov3-tiny.weights"
        layer, blob = "leaky_9", _blob(320, 480)
    else:
        weights = _write_darknet(tmp_path, SECTIONS)
        cfg, layer, blob = weights.with_suffix(".cfg"), "pool_12", _blob(96, 128, count=3)
    backbone = DarknetBackbone.from_darknet(cfg, weights, layer)
    cpu = _torch(backbone, blob)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # full float32 convolutions, as on the CPU
        cuda = _torch(DarknetBackbone.from_record(backbone.to_record()), blob, "cuda")
    _assert_same_map(cuda, cpu)
