"""OpenMP's waiting policy for programs that run DALI's decoding threads beside torch.

DALI's CPU threads decode the next runs while torch computes the step. With OpenMP's default (active) waiting,
torch's idle OpenMP threads spin on the cores DALI needs and the two thrash: on a 2-core CPU a ddl-ped2-cpu
training step fed by the DALI loader ran at 8 clips/s, 24 clips/s with passive waiting (measured with the engine's
train_step fed by make_loader). The setting must be in the environment before torch starts its OpenMP runtime, so
`import vadgpu` does not touch it (it would change the whole process of a Python user); the `vadgpu` command and
the benchmark scripts call `prefer_passive_omp_waiting()` before they import torch. Python users who feed torch
from the DALI loader on a CPU set `OMP_WAIT_POLICY=PASSIVE` themselves, before importing torch.
"""

from __future__ import annotations

import os


def prefer_passive_omp_waiting() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE unless the environment already says otherwise (an explicit setting wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
