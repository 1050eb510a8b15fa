/*
 * Invoke allocates nothing, counting libc's own allocations (docs/contract.md 4.4,
 * 5): the first cbreg_invoke on a brand-new thread and every later one.
 *
 * This program defines malloc, calloc, realloc, posix_memalign,
 * aligned_alloc, memalign and valloc itself (forwarding to glibc's
 * __libc_* entry points), so every allocation in the process passes through
 * them, those made inside libc included; a thread-local flag says which
 * thread's allocations to count.
 *
 * Why 64 pthread keys first: glibc keeps the values of keys 0..31 in the
 * thread descriptor, and for higher keys calloc()s a second-level block the
 * first time a thread sets one. A process that already uses many keys (a
 * plugin host, Python, a GUI toolkit) pushes the key cbreg creates for its
 * thread-exit hook past 31, so cbreg's pthread_setspecific on a thread's
 * first invoke allocates. At 870d96f this program reports one allocation on
 * the first invoke and fails.
 *
 * A control in the same program shows the counter sees an allocation.
 * Build and run: make c-no-alloc (part of make c-test).
 */

#include "cbreg.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef APP_KEYS
#define APP_KEYS 64 /* -DAPP_KEYS=1 shows the allocation is the keys' doing */
#endif
#define LATER_INVOKES 10000

/* ---- allocation counting ---- */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);

static __thread int t_counting;
static unsigned long g_allocations;

static void counted(void) {
    if (t_counting) __atomic_add_fetch(&g_allocations, 1, __ATOMIC_SEQ_CST);
}

void *malloc(size_t size) { counted(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { counted(); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { counted(); return __libc_realloc(p, size); }
void *memalign(size_t alignment, size_t size) { counted(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { counted(); return __libc_memalign(alignment, size); }
void *valloc(size_t size) { counted(); return __libc_valloc(size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    void *p;
    counted();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return 22; /* EINVAL */
    p = __libc_memalign(alignment, size);
    if (p == NULL) return 12; /* ENOMEM */
    *out = p;
    return 0;
}

static void count_on(void) { t_counting = 1; }
static unsigned long count_off(unsigned long before) {
    t_counting = 0;
    return __atomic_load_n(&g_allocations, __ATOMIC_SEQ_CST) - before;
}
static unsigned long count_now(void) { return __atomic_load_n(&g_allocations, __ATOMIC_SEQ_CST); }

/* ---- the test ---- */

static int g_failed;
static cbreg_registry g_reg;
static uint64_t g_id;
static cbreg_site g_site;

static uint32_t add_one(void *ctx, const cbreg_value *args, size_t n, cbreg_value *ret) {
    (void)ctx;
    if (n == 1 && ret != NULL) {
        ret->tag = CBREG_TAG_I64;
        ret->as.i64 = args[0].as.i64 + 1;
    }
    return CBREG_STATUS_OK;
}

typedef struct {
    unsigned long first, later;
    int bad_status;
} thread_result;

static void *invoker(void *arg) {
    thread_result *r = arg;
    cbreg_value in, out;
    unsigned long before;
    int i;
    memset(&in, 0, sizeof in);
    in.tag = CBREG_TAG_I64;
    in.as.i64 = 41;

    before = count_now();
    count_on();
    if (cbreg_invoke(g_reg, g_id, &in, 1, &out) != CBREG_STATUS_OK || out.as.i64 != 42) r->bad_status = 1;
    r->first = count_off(before);

    before = count_now();
    count_on();
    for (i = 0; i < LATER_INVOKES; ++i)
        if (cbreg_invoke(g_reg, g_id, &in, 1, &out) != CBREG_STATUS_OK) r->bad_status = 1;
    for (i = 0; i < LATER_INVOKES; ++i)
        if (cbreg_site_invoke(&g_site, &in, 1, &out) != CBREG_STATUS_OK || out.as.i64 != 42) r->bad_status = 1;
    r->later = count_off(before);
    return NULL;
}

static void check(int ok, const char *what) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) g_failed = 1;
}

int main(void) {
    pthread_key_t keys[APP_KEYS];
    void *(*volatile alloc)(size_t) = malloc;
    unsigned long before, n;
    pthread_t t;
    thread_result r;
    int i;

    /* The host's keys come first, as in a process that loads cbreg late. */
    for (i = 0; i < APP_KEYS; ++i) {
        if (pthread_key_create(&keys[i], NULL) != 0) { printf("FAIL pthread_key_create\n"); return 1; }
        pthread_setspecific(keys[i], &keys[i]);
    }

    /* Control: the counter sees an allocation made on this thread. */
    before = count_now();
    count_on();
    free(alloc(24));
    n = count_off(before);
    check(n >= 1, "control: the counter sees malloc");

    g_reg = cbreg_default();
    if (cbreg_register(g_reg, add_one, NULL, NULL, 0, &g_id) != CBREG_STATUS_OK) { printf("FAIL register\n"); return 1; }
    if (cbreg_invoke(g_reg, g_id, NULL, 0, NULL) != CBREG_STATUS_OK) { printf("FAIL invoke\n"); return 1; }
    if (cbreg_site_resolve(g_reg, g_id, &g_site) != CBREG_STATUS_OK) { printf("FAIL resolve\n"); return 1; }

    for (i = 0; i < 4; ++i) {
        memset(&r, 0, sizeof r);
        if (pthread_create(&t, NULL, invoker, &r) != 0 || pthread_join(t, NULL) != 0) { printf("FAIL thread\n"); return 1; }
        printf("     thread %d: %lu allocations on the first invoke, %lu over the next %d\n", i, r.first, r.later,
               LATER_INVOKES);
        check(!r.bad_status, "invokes returned OK with the right value");
        check(r.first == 0, "the first invoke on a new thread allocates nothing");
        check(r.later == 0, "later invokes (by id and through a call site) allocate nothing");
    }
    for (i = 0; i < APP_KEYS; ++i) pthread_key_delete(keys[i]);
    printf("%s\n", g_failed ? "no_alloc_libc: FAILED" : "no_alloc_libc: passed");
    return g_failed;
}
