"""Make the weights that ship with vadgpu (vadgpu/weights/NAME.pt + NAME.metrics.json) from a finished run.

    .venv/bin/python benchmarks/ped2/ship_weights.py RUN NAME

RUN is a run folder whose model.pt was written by `vadgpu train` with the location statistics of its tubes (object
models) and whose eval/metrics.json is the evaluation to ship beside it. The shipped file is model.pt with the
paths of this machine left out of its config (the dataset root, the box cache, the run folder) and of its stored
training scores, so that nothing in it points at a folder a user does not have: `vadgpu eval --checkpoint NAME`
then needs --root, and refits the location statistics from that root's training videos.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vadgpu.checkpoint import MODEL_KEYS, load_checkpoint, save_checkpoint
from vadgpu.errors import VadgpuError
from vadgpu.scoring.location import KEY
from vadgpu.io import atomic_write_text
from vadgpu.weights import FOLDER, SHIPPED, metrics_file

MACHINE_PATHS = ("root", "boxes", "out", "patches")


def main(run: str, name: str) -> None:
    if name not in SHIPPED:
        raise SystemExit(f"{name}: not a name in vadgpu.weights.SHIPPED ({', '.join(SHIPPED)})")
    run_dir = Path(run)
    state = load_checkpoint(run_dir / "model.pt")
    scores = state.get("train_scores")
    if state["model_config"].get("clips") == "objects" and not (scores and KEY in scores):
        raise VadgpuError(f"{run_dir}/model.pt has no location statistics of its tubes: retrain with this vadgpu")
    config = {k: (None if k in MACHINE_PATHS else v) for k, v in (state.get("config") or {}).items()}
    shipped = {k: state[k] for k in MODEL_KEYS if k in state}
    shipped["config"] = config
    if scores:
        shipped["train_scores"] = {**scores, "root": None}
    out = save_checkpoint(FOLDER / SHIPPED[name], shipped)
    record = json.loads((run_dir / "eval" / "metrics.json").read_text())
    atomic_write_text(metrics_file(name), json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) and {metrics_file(name)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
