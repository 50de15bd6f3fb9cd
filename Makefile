# glm-align: `make demo` and `make test` work on a fresh machine (they install first).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO_DIR ?= runs/demo

.PHONY: install test test-fast test-gpu demo bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# GPU/vLLM tests (CUDA machine; pip install -e ".[vllm]" first); they skip with a reason elsewhere
test-gpu: install
	$(PY) -m pytest -q tests/gpu

demo: install
	$(PY) -m align.pipeline --config configs/pipeline/demo.yaml output_dir=$(DEMO_DIR)

bench: install
	$(PY) bench/model_step.py

clean:
	rm -rf $(VENV) runs
