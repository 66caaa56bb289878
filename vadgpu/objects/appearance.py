"""What an object looks like: a pretrained detector's features pooled inside each box, on the model's device.

The tube models learn how normal objects *move*; in a fixed camera the anomalies that move like everyone else (a
cyclist riding at walking pace inside a crowd, a cart pushed slowly) differ in what they *are*. A COCO detector
has learnt that from millions of images. `BoxFeatures` runs the backbone of a Darknet YOLO in torch
(objects/darknet_torch.py) up to one intermediate layer (for yolov3-tiny `leaky_9`, the 256-channel map at stride
16, before the detection heads: the cheapest part of the network) on the frames the clip loader already decoded,
and pools that map inside each box into a `POOL` x `POOL` grid of cells with `torchvision.ops.roi_align`, so a box
gives a vector of 256 * POOL * POOL values (a bicycle's wheels sit in the lower cells, a person's legs in the same
place look different), L2-normalised. Frames are resized (bilinear) so that their shorter side is `SHORT_SIDE`
pixels (each side a multiple of 32), which puts a small far pedestrian over several cells of the map; a gray frame
is given to the network as three equal channels. Everything stays on the frames' device: no host copy, no sync.

    features = BoxFeatures.from_darknet("yolov3-tiny.weights")   # cfg beside it: yolov3-tiny.cfg
    vectors = features(frames, owner, boxes)   # (N, C, H, W) in [0, 1], (M,) frame of each box, (M, 4) -> (M, D)

The backbone's weights travel inside a model's calibration record (`to_record`), so a shipped model scores with
appearance without the Darknet files. How far a vector lies from the training objects' is scoring/appearance.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from vadgpu.bench.stages import stage
from vadgpu.errors import VadgpuError
from vadgpu.objects.darknet_torch import DarknetBackbone
from vadgpu.objects.roi_align import roi_align
from vadgpu.precision import DEFAULT_PRECISION, inference_autocast

FEATURE_LAYER = "leaky_9"  # yolov3-tiny: output of the 256-channel convolution at stride 16
POOL = 2  # roi_align cells per side of each box
SHORT_SIDE = 320  # network input: the frame's shorter side, in pixels
MULTIPLE = 32  # YOLO inputs are multiples of the network's largest stride
SAMPLING_RATIO = 2  # roi_align samples per cell and axis
CPU_FRAMES = 2  # frames per backbone call on the CPU, network input included: small activations stay in reused
# memory (16 at once spent more time faulting in fresh pages than computing: 112 ms a frame against 9 ms,
# channels-last both)


def network_input_size(frame_hw: tuple[int, int], short_side: int = SHORT_SIDE) -> tuple[int, int]:
    """(width, height) of the network input for frames of (H, W): the shorter side scaled to `short_side`, each
    side rounded to a multiple of 32 (at least 32)."""
    height, width = frame_hw
    scale = short_side / min(height, width)
    return tuple(max(MULTIPLE, int(round(side * scale / MULTIPLE)) * MULTIPLE) for side in (width, height))


def network_input(frames: torch.Tensor, short_side: int = SHORT_SIDE) -> torch.Tensor:
    """Frames (N, C, H, W) float in [0, 1], C = 1 (gray) or 3 (RGB), as the network takes them: (N, 3, h, w) RGB at
    `network_input_size`, resized bilinearly (half-pixel centres, as OpenCV's INTER_LINEAR). A gray frame is resized
    once and given as three equal channels (a broadcast view: the backbone's channels-last copy makes them)."""
    if frames.dim() != 4 or frames.shape[1] not in (1, 3):
        raise VadgpuError(f"appearance features: frames must be (N, 1 or 3, H, W), got {tuple(frames.shape)}")
    width, height = network_input_size(tuple(frames.shape[-2:]), short_side)
    x = frames.float()
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class BoxFeatures:
    """Unit feature vectors of boxes from one intermediate layer of a Darknet YOLO, in torch (module docstring)."""

    def __init__(self, backbone: DarknetBackbone, short_side: int = SHORT_SIDE, pool: int = POOL):
        if short_side < MULTIPLE or pool < 1:
            raise VadgpuError(f"appearance features: short side {short_side} (>= {MULTIPLE}) and pool {pool} (>= 1) "
                              "out of range")
        self.backbone = backbone.eval().to(memory_format=torch.channels_last)  # 2-3x faster convolutions on CPU
        self.short_side, self.pool = short_side, pool

    @classmethod
    def from_darknet(cls, weights: str | os.PathLike, cfg: str | os.PathLike | None = None,
                     layer: str = FEATURE_LAYER, **kwargs) -> "BoxFeatures":
        """From a Darknet .weights file (its .cfg beside it unless given)."""
        weights = Path(weights)
        cfg = Path(cfg) if cfg is not None else weights.with_suffix(".cfg")
        for path, what in ((weights, "weights"), (cfg, "network description (.cfg)")):
            if not path.is_file():
                raise VadgpuError(f"appearance features: {what} {path}: no such file")
        return cls(DarknetBackbone.from_darknet(cfg, weights, layer), **kwargs)

    def to(self, device: torch.device) -> "BoxFeatures":
        self.backbone = self.backbone.to(device)
        return self

    def identity(self) -> dict:
        """Which network, layer, input size and pooling give these features (compared before a bank is used)."""
        return {**self.backbone.identity(), "short_side": self.short_side, "pool": self.pool}

    def describe(self) -> str:
        ident = self.identity()
        return f"darknet:{ident['name']}:{ident['layer']}@{self.short_side}:pool{self.pool}"

    def to_record(self) -> dict:
        """For model.pt (plain values and tensors: loadable with weights_only)."""
        return {"backbone": self.backbone.to_record(), "short_side": self.short_side, "pool": self.pool}

    @classmethod
    def from_record(cls, record: dict) -> "BoxFeatures":
        try:
            return cls(DarknetBackbone.from_record(record["backbone"]), int(record["short_side"]),
                       int(record["pool"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise VadgpuError(f"the stored appearance features are incomplete or malformed ({exc!r})") from exc

    def map(self, frames: torch.Tensor, precision: str = DEFAULT_PRECISION) -> torch.Tensor:
        """The backbone's map (N, C', h, w) of frames (N, C, H, W) in [0, 1], in `precision`."""
        x = network_input(frames, self.short_side).contiguous(memory_format=torch.channels_last)
        with inference_autocast(precision, x.device):
            return self.backbone(x)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, owner: torch.Tensor, boxes: torch.Tensor,
                 precision: str = DEFAULT_PRECISION) -> torch.Tensor:
        """(M, D) float32 unit vectors of boxes (M, 4) (frame-normalised xyxy) in frames[owner] of `frames`
        (N, C, H, W) in [0, 1], on the frames' device. The backbone runs once over all N frames (on the CPU
        `CPU_FRAMES` at a time, each call making its own network input), in `precision` (vadgpu/precision.py; its
        map is float32 again before pooling)."""
        if owner.numel() == 0:
            return frames.new_zeros((0, 0), dtype=torch.float32)
        with stage("appearance.backbone"):
            step = CPU_FRAMES if frames.device.type == "cpu" else len(frames)
            maps = torch.cat([self.map(frames[i:i + step], precision) for i in range(0, len(frames), step)])
            maps = maps.float()  # (N, C', h, w)
        with stage("appearance.pool"):
            width, height = network_input_size(tuple(frames.shape[-2:]), self.short_side)
            stride = width / maps.shape[-1]
            scale = boxes.new_tensor([width, height, width, height], dtype=torch.float32)
            rois = torch.cat([owner.to(torch.float32)[:, None], boxes.float() * scale], dim=1)
            pooled = roi_align(maps, rois, (self.pool, self.pool), spatial_scale=1 / stride,
                               sampling_ratio=SAMPLING_RATIO, aligned=True)  # (M, C', pool, pool)
            return F.normalize(pooled.flatten(1), dim=1)
