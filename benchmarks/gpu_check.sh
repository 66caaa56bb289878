#!/usr/bin/env bash
# benchmarks/gpu_check.sh DATA_ROOT OUT_DIR
#
# One run on a CUDA machine that proves vadgpu's GPU path and measures it, in at most ~8 minutes on one
# H100/H200-class GPU. Everything it measures lands as JSON in OUT_DIR:
#   env.json                  versions, the GPU, which optional packages (DALI, PyAV) are present
#   gpu-tests.json            the gpu-marked tests (CuPy == torch for every kernel, steps under
#                             torch.cuda.set_sync_debug_mode("error"), bf16/fp16 autocast, fused Adam, resume on
#                             CUDA, ...): each test's outcome, and the reason of every skip
#   bench-<preset>.json       `vadgpu bench throughput --device cuda` at the ddl-paper (256x256 RGB, T=3) and
#                             dualpath-ped2 (128x128 gray, T=16) geometries: loaders, kernels, training steps,
#                             GPU memory (the DALI rows too where DALI is installed; else they are listed as skipped)
#   bench-score.json          `vadgpu bench score --device cuda` with the shipped ped2-ddl over DATA_ROOT's test
#                             videos: frames/s of score and live scoring, each stage's share (decode, boxes, tube
#                             cut, network, appearance, ...), the decode limit, GPU memory (live needs PyAV to read
#                             video files: without it, score alone)
#   train/                    a short ddl-paper training on DATA_ROOT: as many whole epochs as fit in
#                             TRAIN_SECONDS (sized from the measured training rate), the last checkpoint kept
#   eval.json                 `vadgpu eval` of that run (frame-level micro/macro AUC on the test split)
#   summary.json              every part: ran / failed / skipped, why, and its seconds
#
# What the machine needs: Python with torch (a CUDA build), CuPy (cupy-cuda12x or cupy-cuda13x) and OpenCV, plus
# click, tqdm, pyyaml, scipy, scikit-learn, matplotlib and pytest. DALI, PyAV and a network are not needed. Where
# the small pure-Python ones are missing, give a folder of their wheels: WHEELS=DIR (made on any machine with
# `pip download click tqdm pyyaml pytest -d DIR`); they are installed into a temporary folder, not the system.
#
# DATA_ROOT: a dataset in vadgpu's generic layout that OpenCV reads (H.264 videos + .npy labels). Ped2 packs into
# 6.4 MiB with vadgpu's own command, on any machine where vadgpu and PyAV are installed:
#     vadgpu data pack --dataset ped2 --root PED2 --out ped2-h264
#
# Settings (environment): DEVICE (cuda), LOADER (auto: DALI where installed, else the torch loader),
# TRAIN_PRESET (ddl-paper), BENCH_PRESETS ("ddl-paper dualpath-ped2"), TRAIN_SECONDS (240), BENCH_SECONDS (2),
# MAX_EPOCHS (60), BATCH (8), SCORE_CHECKPOINT (ped2-ddl), SCORE_VIDEOS (comma-separated test videos of the
# score bench; default: all). DEVICE=cpu with tiny presets is the dry run the test suite makes.
set -u -o pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DATA_ROOT OUT_DIR   (see the header of this script)" >&2
    exit 2
fi
DATA=$(cd "$1" 2>/dev/null && pwd) || { echo "gpu_check: DATA_ROOT $1 is not a folder" >&2; exit 2; }
mkdir -p "$2" || { echo "gpu_check: cannot create OUT_DIR $2" >&2; exit 2; }
OUT=$(cd "$2" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
LOADER=${LOADER:-auto}
TRAIN_PRESET=${TRAIN_PRESET:-ddl-paper}
BENCH_PRESETS=${BENCH_PRESETS:-ddl-paper dualpath-ped2}
TRAIN_SECONDS=${TRAIN_SECONDS:-240}
BENCH_SECONDS=${BENCH_SECONDS:-2}
MAX_EPOCHS=${MAX_EPOCHS:-60}
BATCH=${BATCH:-8}
SCORE_CHECKPOINT=${SCORE_CHECKPOINT:-ped2-ddl}
SCORE_VIDEOS=${SCORE_VIDEOS:-}
PARTS="$OUT/parts.tsv"
: > "$PARTS"

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export VADGPU_CACHE="$SCRATCH/cache" YOLO_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
if [ -n "${WHEELS:-}" ]; then
    "$PYTHON" -m pip install -q --no-index --no-warn-conflicts --find-links "$WHEELS" --target "$SCRATCH/deps" \
        click tqdm pyyaml pytest \
        || { echo "gpu_check: cannot install the wheels in $WHEELS" >&2; exit 2; }
    export PYTHONPATH="$PYTHONPATH:$SCRATCH/deps"
fi

# part NAME COMMAND...: run one part, log its output to OUT/NAME.log, record status and seconds
part() {
    local name=$1 started status
    shift
    started=$(date +%s%N)
    echo "== $name: $*"
    "$@" > "$OUT/$name.log" 2>&1
    status=$?
    printf '%s\t%s\t%s\n' "$name" "$status" "$(( ($(date +%s%N) - started) / 1000000 ))" >> "$PARTS"
    tail -n 3 "$OUT/$name.log"
    return $status
}

vadgpu() { "$PYTHON" -m vadgpu "$@"; }

part env "$PYTHON" - "$OUT/env.json" <<'EOF'
import importlib, json, platform, sys
import torch
info = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                compute_capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count())
from importlib import metadata
# the distributions of the pure-Python ones (click deprecates its __version__); the others report __version__
DISTRIBUTIONS = {"click": "click", "tqdm": "tqdm", "yaml": "PyYAML", "pytest": "pytest", "sklearn": "scikit-learn",
                 "matplotlib": "matplotlib"}
for module in ("cupy", "cv2", "nvidia.dali", "av", *DISTRIBUTIONS):
    try:
        imported = importlib.import_module(module)
    except Exception as exc:
        info[module] = f"missing ({type(exc).__name__})"
        continue
    try:
        info[module] = metadata.version(DISTRIBUTIONS[module])
    except (KeyError, metadata.PackageNotFoundError):
        info[module] = str(getattr(imported, "__version__", "present"))
from vadgpu import __version__
info["vadgpu"] = __version__
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
EOF

part gpu-tests "$PYTHON" -m pytest -q -rs -m gpu -p no:cacheprovider --junitxml "$SCRATCH/gpu-tests.xml" \
    "$REPO/tests"
"$PYTHON" - "$SCRATCH/gpu-tests.xml" "$OUT/gpu-tests.json" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError) as exc:
    json.dump({"error": f"no test report: {exc}"}, open(sys.argv[2], "w"), indent=2)
    sys.exit(0)
tests = []
for case in root.iter("testcase"):
    outcome, detail = "passed", ""
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
            detail = (node.get("message") or "")[:500]
    tests.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                  "seconds": float(case.get("time") or 0), "detail": detail})
counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
json.dump({"counts": counts, "tests": tests}, open(sys.argv[2], "w"), indent=2)
print(counts)
EOF

for preset in $BENCH_PRESETS; do
    part "bench-$preset" vadgpu bench throughput --dataset generic --root "$DATA" --device "$DEVICE" \
        --preset "$preset" --loader "$LOADER" --batch-size "$BATCH" --seconds "$BENCH_SECONDS" --repeats 3 \
        --warmup 1 --json "$OUT/bench-$preset.json" --no-progress
done

# The scoring path stage by stage. Eval is left out: the shipped model's calibration record is Ped2's in its own
# layout, and on DATA_ROOT (another dataset name) eval would first calibrate on its training videos.
SCORE_MODES=score
"$PYTHON" -c "import av" 2>/dev/null && SCORE_MODES=score,live
part bench-score vadgpu bench score --dataset generic --root "$DATA" --checkpoint "$SCORE_CHECKPOINT" \
    --modes "$SCORE_MODES" ${SCORE_VIDEOS:+--videos "$SCORE_VIDEOS"} --device "$DEVICE" --loader "$LOADER" \
    --out "$OUT/bench-score.json" --no-progress

# As many whole epochs as fit in TRAIN_SECONDS at the training rate the train preset's bench measured (one epoch
# where it did not run).
EPOCHS=$("$PYTHON" - "$OUT/bench-$TRAIN_PRESET.json" "$TRAIN_SECONDS" "$MAX_EPOCHS" <<'EOF'
import json, sys
bench = json.load(open(sys.argv[1]))
rate = bench["stages"]["train"]["rate"]["median"]
s = bench["settings"]
clips = s["frames"] - s["videos"] * (s["spec"]["temporal"] - 1)  # full training clips of the split
print(max(1, min(int(sys.argv[3]), int(float(sys.argv[2]) * rate / max(clips, 1)))))
EOF
) || EPOCHS=1
echo "training $TRAIN_PRESET for $EPOCHS epoch(s)"
part train vadgpu train --dataset generic --root "$DATA" --model "${TRAIN_PRESET%%-*}" --preset "$TRAIN_PRESET" \
    --device "$DEVICE" --loader "$LOADER" --epochs "$EPOCHS" --batch-size "$BATCH" --out "$OUT/train" \
    --no-progress \
 && part eval vadgpu eval --run "$OUT/train" --device "$DEVICE" --loader "$LOADER" --no-progress \
 && cp "$OUT/train/eval/metrics.json" "$OUT/eval.json"
# The run folder comes back small: weights stay on the machine (the full checkpoint of ddl-paper is ~1.2 GB)
find "$OUT/train" -name '*.pt' -size +20M -delete 2>/dev/null

"$PYTHON" - "$PARTS" "$OUT/summary.json" "$EPOCHS" <<'EOF'
import json, sys
parts = {}
for line in open(sys.argv[1]):
    name, status, seconds = line.rstrip("\n").split("\t")
    parts[name] = {"status": "ran" if status == "0" else f"failed (exit {status})",
                   "seconds": round(int(seconds) / 1000, 1)}
summary = {"parts": parts, "train_epochs": int(sys.argv[3]),
           "all_ran": all(p["status"] == "ran" for p in parts.values())}
json.dump(summary, open(sys.argv[2], "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF
rm -f "$PARTS"
