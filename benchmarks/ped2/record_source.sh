#!/usr/bin/env bash
# Record what code a Ped2 run is made with: DIR/source.json holds the commit (git rev-parse HEAD, null outside a git
# checkout), whether tracked files had uncommitted changes, and what the run made with it. The run scripts call it
# before they train or evaluate; benchmarks/ped2/results_table.py --index puts the commit into runs.jsonl.
#
#   benchmarks/ped2/record_source.sh DIR "training and evaluation"
set -euo pipefail
dir=${1:?usage: $0 DIR WHAT}
what=${2:?usage: $0 DIR WHAT}
repo=$(dirname "$0")/../..
mkdir -p "$dir"
if commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null); then
    dirty=false
    [ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] || dirty=true
    printf '{"commit": "%s", "dirty": %s, "made": "%s"}\n' "$commit" "$dirty" "$what" > "$dir/source.json"
else
    printf '{"commit": null, "made": "%s"}\n' "$what" > "$dir/source.json"
fi
