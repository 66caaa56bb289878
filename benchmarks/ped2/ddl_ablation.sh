#!/usr/bin/env bash
# DDL ablation on UCSD Ped2 at the CPU preset: train with one fixed schedule, evaluate the last checkpoint under the
# default protocol (patch-max, per-video min-max, median 17), copy the small result files into the repository.
#
#   benchmarks/ped2/ddl_ablation.sh BOXES.npz [dynamic|fixed|nopseudo ...]    (default: all three, one at a time)
#
# Environment: PED2 (dataset root, default ../shared/datasets/ped2), RUNS (run folders, default runs/ped2),
# VADGPU (the command, default .venv/bin/python -m vadgpu). Checkpoints stay in RUNS; the committed copies are
# config.yaml, summary.json, log.jsonl, eval/metrics.json and eval/scores.csv under benchmarks/results/ped2/.
set -euo pipefail
cd "$(dirname "$0")/../.."
boxes=${1:?usage: $0 BOXES.npz [dynamic|fixed|nopseudo ...]}
shift
[ $# -gt 0 ] || set -- dynamic fixed nopseudo
ped2=${PED2:-../shared/datasets/ped2}
runs=${RUNS:-runs/ped2}
read -r -a vadgpu <<< "${VADGPU:-.venv/bin/python -m vadgpu}"
for variant in "$@"; do
    case $variant in
        dynamic) config=() ;;
        fixed) config=(--config benchmarks/ped2/ddl-fixed.yaml) ;;
        nopseudo) config=(--config benchmarks/ped2/ddl-nopseudo.yaml) ;;
        *) echo "unknown variant $variant (dynamic, fixed, nopseudo)" >&2; exit 2 ;;
    esac
    run=$runs/ddl-$variant
    # The schedule is fixed here, before any run: 2 epochs (630 steps of 8 clips), Adam 5e-4, cosine, seed 0.
    "${vadgpu[@]}" train --dataset ped2 --root "$ped2" --preset ddl-ped2-cpu --boxes "$boxes" \
        "${config[@]}" --epochs 2 --lr 5e-4 --schedule cosine --seed 0 --out "$run" --no-progress
    "${vadgpu[@]}" eval --run "$run" --no-progress
    keep=benchmarks/results/ped2/ddl-$variant
    mkdir -p "$keep/eval"
    cp "$run"/config.yaml "$run"/summary.json "$run"/log.jsonl "$keep"/
    cp "$run"/eval/metrics.json "$run"/eval/scores.csv "$keep"/eval/
done
