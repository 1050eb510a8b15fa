# mk/interpreters.mk: the Python suite on interpreters other than the host's.
# Included by the top-level Makefile; all paths are relative to the repo root.
#
#   make interpreters               build/interp/: two Debian roots
#                                   (debootstrap, minbase): trixie with
#                                   CPython 3.13, and CPython 3.13t
#                                   (--disable-gil, from trixie's python3.13
#                                   source) built in it; sid with CPython
#                                   3.14 and 3.15. Stamped: a second run
#                                   does nothing.
#   make python-test-interpreters   pytest tests/python on each of
#                                   INTERPRETERS, each in its own venv under
#                                   build/interp/, cbreg and the test
#                                   extensions built against it; prints a
#                                   table; fails when any suite fails. The
#                                   last step of `make test`. 3.15 is the
#                                   one interpreter that takes the PEP 788
#                                   path (interpreter guards).
#   make test-interpreters-full     the same on INTERPRETERS_FULL (3.13t
#                                   with the GIL forced off as well), every
#                                   one at INTERP_FULL_SHUTDOWN_RUNS runs
#                                   per exit scenario: what `make test`
#                                   leaves out to stay within its time.
#
# A name may end in :RUNS, its runs per exit scenario (the others get
# INTERP_SHUTDOWN_RUNS): 3.14 and 3.15 run fewer in `make test`.
#
# The roots run as chroots in a private mount namespace, with the work tree
# and the host's ~/.cargo and ~/.rustup bound in at the same paths
# (tools/interpreters/in_root.sh): cargo and rustc are the host's, linking
# with the root's gcc against its glibc. See tools/interpreters/run.sh for
# the interpreter names.

INTERP_CACHE := build/interp
INTERP_ROOT := $(INTERP_CACHE)/trixie
INTERP_ROOT_STAMP := $(INTERP_CACHE)/trixie.stamp
INTERP_FT_STAMP := $(INTERP_CACHE)/python3.13t.stamp
INTERP_SID_ROOT := $(INTERP_CACHE)/sid
INTERP_SID_STAMP := $(INTERP_CACHE)/sid.stamp
INTERPRETERS ?= 3.13 3.13t 3.14:20 3.15:20
INTERP_SHUTDOWN_RUNS ?= 50
INTERPRETERS_FULL ?= 3.13 3.13t 3.13t+nogil 3.14 3.15
INTERP_FULL_SHUTDOWN_RUNS ?= 200

.PHONY: interpreters python-test-interpreters test-interpreters-full interpreters-clean

interpreters: $(INTERP_ROOT_STAMP) $(INTERP_FT_STAMP) $(INTERP_SID_STAMP)

$(INTERP_ROOT_STAMP): tools/interpreters/make_root.sh
	tools/interpreters/make_root.sh $(INTERP_ROOT) trixie
	touch $@

$(INTERP_SID_STAMP): tools/interpreters/make_root.sh
	tools/interpreters/make_root.sh $(INTERP_SID_ROOT) sid
	touch $@

$(INTERP_FT_STAMP): $(INTERP_ROOT_STAMP) tools/interpreters/build_python_ft.sh
	tools/interpreters/build_python_ft.sh $(INTERP_ROOT)
	touch $@

python-test-interpreters: interpreters
	CBREG_SHUTDOWN_RUNS=$(INTERP_SHUTDOWN_RUNS) \
	  tools/interpreters/run.sh $(INTERP_CACHE) $(INTERPRETERS)

test-interpreters-full: interpreters
	CBREG_SHUTDOWN_RUNS=$(INTERP_FULL_SHUTDOWN_RUNS) \
	  tools/interpreters/run.sh $(INTERP_CACHE) $(INTERPRETERS_FULL)

interpreters-clean:
	rm -rf $(INTERP_CACHE)
