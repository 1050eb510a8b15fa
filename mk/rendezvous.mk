# One registry per process however cbreg is linked (src/rendezvous.rs).
# Included by the top-level Makefile, which defines CARGO_STATICLIB.
#
#   make rendezvous-test   a C host dlopen()s two plugins, each statically
#                          linked with libcbreg.a, with RTLD_LOCAL: an id
#                          registered through one runs through the other;
#                          with CBREG_PRIVATE=1 (each copy on its own) the
#                          id is NOT_FOUND in the other copy

CARGO_STATICLIB ?= target/release/libcbreg.a
RDV_DIR := build/rendezvous
RDV_CFLAGS := -std=c99 -Wall -Wextra -Werror -g -O2 -Iinclude

.PHONY: rendezvous-test

$(RDV_DIR):
	mkdir -p $@

# Two copies of the same plugin source: two objects, two copies of cbreg.
$(RDV_DIR)/plugin_a.so $(RDV_DIR)/plugin_b.so: tests/c/rendezvous/plugin.c include/cbreg.h $(CARGO_STATICLIB) | $(RDV_DIR)
	$(CC) $(RDV_CFLAGS) -fPIC -shared $< $(CARGO_STATICLIB) -lpthread -ldl -lm -o $@

$(RDV_DIR)/host: tests/c/rendezvous/host.c include/cbreg.h | $(RDV_DIR)
	$(CC) $(RDV_CFLAGS) -D_POSIX_C_SOURCE=200809L $< -ldl -o $@

rendezvous-test: $(RDV_DIR)/host $(RDV_DIR)/plugin_a.so $(RDV_DIR)/plugin_b.so
	./$(RDV_DIR)/host $(CURDIR)/$(RDV_DIR)/plugin_a.so $(CURDIR)/$(RDV_DIR)/plugin_b.so shared
	CBREG_PRIVATE=1 ./$(RDV_DIR)/host $(CURDIR)/$(RDV_DIR)/plugin_a.so $(CURDIR)/$(RDV_DIR)/plugin_b.so private
