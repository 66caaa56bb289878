"""The dual-path authors' scoring as a named protocol: `vadgpu eval --protocol dualpath-authors`.

What their later scripts (SVIL2024/DualPath-PseudoAnomaly-VAD, main_ped2.py / main_avenue.py / main_shanghai.py,
the test loop after each epoch; written anew here) do with a model's output:

    score   (1 - g) * max over patches of avg_pool2d(err, patch, stride) + g * the frame's global MSE, err the
            squared error of the centre frame averaged over channels, on one grid (stride = patch: non-overlapping,
            ShanghaiTech stride 1); in vadgpu terms `--score mixed` with mix weight 1 - g on a single grid
    order   per video min-max (their anomaly_score_list) first, then gaussian_filter1d(sigma, mode="nearest")
    frames  only centres of clips that lie wholly inside the video: 8 .. len - 8 at T = 16 (their label slice
            labels[8 + start : start + len - 7]); vadgpu: `full_clips`, T // 2 and T - 1 - T // 2 frames dropped
    metric  AUC over the concatenated videos (vadgpu's micro AUC; metrics.json also has the rest)

Per dataset (their argparse defaults), at their input sizes:

    ped2          patch 8 at 128x128, stride 8, g 0.4, sigma 32
    avenue        patch 32 at 192x192, stride 32, g 0.4, sigma 20
    shanghaitech  patch 16 at 256x256, stride 1, g 0.0, sigma 10

A model trained at another size gets the patch scaled with its shorter side (8 at 128 -> 4 at 64; a stride of 1
stays 1), as vadgpu scales DDL's patch; datasets they did not publish (synthetic, generic) take the Ped2 numbers.
Their ShanghaiTech script also offers top-k patches, temporal radius, motion and memory-attention scores, all off
by default: not copied. Their scripts select the epoch with the best test AUC; this protocol only scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from vadgpu.errors import VadgpuError
from vadgpu.scoring.protocol import Protocol

NAME = "dualpath-authors"
PROTOCOL_NAMES = ("vadgpu", NAME)


@dataclass(frozen=True)
class AuthorsScoring:
    patch: int  # pixels at `side`
    side: int  # their input size (square)
    stride: int | None  # None: the patch (non-overlapping)
    global_weight: float  # g: the global MSE's share
    sigma: float  # gaussian_filter1d, frames


AUTHORS_SCORING = {
    "ped2": AuthorsScoring(patch=8, side=128, stride=None, global_weight=0.4, sigma=32.0),
    "avenue": AuthorsScoring(patch=32, side=192, stride=None, global_weight=0.4, sigma=20.0),
    "shanghaitech": AuthorsScoring(patch=16, side=256, stride=1, global_weight=0.0, sigma=10.0),
}
FALLBACK = "ped2"


def authors_protocol(dataset: str, model_size: tuple[int, int]) -> Protocol:
    """The authors' protocol for `dataset` (their numbers, or Ped2's) and a model of `model_size` (H, W)."""
    numbers = dataset if dataset in AUTHORS_SCORING else FALLBACK
    spec = AUTHORS_SCORING[numbers]
    side = min(model_size)
    patch = max(1, round(spec.patch * side / spec.side))
    if patch > side:
        raise VadgpuError(f"--protocol {NAME}: patch {patch} does not fit the model's {model_size} frames")
    stride = None if spec.stride is None else max(1, round(spec.stride * side / spec.side))
    return Protocol(score="mixed", mix_weight=1.0 - spec.global_weight, norm="video", smooth="gaussian",
                    sigma=spec.sigma, full_clips=True, order="normalise-first", patch_size=patch,
                    patch_grid="single", patch_stride=stride, name=NAME, numbers=numbers)


def named_protocol(name: str, dataset: str, config) -> Protocol:
    """The protocol called `name` for a model of `config` evaluated on `dataset` ("vadgpu": the defaults)."""
    if name not in PROTOCOL_NAMES:
        raise VadgpuError(f"--protocol {name!r}: choose from {', '.join(PROTOCOL_NAMES)}")
    if name == "vadgpu":
        return Protocol().for_model(config)
    if getattr(config, "clips", "frames") == "objects":
        raise VadgpuError(f"--protocol {NAME} scores full frames; this is an object model (use the default protocol)")
    return authors_protocol(dataset, tuple(config.size))
