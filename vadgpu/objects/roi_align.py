"""`roi_align`: torchvision's operator, without importing torchvision's Python package.

Importing any torchvision module imports its models, datasets and transforms and, through `torchvision.ops`,
`torch._dynamo`: about 150 MiB of resident memory and over a second of start-up in every scoring process, for one
operator. The operator itself lives in torchvision's compiled library, which registers
`torch.ops.torchvision.roi_align` when it is loaded; `torchvision.ops.roi_align` checks its arguments and calls
that. Loading the library alone gives the same kernel, so the same numbers. Where it cannot be found or loaded
(another torchvision layout), `torchvision.ops.roi_align` itself is used.

    out = roi_align(input (N, C, H, W), rois (K, 5) [index, x1, y1, x2, y2], (h, w), spatial_scale,
                    sampling_ratio, aligned)   # (K, C, h, w)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from typing import Callable

import torch

LIBRARIES = ("_C_stable", "_C")  # torchvision's compiled operators: the name in recent releases, then older ones

_OPERATOR: Callable | None = None


def roi_align(input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """torchvision.ops.roi_align for rois as one (K, 5) tensor (module docstring)."""
    global _OPERATOR
    if _OPERATOR is None:
        _OPERATOR = _compiled_operator() or _python_operator()
    return _OPERATOR(input, rois, tuple(output_size), float(spatial_scale), int(sampling_ratio), bool(aligned))


def _registered() -> bool:
    return hasattr(torch.ops.torchvision, "roi_align")


def _compiled_operator() -> Callable | None:
    """torch.ops.torchvision.roi_align, loading torchvision's compiled library for it where needed; None where it
    cannot be had that way."""
    if not _registered():
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            return None
        finder = importlib.machinery.FileFinder(spec.submodule_search_locations[0], (
            importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES))
        for name in LIBRARIES:
            found = finder.find_spec(name)
            if found is None or not found.origin:
                continue
            try:
                torch.ops.load_library(found.origin)
            except OSError:
                continue
            if _registered():
                break
    if not _registered():
        return None
    operator = torch.ops.torchvision.roi_align

    def call(input, rois, size, scale, ratio, aligned):
        return operator(input, rois, scale, size[0], size[1], ratio, aligned)

    return call


def _python_operator() -> Callable:
    from torchvision.ops import roi_align as torchvision_roi_align

    def call(input, rois, size, scale, ratio, aligned):
        return torchvision_roi_align(input, rois, size, spatial_scale=scale, sampling_ratio=ratio, aligned=aligned)

    return call
