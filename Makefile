# cbreg: `make test` runs every test, `make demo` the demo, `make bench` the
# benchmarks. Everything it needs beyond cargo, a C/C++ compiler and python3
# it installs itself (Python packages into .venv/).

CARGO ?= cargo
CARGO_STATICLIB := target/release/libcbreg.a
LOOM_TARGET_DIR := target/loom

.PHONY: all build header lint cross-check test rust-test rust-test-fence loom demo native-demo python-bench clean

all: build

build: $(CARGO_STATICLIB)

# Cargo decides what is stale; the file is the handle other rules depend on.
$(CARGO_STATICLIB): FORCE
	$(CARGO) build --release --lib

FORCE:

include mk/c.mk
include mk/cpp.mk
include mk/python.mk
include mk/bench.mk
include mk/rendezvous.mk
include mk/install.mk
include mk/adopters.mk
include mk/stress.mk
include mk/fuzz.mk
include mk/interpreters.mk

## Regenerate the committed C header from src/ (cbindgen, via build.rs).
header:
	CBREG_WRITE_HEADER=1 $(CARGO) build --lib --features header

# The library first: tests/rendezvous.rs loads the shared library that
# `cargo build` makes beside the test binaries (`cargo test` alone does not).
rust-test:
	$(CARGO) build --lib --features header
	$(CARGO) test --features header

## Loom models of the invoke / unregister / clear / collect protocol.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET_DIR) $(CARGO) test --release --test loom

## Clippy with warnings as errors, on the library, its tests and the loom build.
lint:
	$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	$(CARGO) clippy --all-targets --features header,python -- -D warnings
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET_DIR) $(CARGO) clippy --release --test loom -- -D warnings

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

# Last: the Python suite on CPython 3.13 and free-threaded 3.13t
# (mk/interpreters.mk; about 6.5 minutes from a fresh machine, 4 once the
# interpreters are prepared).
test: lint rust-test rust-test-fence loom c-test c-test-asan cpp-test cpp-test-asan bench-guard rendezvous-test install-test python-test adopters-test stress fuzz python-test-interpreters

native-demo:
	$(CARGO) run --release --example native_demo

demo: python-demo

clean:
	$(CARGO) clean
	rm -rf build .venv
