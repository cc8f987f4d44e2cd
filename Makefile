# Two entry points: `make demo` (capture the built-in default, validate, draw figures) and `make test`.
# Each creates the virtual environment on first use (CPU install path, torch pinned to 2.13.0).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STORE ?= stores/demo.zarr

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m capture --model tiny-llava-ov --dataset synthetic-coco --out $(DEMO_STORE) --overwrite
	$(PY) -m store validate $(DEMO_STORE)
	$(PY) -m analyses token-norms --store $(DEMO_STORE) --out figures/demo
	@echo "store: $(DEMO_STORE)   figures: figures/demo/"

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/capture_overhead.py

clean:
	rm -rf $(VENV) stores figures
