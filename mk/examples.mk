# The first examples of README.md (examples/first/), one per language, so
# that what a newcomer reads first compiles and runs. Included by the
# top-level Makefile after mk/python.mk (whose VENV_PY and python-install it
# uses).
#
#   make readme-examples   checks that each README block marked
#                          `<!-- example: PATH -->` is the file PATH as it
#                          is (tools/readme_examples.py), then builds and runs
#                          first.c (C99, static library), first.cpp (C++17
#                          shim), main.rs (`cargo run --example first`) and
#                          first.py (the installed package)

CARGO_STATICLIB ?= target/release/libcbreg.a

EXAMPLES_DIR := build/examples

.PHONY: readme-examples

$(EXAMPLES_DIR):
	mkdir -p $@

$(EXAMPLES_DIR)/first_c: examples/first/first.c include/cbreg.h $(CARGO_STATICLIB) | $(EXAMPLES_DIR)
	$(CC) $(C_CFLAGS) -O2 $(C_CPPFLAGS) $< $(CARGO_STATICLIB) $(C_LDLIBS) -o $@

$(EXAMPLES_DIR)/first_cpp: examples/first/first.cpp cpp_shim/cbreg.hpp include/cbreg.h $(CARGO_STATICLIB) | $(EXAMPLES_DIR)
	$(CXX) $(CPP_CXXFLAGS) -O2 $(CPP_CPPFLAGS) $< $(CARGO_STATICLIB) $(CPP_LDLIBS) -o $@

readme-examples: $(EXAMPLES_DIR)/first_c $(EXAMPLES_DIR)/first_cpp python-install
	$(PYTHON) tools/readme_examples.py README.md
	./$(EXAMPLES_DIR)/first_c
	./$(EXAMPLES_DIR)/first_cpp
	$(CARGO) run -q --features header --example first
	$(VENV_PY) examples/first/first.py
