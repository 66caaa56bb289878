#!/usr/bin/env bash
# Ped2 runs at the CPU presets: train with one fixed schedule, evaluate the last checkpoint under the default
# protocol (patch-max, per-video min-max, median 17), copy the small result files into the repository.
#
#   benchmarks/ped2/run_ped2.sh BOXES.npz [RUN ...]      (default: ddl-dynamic ddl-fixed ddl-nopseudo)
#
# RUN: ddl-dynamic | dualpath-all (the presets as they are) or the name of a file benchmarks/ped2/RUN.yaml that
# changes them: ddl-fixed | ddl-nopseudo (preset ddl-ped2-cpu, the DDL ablation), dualpath-skip |
# dualpath-shuffle | dualpath-noise | dualpath-patch (preset dualpath-ped2-cpu: one pseudo-anomaly source alone),
# ddl-s128 | ddl-s128-nopseudo (DDL at 128x128), ddl-lambda1 (distinction weight 1 instead of 0.01), ddl-pixel
# (the reference code's per-pixel distinction loss). The preset is the name's first word + -ped2-cpu. Runs go
# one after the other (the CPU has 2 cores).
# Environment: EPOCHS (default 2), LR (default 5e-4), SEED (default 0): other values add -eN, -lrX, -seedN to the
# run name; TAG (added last to the run name, e.g. TAG=bgsub for a background-subtraction box cache); PED2
# (dataset root, default ../shared/datasets/ped2), RUNS (run folders, default runs/ped2), VADGPU (default
# .venv/bin/python -m vadgpu).
# Each checkpoint is evaluated twice under the default protocol: with the default patch-max score (eval/) and with
# the PSNR score (eval-psnr/). Checkpoints stay in RUNS; config.yaml, summary.json, log.jsonl and both evals'
# metrics.json and scores.csv are copied to benchmarks/results/ped2/NAME/, with source.json (the commit, from
# record_source.sh); at the end `results_table.py --index` (PYTHON, default .venv/bin/python) rebuilds runs.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
boxes=${1:?usage: $0 BOXES.npz [RUN ...]}
shift
[ $# -gt 0 ] || set -- ddl-dynamic ddl-fixed ddl-nopseudo
epochs=${EPOCHS:-2}
lr=${LR:-5e-4}
seed=${SEED:-0}
ped2=${PED2:-../shared/datasets/ped2}
runs=${RUNS:-runs/ped2}
[ -d "$ped2" ] || { echo "PED2=$ped2: no such folder; set PED2 to the UCSD Ped2 dataset folder" >&2; exit 2; }
[ -f "$boxes" ] || { echo "$boxes: no such box cache; make one with \`vadgpu data boxes\` (see docs/datasets.md)" >&2; exit 2; }
read -r -a vadgpu <<< "${VADGPU:-.venv/bin/python -m vadgpu}"
read -r -a python <<< "${PYTHON:-.venv/bin/python}"
for name in "$@"; do
    config=()
    if [ -f "benchmarks/ped2/$name.yaml" ]; then
        config=(--config "benchmarks/ped2/$name.yaml")
    elif [ "$name" != ddl-dynamic ] && [ "$name" != dualpath-all ]; then
        echo "unknown run $name (see the header of $0)" >&2; exit 2
    fi
    preset=${name%%-*}-ped2-cpu
    [ "$epochs" = 2 ] || name=$name-e$epochs
    [ "$lr" = 5e-4 ] || name=$name-lr$lr
    [ "$seed" = 0 ] || name=$name-seed$seed
    [ -z "${TAG:-}" ] || name=$name-$TAG
    run=$runs/$name
    keep=benchmarks/results/ped2/$name
    benchmarks/ped2/record_source.sh "$keep" "training and evaluation"
    # The schedule is fixed before each run: EPOCHS epochs of ~315 steps x 8 clips, Adam at LR, cosine, SEED.
    "${vadgpu[@]}" train --dataset ped2 --root "$ped2" --preset "$preset" --boxes "$boxes" \
        "${config[@]}" --epochs "$epochs" --lr "$lr" --schedule cosine --seed "$seed" --out "$run" --no-progress
    "${vadgpu[@]}" eval --run "$run" --no-progress
    "${vadgpu[@]}" eval --run "$run" --score psnr --out "$run/eval-psnr" --no-progress
    mkdir -p "$keep/eval" "$keep/eval-psnr"
    cp "$run"/config.yaml "$run"/summary.json "$run"/log.jsonl "$keep"/
    for e in eval eval-psnr; do cp "$run/$e/metrics.json" "$run/$e/scores.csv" "$keep/$e/"; done
done
"${python[@]}" benchmarks/ped2/results_table.py --index  # paths made portable, runs.jsonl rebuilt
