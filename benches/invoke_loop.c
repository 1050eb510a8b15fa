/* Instructions per cbreg_invoke, counted by callgrind (noise-free, unlike
 * timings): `make bench-instructions`. Runs N invokes of a persistent entry
 * with one f64 argument, then the same N direct calls, and prints both. */
#include "cbreg.h"
#include <stdio.h>

static uint32_t on_call(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    (void)args; (void)nargs; (void)ret;
    return *(volatile int *)ctx ? CBREG_STATUS_OK : CBREG_STATUS_OK;
}

enum { N = 1000000 };

__attribute__((noinline)) void run_cbreg(cbreg_registry reg, uint64_t id, const cbreg_value *arg) {
    for (int i = 0; i < N; i++) cbreg_invoke(reg, id, arg, 1, NULL);
}

__attribute__((noinline)) void run_direct(cbreg_call_fn volatile f, void *ctx, const cbreg_value *arg) {
    for (int i = 0; i < N; i++) f(ctx, arg, 1, NULL);
}

int main(void) {
    static int flag = 1;
    cbreg_registry reg;
    uint64_t id;
    cbreg_value arg = {0};
    arg.tag = CBREG_TAG_F64;
    arg.as.f64 = 440.0;
    if (cbreg_registry_new(&reg) || cbreg_register(reg, on_call, &flag, NULL, 0, &id)) return 1;
    cbreg_invoke(reg, id, &arg, 1, NULL); /* claims this thread's record */
    run_cbreg(reg, id, &arg);
    run_direct(on_call, &flag, &arg);
    return 0;
}
