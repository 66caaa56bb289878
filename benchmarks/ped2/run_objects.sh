#!/usr/bin/env bash
# Ped2 runs in object mode: train one fixed schedule, evaluate the last checkpoint, copy the small result files
# into the repository.
#
#   benchmarks/ped2/run_objects.sh [RUN ...]      (default: ddl-objects)
#
# RUN: ddl-objects | dualpath-objects (the presets ddl-objects-cpu / dualpath-objects-cpu as they are) or the name
# of a file benchmarks/ped2/RUN.yaml that changes them (ddl-objects-fixed, ddl-objects-nopseudo: the DDL ablation;
# dualpath-objects-skip | -shuffle | -noise | -patch: one source alone). The preset is the name's first two words
# + -cpu. Boxes: the dataset's background-subtraction cache of both splits, made on the first run.
# Scoring: a RUN ending in -place trains as RUN without it and is evaluated under the second recipe (vadgpu eval's
# defaults for object models: tube errors normalised by place, no per-video normalisation) into eval/, and under
# the first one into eval-video/; any other RUN under the first recipe (raw tube mean squared error, max over the
# frame's tubes, median 17, min-max per video) into eval/. SKIP_TRAIN=1 evaluates a run folder trained before.
# The schedule is fixed: EPOCHS (default 5) epochs of ~155 steps x 16 clips x 4 tubes, Adam at 1e-3, cosine, SEED
# (default 0; another adds -seedN to the run name). PED2 (dataset root, default ../shared/datasets/ped2), RUNS (run
# folders, default runs/ped2), VADGPU (default .venv/bin/python -m vadgpu). Each kept folder gets source.json (the
# commit, from record_source.sh); at the end `results_table.py --index` (PYTHON, default .venv/bin/python) rebuilds
# runs.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || set -- ddl-objects
epochs=${EPOCHS:-5}
seed=${SEED:-0}
ped2=${PED2:-../shared/datasets/ped2}
runs=${RUNS:-runs/ped2}
[ -d "$ped2" ] || { echo "PED2=$ped2: no such folder; set PED2 to the UCSD Ped2 dataset folder" >&2; exit 2; }
read -r -a vadgpu <<< "${VADGPU:-.venv/bin/python -m vadgpu}"
read -r -a python <<< "${PYTHON:-.venv/bin/python}"
first_recipe=(--tube-norm none --norm video)
for name in "$@"; do
    trained_as=${name%-place}
    config=()
    if [ -f "benchmarks/ped2/$trained_as.yaml" ]; then
        config=(--config "benchmarks/ped2/$trained_as.yaml")
    elif [ "$trained_as" != ddl-objects ] && [ "$trained_as" != dualpath-objects ]; then
        echo "unknown run $name (see the header of $0)" >&2; exit 2
    fi
    preset=$(echo "$name" | cut -d- -f1-2)-cpu
    [ "$epochs" = 5 ] || name=$name-e$epochs
    [ "$seed" = 0 ] || name=$name-seed$seed
    run=$runs/$name
    keep=benchmarks/results/ped2/$name
    benchmarks/ped2/record_source.sh "$keep" "$([ "${SKIP_TRAIN:-0}" = 1 ] && echo evaluation || echo "training and evaluation")"
    start=$(date +%s)
    if [ "${SKIP_TRAIN:-0}" != 1 ]; then
        "${vadgpu[@]}" train --dataset ped2 --root "$ped2" --preset "$preset" "${config[@]}" --epochs "$epochs" \
            --batch-size 16 --tubes-per-clip 4 --lr 1e-3 --schedule cosine --seed "$seed" --out "$run" --no-progress
    fi
    trained=$(date +%s)
    if [ "$name" != "$trained_as" ]; then
        "${vadgpu[@]}" eval --run "$run" --no-progress
        "${vadgpu[@]}" eval --run "$run" --no-progress "${first_recipe[@]}" --out "$run/eval-video"
        mkdir -p "$keep/eval-video"
        cp "$run/eval-video/metrics.json" "$run/eval-video/scores.csv" "$keep/eval-video/"
    else
        "${vadgpu[@]}" eval --run "$run" --no-progress "${first_recipe[@]}"
    fi
    echo "$name: training $((trained - start)) s, evaluation $(($(date +%s) - trained)) s"
    mkdir -p "$keep/eval"
    cp "$run"/config.yaml "$run"/summary.json "$run"/log.jsonl "$keep"/
    cp "$run/eval/metrics.json" "$run/eval/scores.csv" "$keep/eval/"
    if [ "${SKIP_TRAIN:-0}" != 1 ]; then
        echo "{\"train_seconds\": $((trained - start)), \"eval_seconds\": $(($(date +%s) - trained))}" \
            > "$keep/timing.json"
    fi
done
"${python[@]}" benchmarks/ped2/results_table.py --index  # paths made portable, runs.jsonl rebuilt
