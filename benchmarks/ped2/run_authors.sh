#!/usr/bin/env bash
# The two forms of the dual-path model on Ped2 at the CPU scale, under one schedule fixed before the runs:
# vadgpu's (preset dualpath-ped2-cpu) and the authors' later code's (dualpath-ped2-authors-cpu, same 64x64 T = 8
# geometry: z-scored input, linear output, split routing, their loss terms and pseudo-anomaly settings). Each run
# is evaluated under the default protocol (eval/) and under the authors' scoring (eval-authors/,
# `--protocol dualpath-authors`); the last checkpoint is the model (no epoch is picked on the test set).
#
#   benchmarks/ped2/run_authors.sh BOXES.npz [SEED ...]     (default seeds: 0 1 2)
#
# Environment as for run_ped2.sh: EPOCHS (default 2), LR (default 5e-4), PED2 (default ../shared/datasets/ped2),
# RUNS (default runs/ped2), VADGPU (default .venv/bin/python -m vadgpu); FORMS (default "vadgpu authors").
# Run names: dualpath-vadgpu-seedN, dualpath-authors-seedN (+ -eN, -lrX when EPOCHS / LR differ); the small result
# files go to benchmarks/results/ped2/NAME/ as in run_ped2.sh (source.json, runs.jsonl rebuilt at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."
boxes=${1:?usage: $0 BOXES.npz [SEED ...]}
shift
[ $# -gt 0 ] || set -- 0 1 2
epochs=${EPOCHS:-2}
lr=${LR:-5e-4}
ped2=${PED2:-../shared/datasets/ped2}
runs=${RUNS:-runs/ped2}
[ -d "$ped2" ] || { echo "PED2=$ped2: no such folder; set PED2 to the UCSD Ped2 dataset folder" >&2; exit 2; }
[ -f "$boxes" ] || { echo "$boxes: no such box cache; make one with \`vadgpu data boxes\` (see docs/datasets.md)" >&2; exit 2; }
read -r -a vadgpu <<< "${VADGPU:-.venv/bin/python -m vadgpu}"
read -r -a python <<< "${PYTHON:-.venv/bin/python}"
for seed in "$@"; do
    for form in ${FORMS:-vadgpu authors}; do
        case $form in
            vadgpu) preset=dualpath-ped2-cpu ;;
            authors) preset=dualpath-ped2-authors-cpu ;;
            *) echo "unknown form $form (vadgpu or authors)" >&2; exit 2 ;;
        esac
        name=dualpath-$form-seed$seed
        [ "$epochs" = 2 ] || name=$name-e$epochs
        [ "$lr" = 5e-4 ] || name=$name-lr$lr
        run=$runs/$name
        keep=benchmarks/results/ped2/$name
        benchmarks/ped2/record_source.sh "$keep" "training and evaluation"
        "${vadgpu[@]}" train --dataset ped2 --root "$ped2" --model dualpath --preset "$preset" --boxes "$boxes" \
            --epochs "$epochs" --lr "$lr" --schedule cosine --seed "$seed" --out "$run" --no-progress
        "${vadgpu[@]}" eval --run "$run" --no-progress
        "${vadgpu[@]}" eval --run "$run" --protocol dualpath-authors --out "$run/eval-authors" --no-progress
        mkdir -p "$keep/eval" "$keep/eval-authors"
        cp "$run"/config.yaml "$run"/summary.json "$run"/log.jsonl "$keep"/
        for e in eval eval-authors; do cp "$run/$e/metrics.json" "$run/$e/scores.csv" "$keep/$e/"; done
    done
done
"${python[@]}" benchmarks/ped2/results_table.py --index  # paths made portable, runs.jsonl rebuilt
