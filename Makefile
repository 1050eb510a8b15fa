# cbreg: `make check` is the quick loop, `make test` runs every test, `make
# demo` the demo, `make bench` the benchmarks.
#
#   make check         lint, the Rust tests, the C and C++ tests and the
#                      Python suite with CHECK_SHUTDOWN_RUNS (3) runs per exit
#                      scenario: a few minutes on 2 cores once built. No root.
#   make test          `make setup`, then every suite (what .ci/run runs)
#   make setup-check   what `make check` installs, none of it as root:
#                      clippy (rustup) and .venv/ (pip)
#   make setup         what `make test` installs: setup-check, then valgrind
#                      and clang with libFuzzer (apt-get), the adopters' build
#                      tools and wheelhouse (pip), and the other interpreters
#                      (debootstrap; mk/interpreters.mk). Root for apt-get and
#                      debootstrap.
#
# Test targets run no apt-get, debootstrap or rustup: a missing tool stops
# them with the set-up target to run. What pip installs into a venv is a
# stamped file they depend on, brought up to date when its requirements
# change. Beyond what `make setup` installs, the machine needs cargo, a C/C++
# compiler and python3 with venv.

CARGO ?= cargo
CARGO_STATICLIB := target/release/libcbreg.a
LOOM_TARGET_DIR := target/loom

.PHONY: all build header lint check-refs stubtest cross-check check test setup setup-check setup-rust \
	rust-test rust-test-fence loom demo native-demo python-bench clean

all: build

build: $(CARGO_STATICLIB)

# Cargo decides what is stale; the file is the handle other rules depend on.
$(CARGO_STATICLIB): FORCE
	$(CARGO) rustc --release --lib --crate-type staticlib

FORCE:

# $(call require,COMMAND,SETUP-TARGET): stop, naming the set-up target, when
# a tool a test needs is not installed.
require = @command -v $(1) >/dev/null 2>&1 || { echo "$(1) not found: run make $(2) (or make setup)"; exit 1; }

include mk/c.mk
include mk/cpp.mk
include mk/python.mk
include mk/bench.mk
include mk/signal_bench.mk
include mk/rendezvous.mk
include mk/install.mk
include mk/adopters.mk
include mk/stress.mk
include mk/fuzz.mk
include mk/examples.mk
include mk/interpreters.mk

## Regenerate the committed C header from src/ (cbindgen, via build.rs).
header:
	CBREG_WRITE_HEADER=1 $(CARGO) build --lib --features header

# The shared library first: tests/rendezvous.rs loads the one cargo makes
# beside the test binaries (`cargo test` alone does not).
rust-test:
	$(CARGO) rustc --lib --features header --crate-type cdylib
	$(CARGO) test --features header

## Loom models of the invoke / unregister / clear / collect protocol.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET_DIR) $(CARGO) test --release --test loom --test loom_post

## Clippy with warnings as errors, on the library, its tests and the loom
## build; no reference to a file outside the repository; the docs as
## docs.rs builds them; the Python package's stubs against it.
lint: check-refs stubtest
	@$(CARGO) clippy --version >/dev/null 2>&1 || { echo "clippy not found: run make setup-rust"; exit 1; }
	$(CARGO) clippy --all-targets --features header,python -- -D warnings -W unsafe_op_in_unsafe_fn -W clippy::undocumented_unsafe_blocks
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET_DIR) $(CARGO) clippy --release --test loom --test loom_post -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --features python

## Nothing in the repository cites a file outside it (tools/check_refs.py).
check-refs:
	$(PYTHON) tools/check_refs.py

## mypy's stubtest: the cbreg package's stubs against the installed package.
stubtest: python-install
	$(VENV_PY) -m mypy.stubtest cbreg --allowlist python/stubtest-allowlist.txt

## Clippy, through rustup (no root).
setup-rust:
	$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

## The library compiled for macOS, Windows and Linux on arm64, warnings as
## errors (type-checked, not linked: rustup adds each target's std).
CROSS_TARGETS := x86_64-apple-darwin x86_64-pc-windows-msvc aarch64-unknown-linux-gnu
cross-check:
	rustup target add $(CROSS_TARGETS)
	for t in $(CROSS_TARGETS); do \
	  RUSTFLAGS="-D warnings" CARGO_TARGET_DIR=target/cross $(CARGO) check --lib --target $$t || exit 1; \
	done

## The guarantees again with the fence barrier that systems without
## membarrier use (forced by CBREG_BARRIER=fence).
rust-test-fence:
	CBREG_BARRIER=fence $(CARGO) test --release --test guarantees --test edges --test edges_fork --test model --test fork --test sites

## Set-up, apart from the tests (see the top of this file).
setup-check: setup-rust venv
setup: setup-check valgrind-toolchain fuzz-toolchain adopters-setup interpreters

## The quick loop. The exit scenarios run CHECK_SHUTDOWN_RUNS times each
## instead of 200; `make test` runs them all.
CHECK_SHUTDOWN_RUNS ?= 3
check: CBREG_SHUTDOWN_RUNS = $(CHECK_SHUTDOWN_RUNS)
check: setup-check lint rust-test c-test cpp-test readme-examples python-test

# Everything, in this order; the Python suite on CPython 3.13 and
# free-threaded 3.13t, 3.14 and 3.15 last (mk/interpreters.mk).
test: setup lint rust-test rust-test-fence loom c-test c-test-asan cpp-test cpp-test-asan \
	readme-examples bench-guard rendezvous-test install-test python-test adopters-test stress fuzz \
	python-test-interpreters

native-demo:
	$(CARGO) run --release --example native_demo

demo: venv python-demo

clean:
	$(CARGO) clean
	rm -rf build .venv
