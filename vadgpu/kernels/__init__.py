"""Pseudo-anomaly perturbations on the device: one API, a torch reference and CuPy CUDA kernels.

    kinds.py      KIND_* ids, their names (KIND_NAMES, KIND_BY_NAME), the object-based kinds
    ops.py        skip_frames, shuffle_motion, gaussian_noise, paste_patches, ddl_blend; resolve_backend
    policy.py     PseudoAnomalyPolicy(p, kinds, weights, sigma, skips)(batch, boxes, valid, patches, generator,
                  logit=None) -> PseudoAnomalies(clips, kind, mask)
    params.py     the random parameters, drawn in torch on the clips' device
    torch_ops.py  the torch reference; cupy_ops.py + cuda/*.cu the CUDA kernels (nvrtc.py compiles them)

This package only re-exports the public names of kinds, ops and policy.
"""

from vadgpu.kernels.kinds import (KIND_BY_NAME, KIND_DDL, KIND_NAMES, KIND_NOISE, KIND_NONE, KIND_PATCH, KIND_SHUFFLE,
                                  KIND_SKIP, OBJECT_KINDS)
from vadgpu.kernels.ops import (KERNEL_BACKENDS, ddl_blend, gaussian_noise, paste_patches, resolve_backend,
                                shuffle_motion, skip_frames)
from vadgpu.kernels.policy import PseudoAnomalies, PseudoAnomalyPolicy

__all__ = [
    "KIND_NONE", "KIND_SKIP", "KIND_SHUFFLE", "KIND_NOISE", "KIND_PATCH", "KIND_DDL", "KIND_NAMES", "KIND_BY_NAME",
    "OBJECT_KINDS", "KERNEL_BACKENDS", "resolve_backend", "skip_frames", "shuffle_motion", "gaussian_noise",
    "paste_patches", "ddl_blend", "PseudoAnomalies", "PseudoAnomalyPolicy",
]
