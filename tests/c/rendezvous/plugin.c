/* A plugin that links its own copy of cbreg (libcbreg.a) and is loaded by
 * tests/c/rendezvous/host.c with RTLD_LOCAL: it cannot see any other copy's
 * symbols, yet all copies must share one process-wide registry. */
#include "cbreg.h"

static uint32_t count_call(void *ctx, const cbreg_value *args, size_t n, cbreg_value *ret) {
    (void)args;
    (void)n;
    (void)ret;
    __atomic_fetch_add((int *)ctx, 1, __ATOMIC_SEQ_CST);
    return CBREG_STATUS_OK;
}

/* Registers a counting entry in the default registry; returns its id. */
uint64_t plugin_register(int *counter) {
    uint64_t id = 0;
    if (cbreg_register(cbreg_default(), count_call, counter, NULL, 0, &id) != CBREG_STATUS_OK) return 0;
    return id;
}

cbreg_status plugin_invoke(uint64_t id) {
    return cbreg_invoke(cbreg_default(), id, NULL, 0, NULL);
}

cbreg_status plugin_unregister(uint64_t id) {
    return cbreg_unregister(cbreg_default(), id);
}

uint64_t plugin_live(void) {
    cbreg_stats s;
    if (cbreg_stats_get(cbreg_default(), &s) != CBREG_STATUS_OK) return (uint64_t)-1;
    return s.live;
}

/* Resolves `id` to a call site in `*out`; invokes through a site. */
cbreg_status plugin_resolve(uint64_t id, cbreg_site *out) {
    return cbreg_site_resolve(cbreg_default(), id, out);
}

cbreg_status plugin_site_invoke(const cbreg_site *site) {
    return cbreg_site_invoke(site, NULL, 0, NULL);
}

/* Signals: made, subscribed to and emitted through any copy. */
cbreg_status plugin_signal_new(cbreg_signal *out) {
    return cbreg_signal_new(cbreg_default(), out);
}

cbreg_status plugin_signal_subscribe(cbreg_signal sig, uint64_t id) {
    return cbreg_signal_subscribe(sig, id);
}

/* Emits with no arguments; the subscribers called go to `*called`. */
cbreg_status plugin_signal_emit(cbreg_signal sig, size_t *called) {
    cbreg_emit_report report = {0, 0, 0, 0};
    cbreg_status s = cbreg_signal_emit(sig, NULL, 0, &report);
    *called = report.called;
    return s;
}
