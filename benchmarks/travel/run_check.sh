#!/usr/bin/env bash
# One "camera the detector has not seen" check: train the object preset with its defaults on a dataset, then
# measure every term of the detector and the no-learning references on its test videos.
#
#   benchmarks/travel/run_check.sh NAME DATASET ROOT [extra `vadgpu train` options ...]
#
# NAME names the result folder benchmarks/results/travel/NAME (and the run folder $RUNS/NAME); DATASET and ROOT are
# what `vadgpu train --dataset --root` take (e.g. ped2 ../shared/datasets/ped2; generic DIR for a `vadgpu data pack`
# copy; synthetic DIR for `vadgpu data synth`). Training: `vadgpu train --preset $PRESET --seed $SEED` and nothing
# else, so the window, the grid and the schedule are the preset's defaults read from the training videos (extra
# options after ROOT change that, for a diagnostic). Then benchmarks/travel/terms.py (tube term alone, appearance
# term alone, their sum: the full detector, and their max) with the appearance network $WEIGHTS, on every test
# video and on $DEV (the test videos a recipe may be chosen on; default none), and the no-learning references
# (benchmarks/ped2/frame_difference.py, object_difference.py). PRESET (default ddl-objects-cpu), SEED (default 0),
# RUNS (default runs/travel), WEIGHTS (default ../shared/models/yolov3-tiny/yolov3-tiny.weights), VADGPU (default
# .venv/bin/python -m vadgpu), PYTHON (default .venv/bin/python). SKIP_TRAIN=1 measures a run trained before.
# The result files name the dataset root $ROOT; `benchmarks/ped2/results_table.py --index` makes their other
# machine paths portable (runs and caches relative), and `--check` (in `make test`) finds any left.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { echo "usage: $0 NAME DATASET ROOT [train options ...]" >&2; exit 2; }
name=$1 dataset=$2 root=$3
shift 3
preset=${PRESET:-ddl-objects-cpu}
seed=${SEED:-0}
runs=${RUNS:-runs/travel}
weights=${WEIGHTS:-../shared/models/yolov3-tiny/yolov3-tiny.weights}
read -r -a vadgpu <<< "${VADGPU:-.venv/bin/python -m vadgpu}"
read -r -a python <<< "${PYTHON:-.venv/bin/python}"
[ -d "$root" ] || { echo "ROOT=$root: no such folder" >&2; exit 2; }
run=$runs/$name
keep=benchmarks/results/travel/$name
mkdir -p "$keep"
benchmarks/ped2/record_source.sh "$keep" "$([ "${SKIP_TRAIN:-0}" = 1 ] && echo evaluation || echo "training and evaluation")"
start=$(date +%s)
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
    "${vadgpu[@]}" train --dataset "$dataset" --root "$root" --preset "$preset" --seed "$seed" --out "$run" \
        --no-progress "$@"
fi
trained=$(date +%s)
"${python[@]}" benchmarks/travel/terms.py --checkpoint "$run/model.pt" --dataset "$dataset" --root "$root" \
    --appearance "$weights" --dev "${DEV:-}" --out "$keep/terms.json" > /dev/null
"${python[@]}" benchmarks/ped2/frame_difference.py --dataset "$dataset" --root "$root" \
    --out "$keep/frame-difference.json" > /dev/null
"${python[@]}" benchmarks/ped2/object_difference.py --dataset "$dataset" --root "$root" \
    --out "$keep/object-difference.json" > /dev/null
cp "$run"/config.yaml "$run"/summary.json "$keep"/
echo "$name: training $((trained - start)) s, measuring $(($(date +%s) - trained)) s"
"${python[@]}" - "$keep" "$root" <<'EOF'
import json, sys
from pathlib import Path
keep, root = Path(sys.argv[1]), str(Path(sys.argv[2]).resolve())
for path in [keep / "config.yaml", *keep.glob("*.json")]:  # the dataset root as a placeholder
    text = path.read_text()
    path.write_text(text.replace(root, "$ROOT").replace(sys.argv[2], "$ROOT"))
terms = json.loads((keep / "terms.json").read_text())
print(f"window {terms['window']}, grid {terms['grid']}")
for name, row in terms["terms"].items():
    print(f"  {name}: {row['micro_auc']} micro / {row['macro_auc']} macro")
for ref in ("frame-difference", "object-difference"):
    row = json.loads((keep / f"{ref}.json").read_text())
    print(f"  {ref}: {row['micro_auc']} micro / {row['macro_auc']} macro")
EOF
