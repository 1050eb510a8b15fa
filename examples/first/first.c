#include <stdio.h>
#include "cbreg.h"

static uint32_t on_note(void *ctx, const cbreg_value *args, size_t n, cbreg_value *ret) {
    (void)ctx; (void)ret;
    if (n != 2 || args[0].tag != CBREG_TAG_F64) return CBREG_STATUS_INVALID_ARGUMENT;
    printf("%.1f Hz %.*s\n", args[0].as.f64, (int)args[1].len, (const char *)args[1].as.str);
    return CBREG_STATUS_OK;
}

int main(void) {
    cbreg_registry reg = cbreg_default();
    uint64_t id;
    if (cbreg_register(reg, on_note, NULL, NULL /* release */, 0, &id) != CBREG_STATUS_OK) return 1;

    cbreg_value args[2] = {0};
    args[0].tag = CBREG_TAG_F64; args[0].as.f64 = 440.0;
    args[1].tag = CBREG_TAG_STR; args[1].as.str = (const uint8_t *)"A4"; args[1].len = 2;
    cbreg_status st = cbreg_invoke(reg, id, args, 2, NULL);   /* from any thread */
    if (st != CBREG_STATUS_OK) fprintf(stderr, "%s\n", cbreg_status_str(st));

    cbreg_unregister(reg, id);   /* no invocation starts after this returns */
    return st == CBREG_STATUS_OK ? 0 : 1;
}
