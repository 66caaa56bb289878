"""vadgpu: video anomaly detection for fixed cameras, with the data path on the device.

Layout (see docs/architecture.md):
    vadgpu.pipelines  datasets, labels, prepare, DALI pipelines, baseline loader
    vadgpu.kernels    pseudo-anomaly perturbations (torch reference, CuPy CUDA kernels)
    vadgpu.objects    object boxes (detectors, tracker, cache) and patch banks
    vadgpu.models     DDL and dual-path models, memory module, registry and presets
    vadgpu.engine     training loop, checkpoints, DDP
    vadgpu.evaluation scores, metrics, plots
    vadgpu.cli        the `vadgpu` click command group
"""

__version__ = "0.1.0"
