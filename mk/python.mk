# mk/python.mk: the Python side's tools and the naive control extension.
# Included by the top-level Makefile; all paths are relative to the repo root.
#
#   make venv                 .venv/ with nanobind, pybind11,
#                             scikit-build-core, cmake, ninja, pytest (re-installs only when
#                             python/requirements-dev.txt changes)
#   make naive-ext            build tests/python/naive into build/naive/
#   make python-scenarios     run the exit-time scenarios against it
#                             (SCENARIO_RUNS=20 each, in subprocesses)
#   make python-install       pip install . (the cbreg package: cargo builds
#                             libcbreg.so and libcbreg_python.a, CMake the
#                             nanobind extension)
#   make python-engine        build tests/python/engine (cbreg_engine,
#                             cbreg_peer) against the installed package
#   make python-test          all of the above, then pytest tests/python
#                             (CBREG_SHUTDOWN_RUNS=200 runs per exit scenario)
#   make python-demo          examples/python_demo.py: cbreg vs the naive
#                             control with a native engine firing at exit
#   make python-bench         benches/python_fire.py: a Python callback fired
#                             from a native thread through cbreg, by a
#                             hand-written kept thread state and by a
#                             per-call PyGILState_Ensure; cbreg.invoke and a
#                             Subscription call against a direct call
#                             (PYTHON_BENCH_ARGS, e.g. --json out.json)

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp
PY_REQUIREMENTS := python/requirements-dev.txt

NAIVE_EXT_DIR := build/naive
SCENARIO_RUNS ?= 20

ENGINE_EXT_DIR := build/engine
CBREG_SHUTDOWN_RUNS ?= 200

.PHONY: venv naive-ext python-scenarios venv-clean python-install python-engine \
	python-test python-demo python-bench

venv: $(VENV_STAMP)

$(VENV_STAMP): $(PY_REQUIREMENTS)
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check -q -r $(PY_REQUIREMENTS)
	touch $@

# CMake and Ninja do the up-to-date checks, so a rebuild with nothing
# changed is a no-op of well under a second.
naive-ext: $(VENV_STAMP)
	VENV_PY=$(VENV_PY) tests/python/build_ext.sh tests/python/naive $(NAIVE_EXT_DIR)

python-scenarios: naive-ext
	CBREG_TEST_EXT_DIR=$(CURDIR)/$(NAIVE_EXT_DIR) \
	  $(VENV_PY) tests/python/scenarios/run_matrix.py --runs $(SCENARIO_RUNS)

# --no-build-isolation: build with the venv's scikit-build-core, nanobind,
# cmake and ninja (offline, and incremental through build/py/). A fresh
# `pip install .` works too; it fetches those into an isolated env.
python-install: $(VENV_STAMP)
	$(VENV_PY) -m pip install --disable-pip-version-check -q --no-build-isolation \
	  -C build-dir=build/py/{wheel_tag} .

python-engine: python-install
	VENV_PY=$(VENV_PY) tests/python/build_ext.sh tests/python/engine $(ENGINE_EXT_DIR)

# The exit-scenario batches (runs, exit codes) go to build/python-tally.json.
python-test: python-engine naive-ext
	CBREG_REQUIRE_BUILT=1 CBREG_SHUTDOWN_RUNS=$(CBREG_SHUTDOWN_RUNS) \
	  CBREG_TALLY_OUT=$(CURDIR)/build/python-tally.json PYTHONPATH=$(CURDIR)/tools/interpreters \
	  $(VENV_PY) -m pytest -q -p scenario_tally tests/python

python-demo: python-engine naive-ext
	$(VENV_PY) examples/python_demo.py

PYTHON_BENCH_ARGS ?=

python-bench: python-install
	$(VENV_PY) benches/python_fire.py $(PYTHON_BENCH_ARGS)

venv-clean:
	rm -rf $(VENV) $(NAIVE_EXT_DIR) $(ENGINE_EXT_DIR) build/py
