/* Built against an installed prefix with `pkg-config --cflags --libs cbreg`
 * (or CMake's find_package(cbreg)), no Python anywhere: registers, invokes,
 * unregisters, and checks the release ran once. */
#include <stdio.h>
#include "cbreg.h"

static int releases;

static uint32_t twice(void *ctx, const cbreg_value *args, size_t n, cbreg_value *ret) {
    (void)ctx;
    if (n != 1 || args[0].tag != CBREG_TAG_I64) return 1;
    ret->tag = CBREG_TAG_I64;
    ret->as.i64 = 2 * args[0].as.i64;
    return CBREG_STATUS_OK;
}

static void count_release(void *ctx) {
    (void)ctx;
    releases++;
}

int main(void) {
    cbreg_registry reg;
    cbreg_value arg = {0}, ret = {0};
    uint64_t id;
    if (cbreg_registry_new(&reg) != CBREG_STATUS_OK) return 1;
    if (cbreg_register(reg, twice, NULL, count_release, 0, &id) != CBREG_STATUS_OK) return 1;
    arg.tag = CBREG_TAG_I64;
    arg.as.i64 = 21;
    if (cbreg_invoke(reg, id, &arg, 1, &ret) != CBREG_STATUS_OK || ret.as.i64 != 42) return 1;
    if (cbreg_unregister(reg, id) != CBREG_STATUS_OK || releases != 1) return 1;
    if (cbreg_registry_free(reg) != CBREG_STATUS_OK) return 1;
    puts("installed cbreg: ok");
    return 0;
}
