#!/usr/bin/env bash
# Ped2 runs at the CPU presets: train with one fixed schedule, evaluate the last checkpoint under the default
# protocol (patch-max, per-video min-max, median 17), copy the small result files into the repository.
#
#   benchmarks/ped2/run_ped2.sh BOXES.npz [RUN ...]      (default: ddl-dynamic ddl-fixed ddl-nopseudo)
#
# RUN: ddl-dynamic | ddl-fixed | ddl-nopseudo (preset ddl-ped2-cpu, the DDL ablation), dualpath-all |
# dualpath-skip | dualpath-shuffle | dualpath-noise | dualpath-patch (preset dualpath-ped2-cpu: all four
# pseudo-anomaly sources, or one alone). Runs go one after the other (the CPU has 2 cores).
# Environment: EPOCHS (default 2; other values add -eN to the run name), PED2 (dataset root, default
# ../shared/datasets/ped2), RUNS (run folders, default runs/ped2), VADGPU (default .venv/bin/python -m vadgpu).
# Checkpoints stay in RUNS; config.yaml, summary.json, log.jsonl, eval/metrics.json and eval/scores.csv are
# copied to benchmarks/results/ped2/NAME/.
set -euo pipefail
cd "$(dirname "$0")/../.."
boxes=${1:?usage: $0 BOXES.npz [RUN ...]}
shift
[ $# -gt 0 ] || set -- ddl-dynamic ddl-fixed ddl-nopseudo
epochs=${EPOCHS:-2}
ped2=${PED2:-../shared/datasets/ped2}
runs=${RUNS:-runs/ped2}
read -r -a vadgpu <<< "${VADGPU:-.venv/bin/python -m vadgpu}"
for name in "$@"; do
    case $name in
        ddl-dynamic | dualpath-all) config=() ;;
        ddl-fixed | ddl-nopseudo | dualpath-skip | dualpath-shuffle | dualpath-noise | dualpath-patch)
            config=(--config "benchmarks/ped2/$name.yaml") ;;
        *) echo "unknown run $name (see the header of $0)" >&2; exit 2 ;;
    esac
    preset=${name%%-*}-ped2-cpu
    [ "$epochs" = 2 ] || name=$name-e$epochs
    run=$runs/$name
    # The schedule is fixed before any run: EPOCHS epochs of 315 steps x 8 clips, Adam 5e-4, cosine, seed 0.
    "${vadgpu[@]}" train --dataset ped2 --root "$ped2" --preset "$preset" --boxes "$boxes" \
        "${config[@]}" --epochs "$epochs" --lr 5e-4 --schedule cosine --seed 0 --out "$run" --no-progress
    "${vadgpu[@]}" eval --run "$run" --no-progress
    keep=benchmarks/results/ped2/$name
    mkdir -p "$keep/eval"
    cp "$run"/config.yaml "$run"/summary.json "$run"/log.jsonl "$keep"/
    cp "$run"/eval/metrics.json "$run"/eval/scores.csv "$keep"/eval/
done
