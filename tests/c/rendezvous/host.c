/* A C host that dlopen()s two plugins, each statically linked with its own
 * copy of cbreg, with RTLD_LOCAL: one registry for the process. An id
 * registered through one plugin is invoked through the other, and both see
 * the same live count.
 *
 *   host PLUGIN_A PLUGIN_B shared   ids cross: the entry runs through B
 *   host PLUGIN_A PLUGIN_B private  (CBREG_PRIVATE=1, each copy on its own)
 *                                   A's id in B is NOT_FOUND and runs nothing
 */
#include "cbreg.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t (*register_fn)(int *);
typedef uint32_t (*invoke_fn)(uint64_t);
typedef uint64_t (*live_fn)(void);
typedef uint32_t (*resolve_fn)(uint64_t, cbreg_site *);
typedef uint32_t (*site_invoke_fn)(const cbreg_site *);
typedef uint32_t (*signal_new_fn)(cbreg_signal *);
typedef uint32_t (*signal_subscribe_fn)(cbreg_signal, uint64_t);
typedef uint32_t (*signal_emit_fn)(cbreg_signal, size_t *);

typedef struct plugin {
    register_fn reg;
    invoke_fn invoke;
    invoke_fn unregister;
    live_fn live;
    resolve_fn resolve;
    site_invoke_fn site_invoke;
    signal_new_fn signal_new;
    signal_subscribe_fn signal_subscribe;
    signal_emit_fn signal_emit;
} plugin;

static int load(const char *path, plugin *p) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return 0;
    }
    p->reg = (register_fn)dlsym(h, "plugin_register");
    p->invoke = (invoke_fn)dlsym(h, "plugin_invoke");
    p->unregister = (invoke_fn)dlsym(h, "plugin_unregister");
    p->live = (live_fn)dlsym(h, "plugin_live");
    p->resolve = (resolve_fn)dlsym(h, "plugin_resolve");
    p->site_invoke = (site_invoke_fn)dlsym(h, "plugin_site_invoke");
    p->signal_new = (signal_new_fn)dlsym(h, "plugin_signal_new");
    p->signal_subscribe = (signal_subscribe_fn)dlsym(h, "plugin_signal_subscribe");
    p->signal_emit = (signal_emit_fn)dlsym(h, "plugin_signal_emit");
    return p->reg && p->invoke && p->unregister && p->live && p->resolve && p->site_invoke &&
           p->signal_new && p->signal_subscribe && p->signal_emit;
}

static int failures;
#define CHECK(cond)                                                   \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            failures++;                                               \
        }                                                             \
    } while (0)

int main(int argc, char **argv) {
    plugin a, b;
    int counter = 0;
    int shared;
    uint64_t id;
    cbreg_site site_a, site_b;
    cbreg_signal sig;
    size_t called = 0;
    if (argc != 4) {
        fprintf(stderr, "usage: host PLUGIN_A PLUGIN_B shared|private\n");
        return 2;
    }
    shared = strcmp(argv[3], "shared") == 0;
    if (!load(argv[1], &a) || !load(argv[2], &b)) return 2;
    if (a.reg == b.reg) {
        fprintf(stderr, "the two plugins are one object: not a test of two copies\n");
        return 2;
    }
    id = a.reg(&counter);
    CHECK(id != 0);
    CHECK(a.resolve(id, &site_a) == CBREG_STATUS_OK);
    if (shared) {
        CHECK(b.invoke(id) == CBREG_STATUS_OK);
        CHECK(counter == 1);
        CHECK(a.live() == b.live());
        /* A site resolved through either copy works through both. */
        CHECK(b.resolve(id, &site_b) == CBREG_STATUS_OK);
        CHECK(b.site_invoke(&site_a) == CBREG_STATUS_OK);
        CHECK(a.site_invoke(&site_b) == CBREG_STATUS_OK);
        CHECK(counter == 3);
        CHECK(b.unregister(id) == CBREG_STATUS_OK);
        CHECK(a.invoke(id) == CBREG_STATUS_NOT_FOUND); /* gone for both */
        CHECK(b.site_invoke(&site_a) == CBREG_STATUS_NOT_FOUND);
        CHECK(a.site_invoke(&site_b) == CBREG_STATUS_NOT_FOUND);
        CHECK(a.live() == b.live());
        /* A signal made through A, subscribed to and emitted through B. */
        id = a.reg(&counter);
        CHECK(a.signal_new(&sig) == CBREG_STATUS_OK);
        CHECK(b.signal_subscribe(sig, id) == CBREG_STATUS_OK);
        CHECK(b.signal_emit(sig, &called) == CBREG_STATUS_OK && called == 1);
        CHECK(a.signal_emit(sig, &called) == CBREG_STATUS_OK && called == 1);
        CHECK(counter == 5);
    } else {
        CHECK(b.invoke(id) == CBREG_STATUS_NOT_FOUND); /* never another entry */
        CHECK(b.resolve(id, &site_b) == CBREG_STATUS_NOT_FOUND);
        /* A's site means nothing to B's copy. */
        CHECK(b.site_invoke(&site_a) == CBREG_STATUS_INVALID_ARGUMENT);
        CHECK(counter == 0);
        CHECK(a.invoke(id) == CBREG_STATUS_OK);
        CHECK(a.site_invoke(&site_a) == CBREG_STATUS_OK);
        CHECK(counter == 2);
        /* A's signal means nothing to B's copy. */
        CHECK(a.signal_new(&sig) == CBREG_STATUS_OK);
        CHECK(b.signal_subscribe(sig, id) == CBREG_STATUS_INVALID_SIGNAL);
        CHECK(b.signal_emit(sig, &called) == CBREG_STATUS_INVALID_SIGNAL && called == 0);
        CHECK(a.signal_subscribe(sig, id) == CBREG_STATUS_OK);
        CHECK(a.signal_emit(sig, &called) == CBREG_STATUS_OK && called == 1);
        CHECK(counter == 3);
    }
    printf("rendezvous %s: %s\n", argv[3], failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
