# libFuzzer target (tests/fuzz/fuzz_ops.c), included from mk/c.mk.
#
#   make fuzz         FUZZ_SECONDS (default 60) from the committed seeds in
#                     tests/fuzz/corpus; what the run finds grows
#                     build/fuzz/corpus (not in git); a failing input lands
#                     in build/fuzz/artifacts/
#   make fuzz-merge   minimize build/fuzz/corpus into tests/fuzz/corpus
#                     (then commit what it added)
#
# Needs clang with its fuzzer runtime: `make fuzz-toolchain` installs them
# with apt-get (Debian 12: clang, libclang-rt-14-dev) when a trivial fuzzer
# does not link.

CARGO_STATICLIB ?= target/release/libcbreg.a

FUZZ_CC        ?= clang
FUZZ_BUILD_DIR := build/fuzz
FUZZ_SECONDS   ?= 60
FUZZ_TIMEOUT   ?= 20
FUZZ_FLAGS     := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Wall -Wextra -Werror
FUZZ_APT       := clang libclang-rt-14-dev
SUDO           := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: fuzz fuzz-merge fuzz-toolchain

# Whether $(FUZZ_CC) links a trivial fuzzer (the compiler and its runtime).
FUZZ_PROBE := printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
	  | $(FUZZ_CC) -x c -fsanitize=fuzzer,address -o /dev/null - 2>/dev/null

## Set-up (part of `make setup`).
fuzz-toolchain:
	@$(FUZZ_PROBE) || { \
	  echo "installing $(FUZZ_APT) (apt-get)"; \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $(FUZZ_APT); }

$(FUZZ_BUILD_DIR)/fuzz_ops: tests/fuzz/fuzz_ops.c include/cbreg.h $(CARGO_STATICLIB)
	@$(FUZZ_PROBE) || { echo "$(FUZZ_CC) with libFuzzer not found: run make fuzz-toolchain (or make setup)"; exit 1; }
	mkdir -p $(FUZZ_BUILD_DIR)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Iinclude $< $(CARGO_STATICLIB) -lpthread -ldl -lm -o $@

fuzz: $(FUZZ_BUILD_DIR)/fuzz_ops
	mkdir -p $(FUZZ_BUILD_DIR)/corpus $(FUZZ_BUILD_DIR)/artifacts
	./$< -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=4096 \
	  -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD_DIR)/artifacts/ \
	  $(FUZZ_BUILD_DIR)/corpus tests/fuzz/corpus

fuzz-merge: $(FUZZ_BUILD_DIR)/fuzz_ops
	./$< -merge=1 tests/fuzz/corpus $(FUZZ_BUILD_DIR)/corpus
