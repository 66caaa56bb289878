"""vadgpu: video anomaly detection for fixed cameras, with the data path on the device.

`vadgpu.Detector` scores a camera, a file or the caller's frames live, one result per frame (vadgpu/detector.py).

Layout (see docs/architecture.md):
    vadgpu.data       datasets, labels, probing, prepare (transcoding), the synthetic generator
    vadgpu.pipelines  clip index, DALI pipelines and loader, baseline loader
    vadgpu.kernels    pseudo-anomaly perturbations (torch reference, CuPy CUDA kernels)
    vadgpu.objects    object boxes (detectors, tracker, cache) and patch banks
    vadgpu.models     DDL and dual-path models, memory module, registry and presets
    vadgpu.engine     training loop, checkpoints, DDP
    vadgpu.scoring    how a frame gets its score: frame and tube scorers, calibration record, protocol
    vadgpu.evaluation eval and score runs, metrics, reports, plots, the heatmap video
    vadgpu.live       live streams: causal scoring, events
    vadgpu.cli        the `vadgpu` click command group

Importing vadgpu changes nothing in the process: the `vadgpu` command sets OMP_WAIT_POLICY=PASSIVE for itself
(vadgpu/threads.py says why, and what a Python user who feeds torch from the DALI loader on a CPU sets).
Library code reports through the `vadgpu` logger (logging), so Python users decide what is shown.
"""

__version__ = "0.1.0"

__all__ = ["Detector", "__version__"]


def __getattr__(name: str):
    if name == "Detector":  # imported when asked for: `import vadgpu` stays light
        from vadgpu.detector import Detector

        return Detector
    raise AttributeError(f"module 'vadgpu' has no attribute {name!r}")
