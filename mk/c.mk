# C consumer test (tests/c/consumer.c): plain C99 against the committed
# header include/cbreg.h and the static library. Included by the top-level
# Makefile, which defines CARGO_STATICLIB and the rule that builds it; the
# default below only keeps prerequisites right if this file is included
# before that definition (prerequisites expand when a rule is read).
#
#   make c-test        build/c/consumer
#   make c-test-asan   build/c/consumer_asan (ASan + UBSan; the Rust static
#                      library itself is not instrumented)
#   make c-no-alloc    build/c/no_alloc_libc: invoke makes no allocation,
#                      libc's own included (it defines malloc and friends,
#                      so it has no ASan build); part of c-test

CARGO_STATICLIB ?= target/release/libcbreg.a

C_BUILD_DIR  := build/c
C_CPPFLAGS   := -Iinclude -D_POSIX_C_SOURCE=200809L
C_CFLAGS     := -std=c99 -Wall -Wextra -Werror -pedantic -pthread -g
C_SANITIZE   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
C_LDLIBS     := -lpthread -ldl -lm
C_TEST_SRC   := tests/c/consumer.c
C_TEST_DEPS  := $(C_TEST_SRC) include/cbreg.h $(CARGO_STATICLIB)

.PHONY: c-test c-test-asan c-no-alloc

$(C_BUILD_DIR):
	mkdir -p $@

$(C_BUILD_DIR)/consumer: $(C_TEST_DEPS) | $(C_BUILD_DIR)
	$(CC) $(C_CFLAGS) -O2 $(C_CPPFLAGS) $(C_TEST_SRC) $(CARGO_STATICLIB) $(C_LDLIBS) -o $@

$(C_BUILD_DIR)/consumer_asan: $(C_TEST_DEPS) | $(C_BUILD_DIR)
	$(CC) $(C_CFLAGS) -O1 $(C_SANITIZE) $(C_CPPFLAGS) $(C_TEST_SRC) $(CARGO_STATICLIB) $(C_LDLIBS) -o $@

$(C_BUILD_DIR)/thread_exit: tests/c/thread_exit.c include/cbreg.h $(CARGO_STATICLIB) | $(C_BUILD_DIR)
	$(CC) $(C_CFLAGS) -O2 $(C_CPPFLAGS) $< $(CARGO_STATICLIB) $(C_LDLIBS) -o $@

$(C_BUILD_DIR)/no_alloc_libc: tests/c/no_alloc_libc.c include/cbreg.h $(CARGO_STATICLIB) | $(C_BUILD_DIR)
	$(CC) $(C_CFLAGS) -O2 $(C_CPPFLAGS) $< $(CARGO_STATICLIB) $(C_LDLIBS) -o $@

c-no-alloc: $(C_BUILD_DIR)/no_alloc_libc
	./$<

c-test: $(C_BUILD_DIR)/consumer $(C_BUILD_DIR)/thread_exit $(C_BUILD_DIR)/no_alloc_libc
	./$(C_BUILD_DIR)/consumer
	./$(C_BUILD_DIR)/thread_exit
	./$(C_BUILD_DIR)/no_alloc_libc

c-test-asan: $(C_BUILD_DIR)/consumer_asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ./$<
