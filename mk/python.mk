# mk/python.mk: the Python side's tools and the naive control extension.
# Included by the top-level Makefile; all paths are relative to the repo root.
#
#   make venv                 .venv/ with nanobind, scikit-build-core, cmake,
#                             ninja, pytest (re-installs only when
#                             python/requirements-dev.txt changes)
#   make naive-ext            build tests/python/naive into build/naive/
#   make python-scenarios     run the exit-time scenarios against it
#                             (SCENARIO_RUNS=20 each, in subprocesses)

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp
PY_REQUIREMENTS := python/requirements-dev.txt

NAIVE_EXT_DIR := build/naive
SCENARIO_RUNS ?= 20

.PHONY: venv naive-ext python-scenarios venv-clean

venv: $(VENV_STAMP)

$(VENV_STAMP): $(PY_REQUIREMENTS)
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check -q -r $(PY_REQUIREMENTS)
	touch $@

# CMake and Ninja do the up-to-date checks, so a rebuild with nothing
# changed is a no-op of well under a second.
naive-ext: $(VENV_STAMP)
	VENV_PY=$(VENV_PY) tests/python/naive/build.sh $(NAIVE_EXT_DIR)

python-scenarios: naive-ext
	CBREG_TEST_EXT_DIR=$(CURDIR)/$(NAIVE_EXT_DIR) \
	  $(VENV_PY) tests/python/scenarios/run_matrix.py --runs $(SCENARIO_RUNS)

venv-clean:
	rm -rf $(VENV) $(NAIVE_EXT_DIR)
