# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vadgpu-installed
# The torch build the project is tested with; on a CUDA machine whose driver is older than this build's CUDA, set
# TORCH_SPEC to the build for your driver (see docs/install.md, "On a CUDA machine").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= runs/demo
DEMO_DATA ?= $(DEMO_DIR)/data

.PHONY: install test gpu-test gpu-bundle demo clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test,export,alarms]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) benchmarks/ped2/results_table.py --check
	$(PY) -m pytest -q -rs tests

gpu-test: $(STAMP)
	$(PY) -m pytest -q -rs -m gpu tests

# What benchmarks/gpu_check.sh needs on a bare CUDA machine, in one folder (~12 MiB): Ped2 packed as H.264 and the
# wheels of the small pure-Python packages (PyYAML for Python 3.10-3.13). make gpu-bundle PED2=/path/to/ped2
GPU_BUNDLE ?= gpu-bundle
gpu-bundle: $(STAMP)
	@test -n "$(PED2)" || { echo "make gpu-bundle: give the Ped2 folder, PED2=/path/to/ped2"; exit 2; }
	rm -rf $(GPU_BUNDLE)
	$(PY) -m vadgpu data pack --dataset ped2 --root $(PED2) --out $(GPU_BUNDLE)/ped2-h264 --no-progress
	$(PY) -m pip download -q -d $(GPU_BUNDLE)/wheels click tqdm pytest
	for v in 3.10 3.11 3.12 3.13; do $(PY) -m pip download -q -d $(GPU_BUNDLE)/wheels --only-binary=:all: \
		--python-version $$v --platform manylinux2014_x86_64 --no-deps pyyaml || exit 1; done
	@echo "on the CUDA machine: WHEELS=$(GPU_BUNDLE)/wheels benchmarks/gpu_check.sh $(GPU_BUNDLE)/ped2-h264 OUT_DIR"

demo: $(STAMP)
	$(PY) -m vadgpu data synth $(DEMO_DATA) --seed 0 --overwrite
	$(PY) -m vadgpu data boxes --dataset synthetic --root $(DEMO_DATA) --detector bgsub --split both \
		--out $(DEMO_DIR)/boxes.npz
	$(PY) -m vadgpu train --dataset synthetic --root $(DEMO_DATA) --model ddl --preset ddl-objects-cpu \
		--boxes $(DEMO_DIR)/boxes.npz --epochs 10 --batch-size 16 --lr 1e-3 --schedule cosine \
		--out $(DEMO_DIR)/run --overwrite
	$(PY) -m vadgpu eval --run $(DEMO_DIR)/run
	@echo "demo report: $(DEMO_DIR)/run/eval/ (metrics.json, scores.csv, roc.png, curves/*.png, objects/*.csv)"

clean:
	rm -rf $(VENV) runs .pytest_cache
