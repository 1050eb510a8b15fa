# mk/bench.mk: the benchmarks, included by the top-level Makefile after
# mk/python.mk (whose VENV, VENV_PY and python-engine it uses).
#
#   make bench               every row of benches/hot_paths.cpp (C ABI, C++
#                            shim, C++ peers), benches/invoke.rs (Rust API,
#                            Rust peers) and benches/python_fire.py:
#                            callgrind instructions first, then timings;
#                            writes build/bench/results.json and
#                            build/bench/chart.png and prints the tables
#   make bench-instructions  the callgrind rows alone (no venv, no Python)
#   make bench-check         instructions per invoke of the C and C++ rows
#                            (100,000 calls, seconds); fails when a target
#                            of docs/contract.md section 5 on them is missed
#   make bench-guard         the instruction counts `make test` holds the
#                            invoke path to (C ABI at most 90 and under the
#                            C++ mutex map; a call site, C and Rust, at most
#                            60 and under every peer)
#   make bench-chart         redraws docs/bench.png from build/bench/results.json
#
# BENCH_CALLS operations per row (1,000,000); BENCH_THREADS threads invoking
# at once in the concurrent rows (4, at most the machine's cores).

BENCH_DIR := build/bench
BENCH_CALLS ?= 1000000
BENCH_THREADS ?= 4
BENCH_CHECK_CALLS ?= 100000
BENCH_NATIVE := $(BENCH_DIR)/hot_paths
BENCH_RUST := $(BENCH_DIR)/invoke_rs
BENCH_REQUIREMENTS := benches/requirements.txt
BENCH_VENV_STAMP := $(VENV)/.bench-stamp
BENCH_COUNT := $(PYTHON) benches/callgrind_rows.py
BENCH_REPORT := $(PYTHON) benches/report.py
BENCH_INSTRUCTION_ROWS := $(BENCH_DIR)/native_instructions.json $(BENCH_DIR)/rust_instructions.json
BENCH_ROWS := $(BENCH_INSTRUCTION_ROWS) $(BENCH_DIR)/native_ns.json $(BENCH_DIR)/rust_ns.json \
	$(BENCH_DIR)/python.json

.PHONY: bench bench-instructions bench-check bench-guard bench-chart bench-python-instructions bench-post valgrind-toolchain

$(BENCH_DIR):
	mkdir -p $@

$(BENCH_NATIVE): benches/hot_paths.cpp cpp_shim/cbreg.hpp include/cbreg.h $(CARGO_STATICLIB) | $(BENCH_DIR)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -pthread -Iinclude -Icpp_shim benches/hot_paths.cpp \
	  $(CARGO_STATICLIB) -lpthread -ldl -lm -o $@

# Cargo decides what is stale; the copy gives callgrind and the rules below
# a fixed path.
$(BENCH_RUST): FORCE | $(BENCH_DIR)
	bin=$$($(CARGO) bench --bench invoke --no-run --message-format=json \
	  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p'); \
	  test -n "$$bin" && cp "$$bin" $@

$(BENCH_VENV_STAMP): $(BENCH_REQUIREMENTS) $(VENV_STAMP)
	$(VENV_PY) -m pip install --disable-pip-version-check -q -r $(BENCH_REQUIREMENTS)
	touch $@

bench: $(BENCH_NATIVE) $(BENCH_RUST) $(BENCH_VENV_STAMP) python-engine
	rm -f $(BENCH_ROWS)
	$(BENCH_COUNT) $(BENCH_NATIVE) $(BENCH_CALLS) > $(BENCH_DIR)/native_instructions.json
	$(BENCH_COUNT) $(BENCH_RUST) $(BENCH_CALLS) > $(BENCH_DIR)/rust_instructions.json
	$(BENCH_NATIVE) ns $(BENCH_CALLS) $(BENCH_THREADS) > $(BENCH_DIR)/native_ns.json
	$(BENCH_RUST) ns $(BENCH_CALLS) $(BENCH_THREADS) > $(BENCH_DIR)/rust_ns.json
	$(VENV_PY) benches/python_fire.py --json $(BENCH_DIR)/python.json
	$(BENCH_REPORT) --out $(BENCH_DIR)/results.json $(BENCH_ROWS)
	$(VENV_PY) benches/chart.py $(BENCH_DIR)/results.json $(BENCH_DIR)/chart.png
	@echo "chart: $(BENCH_DIR)/chart.png (make bench-chart redraws docs/bench.png)"

bench-instructions: $(BENCH_NATIVE) $(BENCH_RUST)
	$(BENCH_COUNT) $(BENCH_NATIVE) $(BENCH_CALLS) > $(BENCH_DIR)/native_instructions.json
	$(BENCH_COUNT) $(BENCH_RUST) $(BENCH_CALLS) > $(BENCH_DIR)/rust_instructions.json
	$(BENCH_REPORT) $(BENCH_INSTRUCTION_ROWS)

bench-check: $(BENCH_NATIVE)
	$(BENCH_COUNT) $(BENCH_NATIVE) $(BENCH_CHECK_CALLS) invoke > $(BENCH_DIR)/check_instructions.json
	$(BENCH_REPORT) --check $(BENCH_DIR)/check_instructions.json

## Set-up (part of `make setup`): valgrind, for callgrind's instruction
## counts, from apt-get where missing.
BENCH_SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
valgrind-toolchain:
	@command -v valgrind >/dev/null 2>&1 || { echo "installing valgrind (apt-get)"; \
	  $(BENCH_SUDO) apt-get update && $(BENCH_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind; }

# What `make test` runs: the instruction counts the invoke path is held to
# (benches/report.py GUARDS), from callgrind, so no timing is involved.
bench-guard: $(BENCH_NATIVE) $(BENCH_RUST)
	$(call require,valgrind,valgrind-toolchain)
	$(BENCH_COUNT) $(BENCH_NATIVE) $(BENCH_CHECK_CALLS) invoke > $(BENCH_DIR)/guard_instructions.json
	$(BENCH_COUNT) $(BENCH_RUST) $(BENCH_CHECK_CALLS) invoke > $(BENCH_DIR)/guard_rust_instructions.json
	$(BENCH_REPORT) --guard $(BENCH_DIR)/guard_instructions.json $(BENCH_DIR)/guard_rust_instructions.json

# Instructions per call of a Python callback fired from a native thread,
# cbreg against the hand-written kept thread state, and where cbreg's go.
bench-python-instructions: python-install
	$(call require,valgrind,valgrind-toolchain)
	$(VENV_PY) benches/python_instructions.py

bench-chart: $(BENCH_VENV_STAMP)
	$(VENV_PY) benches/chart.py $(BENCH_DIR)/results.json docs/bench.png

# cbreg_post beside crossbeam's ArrayQueue, rtrb and a mutex + deque
# (benches/post.rs): callgrind instructions per push, then nanoseconds for
# one sender and two at once, and one sender to the native dispatcher end
# to end (ratios on stderr).
BENCH_POST := $(BENCH_DIR)/post_rs
$(BENCH_POST): FORCE | $(BENCH_DIR)
	bin=$$($(CARGO) bench --bench post --no-run --message-format=json \
	  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p'); \
	  test -n "$$bin" && cp "$$bin" $@

bench-post: $(BENCH_POST) | valgrind-toolchain
	$(BENCH_COUNT) $(BENCH_POST) $(BENCH_CALLS) > $(BENCH_DIR)/post_instructions.json
	$(BENCH_POST) ns $(BENCH_CALLS) > $(BENCH_DIR)/post_ns.json
	cat $(BENCH_DIR)/post_instructions.json $(BENCH_DIR)/post_ns.json
