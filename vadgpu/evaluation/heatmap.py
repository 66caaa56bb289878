"""An MP4 (H.264, PyAV) of the per-pixel reconstruction error laid over the frames, written while scoring.

Frames arrive batch by batch in frame order, so the video is encoded as it goes and nothing is held in memory.
Because the writer never sees the whole video first, the colour scale is fixed: the absolute error |x - f(x)|
(the square root of the squared error) maps onto matplotlib's "inferno" colours, saturating at `HEAT_MAX_ERROR`
of the pixel range; the colour is blended over the gray frame with an opacity that grows with the error, so
well-reconstructed regions show the scene. The colouring runs on the frames' device; only uint8 RGB frames cross
to the host for the encoder. Small model resolutions are enlarged by an integer factor (nearest neighbour) so the
video is at least `MIN_SIDE` pixels on its shorter side.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps

from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_path
from vadgpu.optional import require

HEAT_MAX_ERROR = 0.3
MAX_OPACITY = 0.75
MIN_SIDE = 240
CODEC = "libx264"


def heatmap_frames(target: torch.Tensor, errors: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) frames in [0, 1] and (N, 1, H, W) squared errors -> (N, H', W', 3) uint8 RGB overlays."""
    lut = torch.as_tensor(colormaps["inferno"](np.linspace(0, 1, 256))[:, :3], dtype=torch.float32,
                          device=target.device)  # (256, 3)
    gray = target.float().mean(dim=1)  # (N, H, W)
    heat = (errors[:, 0].float().sqrt() / HEAT_MAX_ERROR).clamp(0, 1)  # (N, H, W)
    colour = lut[(heat * 255).round().long()]  # (N, H, W, 3)
    alpha = (MAX_OPACITY * heat).unsqueeze(-1)  # (N, H, W, 1)
    rgb = (1 - alpha) * gray.unsqueeze(-1) + alpha * colour  # (N, H, W, 3)
    height, width = gray.shape[-2:]
    factor = max(1, math.ceil(MIN_SIDE / min(height, width)))
    rgb = F.interpolate(rgb.permute(0, 3, 1, 2), scale_factor=factor, mode="nearest")  # (N, 3, H', W')
    rgb = F.pad(rgb, (0, rgb.shape[-1] % 2, 0, rgb.shape[-2] % 2), mode="replicate")  # H.264 wants even sides
    return (rgb.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8)  # (N, H', W', 3)


class HeatmapVideoWriter:
    """Encode error-heatmap frames to an MP4 as they come; the file appears (atomically) on `close()`."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self._av = av = require("av", f"writing the heatmap video {self.path}")
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._stream = None
        self.frames = 0

    def write(self, target: torch.Tensor, errors: torch.Tensor) -> None:
        """Append a batch: (N, C, H, W) frames and their (N, 1, H, W) squared errors."""
        rgb = heatmap_frames(target, errors).cpu().numpy()  # (N, H', W', 3)
        if self._stream is None:
            from fractions import Fraction

            self._stream = self._container.add_stream(CODEC, rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.height, self._stream.width = rgb.shape[1:3]
            self._stream.pix_fmt = "yuv420p"
        for image in rgb:
            for packet in self._stream.encode(self._av.VideoFrame.from_ndarray(image, format="rgb24")):
                self._container.mux(packet)
        self.frames += len(rgb)

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place."""
        if self._stream is None:
            self.abort()
            raise VadgpuError(f"heatmap video {self.path}: no frames were written")
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (on an error while scoring)."""
        self._container.close()
        self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
