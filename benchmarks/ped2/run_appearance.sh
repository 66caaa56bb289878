#!/usr/bin/env bash
# Ped2 object runs under the third recipe: trained run folders evaluated with `vadgpu eval --appearance`.
#
#   benchmarks/ped2/run_appearance.sh NAME RUN [NAME RUN ...]
#
# RUN: a run folder of benchmarks/ped2/run_objects.sh (model.pt, config.yaml, summary.json, log.jsonl). Each RUN
# is evaluated with vadgpu eval's defaults for object models plus --appearance WEIGHTS (the box features of a
# Darknet YOLO, computed once per box cache and split, then read from the dataset's cache folder) into
# RUN/eval-appearance/, and benchmarks/results/ped2/NAME/ gets RUN's config.yaml, summary.json, log.jsonl and
# eval/{metrics.json, scores.csv}. APPEARANCE=0 evaluates without --appearance (the second recipe) into
# RUN/eval-place/ instead. WEIGHTS (default ../shared/models/yolov3-tiny/yolov3-tiny.weights, its .cfg beside it),
# PED2 (default ../shared/datasets/ped2), VADGPU (default .venv/bin/python -m vadgpu). NAME/source.json records the
# commit of the evaluation (the training's was RUN's); at the end `results_table.py --index` (PYTHON, default
# .venv/bin/python) rebuilds runs.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] && [ $(($# % 2)) = 0 ] || { echo "usage: $0 NAME RUN [NAME RUN ...]" >&2; exit 2; }
weights=${WEIGHTS:-../shared/models/yolov3-tiny/yolov3-tiny.weights}
ped2=${PED2:-../shared/datasets/ped2}
read -r -a vadgpu <<< "${VADGPU:-.venv/bin/python -m vadgpu}"
read -r -a python <<< "${PYTHON:-.venv/bin/python}"
looks=(--appearance "$weights"); out=eval-appearance
[ "${APPEARANCE:-1}" = 1 ] || { looks=(); out=eval-place; }
while [ $# -gt 0 ]; do
    name=$1 run=$2
    shift 2
    [ -f "$run/model.pt" ] || { echo "$run/model.pt: no such file" >&2; exit 2; }
    keep=benchmarks/results/ped2/$name
    benchmarks/ped2/record_source.sh "$keep" evaluation
    start=$(date +%s)
    "${vadgpu[@]}" eval --checkpoint "$run/model.pt" --dataset ped2 --root "$ped2" --no-progress "${looks[@]}" \
        --out "$run/$out"
    echo "$name: evaluation $(($(date +%s) - start)) s"
    mkdir -p "$keep/eval"
    cp "$run"/config.yaml "$run"/summary.json "$run"/log.jsonl "$keep"/
    cp "$run/$out/metrics.json" "$run/$out/scores.csv" "$keep/eval/"
done
"${python[@]}" benchmarks/ped2/results_table.py --index  # paths made portable, runs.jsonl rebuilt
