# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vadgpu-installed
# The torch build the project is tested with; on a CUDA machine whose driver is older than this build's CUDA, set
# TORCH_SPEC to the build for your driver (see README, "Install", "On a CUDA machine").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= runs/demo
DEMO_DATA ?= $(DEMO_DIR)/data

.PHONY: install test gpu-test demo clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs tests

gpu-test: $(STAMP)
	$(PY) -m pytest -q -rs -m gpu tests

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
