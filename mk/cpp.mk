# C++ shim tests (cpp_shim/cbreg.hpp), included by the top-level Makefile.
# That Makefile defines CARGO_STATICLIB and the rule that builds it; the
# default below only keeps prerequisites right if this file is included
# before that definition (prerequisites expand when a rule is read).
#
#   make cpp-test        build/cpp/shim_test
#   make cpp-test-asan   build/cpp/shim_test_asan (ASan + UBSan; the Rust
#                        static library itself is not instrumented)

CARGO_STATICLIB ?= target/release/libcbreg.a

CPP_BUILD_DIR  := build/cpp
CPP_CPPFLAGS   := -Iinclude -Icpp_shim
CPP_CXXFLAGS   := -std=c++17 -Wall -Wextra -Werror -pedantic -pthread -g
CPP_SANITIZE   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
CPP_LDLIBS     := -lpthread -ldl -lm
CPP_TEST_SRC   := tests/cpp/shim_test.cpp
CPP_TEST_DEPS  := $(CPP_TEST_SRC) cpp_shim/cbreg.hpp include/cbreg.h $(CARGO_STATICLIB)

.PHONY: cpp-test cpp-test-asan

$(CPP_BUILD_DIR):
	mkdir -p $@

$(CPP_BUILD_DIR)/shim_test: $(CPP_TEST_DEPS) | $(CPP_BUILD_DIR)
	$(CXX) $(CPP_CXXFLAGS) -O2 $(CPP_CPPFLAGS) $(CPP_TEST_SRC) $(CARGO_STATICLIB) $(CPP_LDLIBS) -o $@

$(CPP_BUILD_DIR)/shim_test_asan: $(CPP_TEST_DEPS) | $(CPP_BUILD_DIR)
	$(CXX) $(CPP_CXXFLAGS) -O1 $(CPP_SANITIZE) $(CPP_CPPFLAGS) $(CPP_TEST_SRC) $(CARGO_STATICLIB) $(CPP_LDLIBS) -o $@

cpp-test: $(CPP_BUILD_DIR)/shim_test
	./$<

cpp-test-asan: $(CPP_BUILD_DIR)/shim_test_asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 ./$<
