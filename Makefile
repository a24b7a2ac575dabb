# Two commands do all the set-up: `make demo` and `make test`.
# Each creates .venv and installs the pinned dependencies when they are missing or
# older than setup.cfg / pyproject.toml.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# `cpu` for CI and the demo; `make EXTRA=gpu venv` for a CUDA build of TensorFlow.
EXTRA  ?= cpu
DATA   ?= data/synthetic
PYTEST_ARGS ?=
# Extra flags of tools/demo.py, e.g. DEMO_ARGS=--ceiling_steps=600 (a quick demo).
DEMO_ARGS ?=
# Test processes (pytest-xdist), each file's tests in one of them (their module
# fixtures are built once); 2 = CI's cores. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist=loadfile

.PHONY: venv test test-fast demo data clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "coseg_tf needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.2" "setuptools>=64" wheel
	$(PY) -m pip install --quiet -e ".[$(EXTRA),test]"
	touch $(STAMP)

test: $(STAMP)
	$(PYTEST) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) tools/demo.py --data_dir=$(DATA) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

# Performance ratios of every stage (docs/PERFORMANCE.md); ~5 minutes on 2 cores.
.PHONY: bench
bench: $(STAMP)
	$(PY) tools/bench.py $(BENCH_ARGS)
