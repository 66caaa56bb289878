"""Weights that ship with vadgpu, loadable by name wherever a checkpoint file is taken (`--checkpoint ped2-ddl`).

Each is a weights-only model file as `vadgpu train` writes it (model.pt: the network, its config, the training
videos' scores and, for object models, the location statistics of their tubes), trained on a CPU with a recipe
docs/results/ped2.md documents, next to NAME.metrics.json, the `vadgpu eval` record of that same file on its benchmark.
A local file of the same name wins over a shipped one. Made by benchmarks/ped2/ship_weights.py.

    ped2-ddl   DDL in object mode (ddl-objects-cpu: 32x32 gray tubes, T = 5, centre predicted), trained on UCSD
               Ped2's 16 training videos (5 epochs, the second object-mode recipe of docs/results/ped2.md, seed
               2); needs background-subtraction boxes, which `vadgpu score` makes itself.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
SHIPPED = {"ped2-ddl": "ped2-ddl.pt"}


def shipped_weights(name: str | Path) -> Path | None:
    """The shipped file named `name` (a key of SHIPPED), or None when `name` is not one or the file is missing."""
    file = SHIPPED.get(str(name))
    if file is None or not (FOLDER / file).is_file():
        return None
    return FOLDER / file


def metrics_file(name: str) -> Path:
    """NAME.metrics.json beside the shipped weights: their evaluation record."""
    return FOLDER / f"{name}.metrics.json"


def scores_file(name: str) -> Path:
    """NAME.scores.csv beside the shipped weights: the per-frame scores of that evaluation."""
    return FOLDER / f"{name}.scores.csv"
