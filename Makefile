# Two entry points: `make demo` (main job) and `make test` (test suite).
# Both create .venv/ and install what they need. torch is installed first and pinned
# (unless .venv already has a torch, e.g. a CUDA build a GPU user installed: README.md),
# so pip never pulls a multi-GB CUDA build on its own. The test extras include torchsim, so the
# torch-sim wrapper's tests run (they skip, saying why, where it is not installed); likewise
# molecules (RDKit + tblite, about 170 MB installed) for the QM9-like generator's tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,torchsim,molecules]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/eqv2 demo

test: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	OMP_NUM_THREADS=2 $(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

bench: venv
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
