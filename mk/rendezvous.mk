# One registry per process however cbreg is linked (src/rendezvous/).
# Included by the top-level Makefile, which defines CARGO_STATICLIB.
#
#   make rendezvous-test   a C host dlopen()s two plugins, each statically
#                          linked with libcbreg.a, with RTLD_LOCAL: an id
#                          registered through one runs through the other;
#                          with CBREG_PRIVATE=1 (each copy on its own) the
#                          id is NOT_FOUND in the other copy. Then the
#                          lifecycle cases (tests/c/rendezvous/lifecycle.c):
#                          one owner per process image across fork, the
#                          exit of the first user, privilege drops, and a
#                          copy's first call on a real-time thread

CARGO_STATICLIB ?= target/release/libcbreg.a
RDV_DIR := build/rendezvous
RDV_CFLAGS := -std=c99 -Wall -Wextra -Werror -g -O2 -Iinclude
RDV_PLUGINS := $(RDV_DIR)/plugin_a.so $(RDV_DIR)/plugin_b.so $(RDV_DIR)/plugin_c.so
RDV_CASES := forked_child_first_user_leaves_no_owner_to_the_parent \
	child_copy_outlives_the_parent \
	child_that_drops_privileges_shares_the_owner \
	fork_during_a_first_call_leaves_a_usable_child \
	realtime_first_invoke_allocates_nothing

.PHONY: rendezvous-test

$(RDV_DIR):
	mkdir -p $@

# Copies of the same plugin source: separate objects, separate copies of cbreg.
$(RDV_PLUGINS): tests/c/rendezvous/plugin.c include/cbreg.h $(CARGO_STATICLIB) | $(RDV_DIR)
	$(CC) $(RDV_CFLAGS) -fPIC -shared $< $(CARGO_STATICLIB) -lpthread -ldl -lm -o $@

$(RDV_DIR)/host: tests/c/rendezvous/host.c include/cbreg.h | $(RDV_DIR)
	$(CC) $(RDV_CFLAGS) -D_POSIX_C_SOURCE=200809L $< -ldl -o $@

# -rdynamic: the plugins' calls to dlopen, mmap and the allocator reach the
# host's counting definitions.
$(RDV_DIR)/lifecycle: tests/c/rendezvous/lifecycle.c include/cbreg.h | $(RDV_DIR)
	$(CC) $(RDV_CFLAGS) -rdynamic -pthread $< -ldl -o $@

rendezvous-test: $(RDV_DIR)/host $(RDV_DIR)/lifecycle $(RDV_PLUGINS)
	./$(RDV_DIR)/host $(CURDIR)/$(RDV_DIR)/plugin_a.so $(CURDIR)/$(RDV_DIR)/plugin_b.so shared
	CBREG_PRIVATE=1 ./$(RDV_DIR)/host $(CURDIR)/$(RDV_DIR)/plugin_a.so $(CURDIR)/$(RDV_DIR)/plugin_b.so private
	status=0; for c in $(RDV_CASES); do \
	  ./$(RDV_DIR)/lifecycle $(addprefix $(CURDIR)/,$(RDV_PLUGINS)) $$c || status=1; \
	done; exit $$status
