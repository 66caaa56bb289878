"""Make the weights that ship with vadgpu (vadgpu/weights/NAME.pt + NAME.metrics.json) from a weights file.

    .venv/bin/python benchmarks/ped2/ship_weights.py MODEL EVAL_DIR NAME

MODEL is a weights file written by `vadgpu train` (an object model's with its calibration record: `vadgpu calibrate`
adds or replaces it, with the appearance term), EVAL_DIR the `vadgpu eval` folder of that same file, whose
metrics.json ships beside it. Nothing shipped points at a folder of the machine that made it: the dataset root, the
box cache and the run folder are left out of the config, and the paths in metrics.json become names, so
`vadgpu eval --checkpoint NAME` needs --root, while `vadgpu score` and live scoring need nothing but the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vadgpu.checkpoint import MODEL_KEYS, load_checkpoint, save_checkpoint
from vadgpu.errors import VadgpuError
from vadgpu.io import atomic_write_text
from vadgpu.weights import FOLDER, SHIPPED, metrics_file

MACHINE_PATHS = ("root", "boxes", "out", "patches", "appearance")


def main(model: str, eval_dir: str, name: str) -> None:
    if name not in SHIPPED:
        raise SystemExit(f"{name}: not a name in vadgpu.weights.SHIPPED ({', '.join(SHIPPED)})")
    state = load_checkpoint(model)
    if state["model_config"].get("clips") == "objects" and not state.get("calibration"):
        raise VadgpuError(f"{model} has no calibration record: add it with `vadgpu calibrate`")
    config = {k: (None if k in MACHINE_PATHS else v) for k, v in (state.get("config") or {}).items()}
    shipped = {k: state[k] for k in MODEL_KEYS if k in state}
    shipped["config"] = config
    if shipped.get("train_scores"):
        shipped["train_scores"] = {**shipped["train_scores"], "root": None}
    out = save_checkpoint(FOLDER / SHIPPED[name], shipped)
    record = json.loads((Path(eval_dir) / "metrics.json").read_text())
    record["checkpoint"]["path"] = name
    record["dataset"]["root"] = record["dataset"]["name"]
    record["dataset"]["label_source"] = Path(record["dataset"]["label_source"]).name
    if "objects" in record:
        record["objects"]["boxes"] = Path(record["objects"]["boxes"]).name
    atomic_write_text(metrics_file(name), json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) and {metrics_file(name)}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
