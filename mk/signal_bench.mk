# mk/signal_bench.mk: emit to 1, 8 and 64 subscribers (benches/signal_emit.cpp)
# beside libsigc++, GLib's g_signal_emit and boost.signals2, all from
# Debian's packages. Included by the top-level Makefile after mk/bench.mk.
#
#   make signal-bench-deps          installs the peers' -dev packages with
#                                   apt-get (nothing when already there;
#                                   the bench itself installs nothing)
#   make bench-signal               callgrind instructions per emit and per
#                                   subscriber, then nanoseconds
#   make bench-signal-instructions  the callgrind rows alone

SIGNAL_BENCH := $(BENCH_DIR)/signal_emit
SIGNAL_BENCH_PACKAGES := libsigc++-3.0-dev libglib2.0-dev libboost-dev pkg-config
SIGNAL_BENCH_CALLS ?= 200000

.PHONY: signal-bench-deps bench-signal bench-signal-instructions

signal-bench-deps:
	@missing=$$(for p in $(SIGNAL_BENCH_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "installing $$missing (apt-get)"; \
	    $(BENCH_SUDO) apt-get update && \
	    $(BENCH_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; fi

$(SIGNAL_BENCH): benches/signal_emit.cpp cpp_shim/cbreg.hpp include/cbreg.h $(CARGO_STATICLIB) | $(BENCH_DIR)
	@pkg-config --exists sigc++-3.0 gobject-2.0 && test -f /usr/include/boost/signals2.hpp || \
	  { echo "libsigc++, GLib or Boost headers not found: run make signal-bench-deps"; exit 1; }
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -pthread -Iinclude -Icpp_shim \
	  $$(pkg-config --cflags sigc++-3.0 gobject-2.0) benches/signal_emit.cpp \
	  $(CARGO_STATICLIB) $$(pkg-config --libs sigc++-3.0 gobject-2.0) -lpthread -ldl -lm -o $@

bench-signal-instructions: $(SIGNAL_BENCH)
	$(call require,valgrind,valgrind-toolchain)
	$(BENCH_COUNT) $(SIGNAL_BENCH) $(SIGNAL_BENCH_CALLS) > $(BENCH_DIR)/signal_instructions.json
	$(PYTHON) benches/signal_report.py $(BENCH_DIR)/signal_instructions.json

bench-signal: bench-signal-instructions
	$(SIGNAL_BENCH) ns $(SIGNAL_BENCH_CALLS) > $(BENCH_DIR)/signal_ns.json
	$(PYTHON) benches/signal_report.py $(BENCH_DIR)/signal_instructions.json $(BENCH_DIR)/signal_ns.json
