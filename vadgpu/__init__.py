"""vadgpu: video anomaly detection for fixed cameras, with the data path on the device.

Layout (see docs/architecture.md):
    vadgpu.data       datasets, labels, probing, prepare (transcoding), the synthetic generator
    vadgpu.pipelines  clip index, DALI pipelines and loader, baseline loader
    vadgpu.kernels    pseudo-anomaly perturbations (torch reference, CuPy CUDA kernels)
    vadgpu.objects    object boxes (detectors, tracker, cache) and patch banks
    vadgpu.models     DDL and dual-path models, memory module, registry and presets
    vadgpu.engine     training loop, checkpoints, DDP
    vadgpu.evaluation scores, metrics, plots
    vadgpu.cli        the `vadgpu` click command group
"""

import os

# DALI's CPU threads decode the next runs while torch computes the step. With OpenMP's default (active) waiting,
# torch's idle OpenMP threads spin on the cores DALI needs and the two thrash: on a 2-core CPU a
# ddl-ped2-cpu training step fed by the DALI loader ran at 8 clips/s, 24 clips/s with passive waiting
# (measured with the engine's train_step fed by make_loader). It must be set before torch starts its
# OpenMP runtime, so it lives here, where every vadgpu entry point passes first; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
