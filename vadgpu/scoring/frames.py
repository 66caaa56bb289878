"""How a frame model scores a frame: the protocol's score kind over the error map of the clip's centre frame."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from vadgpu.bench.stages import stage
from vadgpu.precision import DEFAULT_PRECISION, inference_autocast
from vadgpu.scoring.kinds import error_map, scores_from_errors

# (target (N, C, H, W), squared errors (N, 1, H, W), scores (N,), video (N,), frame (N,)) of each batch
ErrorHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


class FrameScorer:
    """Clips (N, C, T, H, W) -> (N,) raw scores of their centre frames: `kind` (patch-max on the protocol's grid,
    psnr, mse, mixed) of the squared error between the centre frame and the model's reconstruction of it.
    `on_errors` sees every batch's error maps and scores (the heatmap video, the other stored kinds). `precision`:
    the network's arithmetic (vadgpu/precision.py); the errors are float32 either way."""

    def __init__(self, protocol, on_errors: ErrorHook | None = None, precision: str = DEFAULT_PRECISION):
        self.kind, self.mix_weight, self.grid = protocol.score, protocol.mix_weight, protocol.grid()
        self.on_errors, self.precision = on_errors, precision

    def __call__(self, model, clips: torch.Tensor, video: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        with stage("network"):
            with inference_autocast(self.precision, clips.device):
                target, recon = model.reconstruct(clips)  # (N, C, H, W) x 2
            target, recon = target.float(), recon.float()
            errors = error_map(target, recon)  # (N, 1, H, W)
            scores = scores_from_errors(errors, self.kind, self.mix_weight, **self.grid)
        if self.on_errors is not None:
            self.on_errors(target, errors, scores, video, frame)
        return scores

    def finish(self, raw: np.ndarray) -> np.ndarray:
        return raw
