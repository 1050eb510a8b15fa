# Stress and accounting job (tests/stress/stress.c), included from mk/c.mk.
#
#   make stress   STRESS_SECONDS (default 40) of 32 threads plus bursts of
#                 300 short-lived ones, nested invokes, one-shots, frees and
#                 recreations, forks, real-time threads; exits non-zero on
#                 any violation or hang (the program's own alarm() watchdog)
#   make soak     the same for SOAK_SECONDS (default 1800), then the fuzzer
#                 for as long
#   make storm    the unregister storm (tests/stress/storm.c) at 4 and 8
#                 times the cores, STORM_SECONDS (default 8) each: pending
#                 high-water mark against its bound, slowest release,
#                 peak RSS; part of `make stress`
#   make tsan     the stress job under ThreadSanitizer: the library (nightly
#                 Rust, -Zsanitizer=thread, std rebuilt from rust-src) and
#                 the job instrumented, TSAN_SECONDS (default 20), with the
#                 fence barrier (TSan does not see membarrier)
#   make miri     the core's unit tests (src/registry/core_tests.rs among
#                 them) under Miri with the fence barrier (nightly Rust
#                 with miri and rust-src)
#   make reclaimer-exit-test
#                 a program whose main thread ends with pthread_exit() after
#                 the reclaimer started still exits (a subprocess with a
#                 timeout); part of `make stress`

CARGO_STATICLIB ?= target/release/libcbreg.a

STRESS_BUILD_DIR := build/stress
STRESS_SECONDS   ?= 40
STRESS_THREADS   ?= 32
SOAK_SECONDS     ?= 1800
STORM_SECONDS    ?= 8
CORES            := $(shell nproc 2>/dev/null || echo 2)

.PHONY: stress soak storm reclaimer-exit-test tsan tsan-toolchain miri miri-toolchain

$(STRESS_BUILD_DIR):
	mkdir -p $@

$(STRESS_BUILD_DIR)/stress: tests/stress/stress.c include/cbreg.h $(CARGO_STATICLIB) | $(STRESS_BUILD_DIR)
	$(CC) -std=gnu99 -Wall -Wextra -Werror -pthread -g -O2 -Iinclude $< $(CARGO_STATICLIB) -lpthread -ldl -lm -o $@

$(STRESS_BUILD_DIR)/main_thread_exit: tests/stress/main_thread_exit.c include/cbreg.h $(CARGO_STATICLIB) | $(STRESS_BUILD_DIR)
	$(CC) -std=gnu99 -Wall -Wextra -Werror -pthread -g -O2 -Iinclude $< $(CARGO_STATICLIB) -lpthread -ldl -lm -o $@

reclaimer-exit-test: $(STRESS_BUILD_DIR)/main_thread_exit
	./$<

$(STRESS_BUILD_DIR)/storm: tests/stress/storm.c include/cbreg.h $(CARGO_STATICLIB) | $(STRESS_BUILD_DIR)
	$(CC) -std=gnu99 -Wall -Wextra -Werror -pthread -g -O2 -Iinclude $< $(CARGO_STATICLIB) -lpthread -ldl -lm -o $@

storm: $(STRESS_BUILD_DIR)/storm
	./$< $(STORM_SECONDS) $$(( 4 * $(CORES) ))
	./$< $(STORM_SECONDS) $$(( 8 * $(CORES) ))

stress: $(STRESS_BUILD_DIR)/stress reclaimer-exit-test storm
	./$< $(STRESS_SECONDS) $(STRESS_THREADS)

soak: $(STRESS_BUILD_DIR)/stress
	./$< $(SOAK_SECONDS) $(STRESS_THREADS)
	$(MAKE) fuzz FUZZ_SECONDS=$(SOAK_SECONDS)

# ---- ThreadSanitizer and Miri: nightly Rust, each checked for first ----

TSAN_SECONDS     ?= 20
TSAN_THREADS     ?= 8
TSAN_TARGET      := x86_64-unknown-linux-gnu
TSAN_TARGET_DIR  := target/tsan
TSAN_LIB         := $(TSAN_TARGET_DIR)/$(TSAN_TARGET)/release/libcbreg.a
# The job's C is instrumented by the C compiler, and the program linked
# with the ThreadSanitizer runtime of the Rust toolchain that instrumented
# the library (a system compiler's runtime may predate entry points that
# rustc's LLVM emits, such as __tsan_memcpy).
TSAN_RUNTIME      = $(shell rustc +nightly --print sysroot 2>/dev/null)/lib/rustlib/$(TSAN_TARGET)/lib/librustc-nightly_rt.tsan.a

tsan-toolchain:
	@rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src' || { \
	  echo "make tsan needs the nightly toolchain with rust-src: rustup toolchain install nightly && rustup +nightly component add rust-src" >&2; exit 1; }

$(TSAN_LIB): FORCE | tsan-toolchain
	RUSTFLAGS="-Zsanitizer=thread" CARGO_TARGET_DIR=$(TSAN_TARGET_DIR) \
	  $(CARGO) +nightly build --release --lib -Zbuild-std --target $(TSAN_TARGET)

$(STRESS_BUILD_DIR)/stress_tsan: tests/stress/stress.c include/cbreg.h $(TSAN_LIB) | $(STRESS_BUILD_DIR)
	$(CC) -std=gnu99 -Wall -Wextra -Werror -pthread -g -O1 -fsanitize=thread -Iinclude -c $< -o $@.o
	$(CC) -pthread $@.o $(TSAN_LIB) -Wl,--whole-archive $(TSAN_RUNTIME) -Wl,--no-whole-archive \
	  -lpthread -ldl -lm -lrt -lstdc++ -o $@

tsan: $(STRESS_BUILD_DIR)/stress_tsan
	CBREG_BARRIER=fence TSAN_OPTIONS="halt_on_error=1 die_after_fork=0" ./$< $(TSAN_SECONDS) $(TSAN_THREADS)

miri-toolchain:
	@rustup +nightly component list --installed 2>/dev/null | grep -q '^miri' || { \
	  echo "make miri needs the nightly toolchain with miri: rustup +nightly component add miri rust-src" >&2; exit 1; }

miri: | miri-toolchain
	CBREG_BARRIER=fence MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-permissive-provenance" CARGO_TARGET_DIR=target/miri \
	  $(CARGO) +nightly miri test --lib
