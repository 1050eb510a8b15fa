/* A C host that dlopen()s two plugins, each statically linked with its own
 * copy of cbreg, with RTLD_LOCAL: one registry for the process. An id
 * registered through one plugin is invoked through the other, and both see
 * the same live count.
 *
 *   host PLUGIN_A PLUGIN_B shared   ids cross: the entry runs through B
 *   host PLUGIN_A PLUGIN_B private  (CBREG_PRIVATE=1, each copy on its own)
 *                                   A's id in B is NOT_FOUND and runs nothing
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t (*register_fn)(int *);
typedef uint32_t (*invoke_fn)(uint64_t);
typedef uint64_t (*live_fn)(void);

typedef struct plugin {
    register_fn reg;
    invoke_fn invoke;
    invoke_fn unregister;
    live_fn live;
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
    return p->reg && p->invoke && p->unregister && p->live;
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
    if (shared) {
        CHECK(b.invoke(id) == 0); /* CBREG_STATUS_OK */
        CHECK(counter == 1);
        CHECK(a.live() == b.live());
        CHECK(b.unregister(id) == 0);
        CHECK(a.invoke(id) == 1); /* NOT_FOUND: gone for both */
        CHECK(a.live() == b.live());
    } else {
        CHECK(b.invoke(id) == 1); /* NOT_FOUND, never another entry */
        CHECK(counter == 0);
        CHECK(a.invoke(id) == 0);
        CHECK(counter == 1);
    }
    printf("rendezvous %s: %s\n", argv[3], failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
