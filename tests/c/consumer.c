/*
 * C consumer test: the committed header include/cbreg.h and the static
 * library, from plain C99. Every function in the header (outside
 * CBREG_PYTHON) is exercised. One line per test ("ok <name>" or
 * "FAIL <name>"), then "N passed, M failed"; exit 1 on any failure.
 * Build and run with `make c-test` (or `make c-test-asan`).
 *
 * Shared test bookkeeping uses the GCC/Clang __atomic builtins (no C11).
 */

#include "cbreg.h"

#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- checking ---- */

static int g_checks_failed; /* in the running test; CHECKs may run on other threads */

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define INC(p) __atomic_add_fetch((p), 1, __ATOMIC_SEQ_CST)
#define DEC(p) __atomic_sub_fetch((p), 1, __ATOMIC_SEQ_CST)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            INC(&g_checks_failed);                                             \
        }                                                                      \
    } while (0)

#define CHECK_STATUS(expr, want)                                               \
    do {                                                                       \
        const cbreg_status got_ = (expr);                                      \
        const cbreg_status want_ = (want);                                     \
        if (got_ != want_) {                                                   \
            printf("    %s:%d: %s gave %u \"%s\", want %u \"%s\"\n", __FILE__,  \
                   __LINE__, #expr, (unsigned)got_, cbreg_status_str(got_),    \
                   (unsigned)want_, cbreg_status_str(want_));                  \
            INC(&g_checks_failed);                                             \
        }                                                                      \
    } while (0)

#define CHECK_U64(got, want)                                                   \
    do {                                                                       \
        const unsigned long long g_ = (unsigned long long)(got);               \
        const unsigned long long w_ = (unsigned long long)(want);              \
        if (g_ != w_) {                                                        \
            printf("    %s:%d: %s is %llu, want %llu\n", __FILE__, __LINE__,    \
                   #got, g_, w_);                                              \
            INC(&g_checks_failed);                                             \
        }                                                                      \
    } while (0)

static void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* Spins (with short sleeps) until *flag is nonzero; fails after ~10 s. */
static int wait_for(const int *flag) {
    int i;
    for (i = 0; i < 10000; ++i) {
        if (LOAD(flag)) return 1;
        sleep_ms(1);
    }
    printf("    timed out waiting\n");
    INC(&g_checks_failed);
    return 0;
}

static cbreg_registry new_registry(void) {
    cbreg_registry reg;
    reg.handle = 0;
    CHECK_STATUS(cbreg_registry_new(&reg), CBREG_STATUS_OK);
    CHECK(reg.handle != 0);
    return reg;
}

static cbreg_stats stats_of(cbreg_registry reg) {
    cbreg_stats s;
    memset(&s, 0xff, sizeof s);
    CHECK_STATUS(cbreg_stats_get(reg, &s), CBREG_STATUS_OK);
    return s;
}

static cbreg_value none_value(void) {
    cbreg_value v;
    memset(&v, 0, sizeof v);
    v.tag = CBREG_TAG_NONE;
    return v;
}

/* A value full of garbage, to see that invoke resets `ret` to none. */
static cbreg_value garbage_value(void) {
    cbreg_value v;
    memset(&v, 0x5a, sizeof v);
    v.tag = CBREG_TAG_I64;
    v.drop = NULL;
    return v;
}

/* ---- a probe: a context that records what cbreg did with it ---- */

typedef struct probe {
    int calls;                /* callbacks started */
    int inside;               /* callbacks running now */
    int releases;             /* release(ctx) calls */
    int release_while_inside; /* releases that saw a callback running */
    int release_on_realtime;  /* releases run on a thread marked real-time */
    int wrong_ctx;            /* call/release got another ctx */
    uint32_t code;            /* what the callback returns */
    pthread_t release_thread;
    /* gate: the callback sets `entered`, then waits for `go` (if gated) */
    int gated;
    int entered;
    int go;
    int left;
    long sleep_ms_inside; /* sleep this long inside the callback */
} probe;

static void probe_init(probe *p) {
    memset(p, 0, sizeof *p);
    p->code = CBREG_STATUS_OK;
}

static uint32_t probe_call(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    probe *p = (probe *)ctx;
    (void)args;
    (void)nargs;
    (void)ret;
    INC(&p->calls);
    INC(&p->inside);
    if (LOAD(&p->releases) != 0) INC(&p->wrong_ctx); /* called after release */
    STORE(&p->entered, 1);
    if (p->gated) wait_for(&p->go);
    if (p->sleep_ms_inside) sleep_ms(p->sleep_ms_inside);
    DEC(&p->inside);
    STORE(&p->left, 1);
    return p->code;
}

static void probe_release(void *ctx) {
    probe *p = (probe *)ctx;
    if (LOAD(&p->inside) != 0) INC(&p->release_while_inside);
    if (cbreg_thread_is_realtime()) INC(&p->release_on_realtime);
    p->release_thread = pthread_self();
    INC(&p->releases);
}

static uint64_t register_probe(cbreg_registry reg, probe *p, uint32_t flags) {
    uint64_t id = 0;
    CHECK_STATUS(cbreg_register(reg, probe_call, p, probe_release, flags, &id), CBREG_STATUS_OK);
    CHECK(id != 0);
    return id;
}

static void check_released_once_cleanly(const probe *p) {
    CHECK(LOAD(&p->releases) == 1);
    CHECK(LOAD(&p->release_while_inside) == 0);
    CHECK(LOAD(&p->release_on_realtime) == 0);
    CHECK(LOAD(&p->wrong_ctx) == 0);
}

/* Invokes an id from a new thread (for callbacks that block). */
typedef struct invoker {
    pthread_t thread;
    cbreg_registry reg;
    uint64_t id;
    cbreg_status status;
} invoker;

static void *invoker_main(void *arg) {
    invoker *inv = (invoker *)arg;
    inv->status = cbreg_invoke(inv->reg, inv->id, NULL, 0, NULL);
    return NULL;
}

static void invoker_start(invoker *inv, cbreg_registry reg, uint64_t id) {
    inv->reg = reg;
    inv->id = id;
    inv->status = CBREG_STATUS_INTERNAL;
    CHECK(pthread_create(&inv->thread, NULL, invoker_main, inv) == 0);
}

/* ---- the tests, one behaviour each ---- */

static void status_str_describes_every_code(void) {
    uint32_t i, j;
    CHECK(strcmp(cbreg_status_str(CBREG_STATUS_OK), "ok") == 0);
    CHECK(strcmp(cbreg_status_str(CBREG_STATUS_NOT_FOUND), "not found") == 0);
    CHECK(strcmp(cbreg_status_str(CBREG_STATUS_WOULD_DEADLOCK), "would deadlock") == 0);
    for (i = CBREG_STATUS_OK; i <= CBREG_STATUS_FULL; ++i) {
        const char *s = cbreg_status_str(i);
        CHECK(s != NULL && s[0] != '\0');
        CHECK(s != NULL && strcmp(s, "unknown status") != 0);
        for (j = 0; j < i; ++j) CHECK(strcmp(s, cbreg_status_str(j)) != 0);
    }
    CHECK(strcmp(cbreg_status_str(CBREG_STATUS_FULL + 1), "unknown status") == 0);
    CHECK(strcmp(cbreg_status_str(UINT32_MAX), "unknown status") == 0);
}

static void value_layout_matches_the_rust_side(void) {
    /* repr(C) on the Rust side; these hold on every LP64 / ILP32 target. */
    CHECK(offsetof(cbreg_value, tag) == 0);
    CHECK(offsetof(cbreg_value, len) == sizeof(size_t));
    CHECK(sizeof(cbreg_payload) == 8);
    CHECK(sizeof(cbreg_stats) == 7 * sizeof(uint64_t));
    CHECK(sizeof(cbreg_registry) == sizeof(uint64_t));
    CHECK(sizeof(cbreg_status) == 4);
    CHECK(sizeof(cbreg_tag) == 4);
    CHECK(CBREG_ONCE == 1);
}

static void default_registry_is_shared_and_never_destroyed(void) {
    cbreg_registry a = cbreg_default(), b = cbreg_default();
    cbreg_stats before, after;
    probe p;
    uint64_t id;
    CHECK(a.handle != 0);
    CHECK(a.handle == b.handle);
    before = stats_of(a);
    probe_init(&p);
    id = register_probe(a, &p, 0);
    CHECK_STATUS(cbreg_invoke(b, id, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK(p.calls == 1);
    CHECK_STATUS(cbreg_registry_free(a), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_invoke(a, id, NULL, 0, NULL), CBREG_STATUS_OK); /* still alive */
    CHECK_STATUS(cbreg_unregister(a, id), CBREG_STATUS_OK);
    check_released_once_cleanly(&p);
    after = stats_of(a);
    CHECK_U64(after.registered - before.registered, 1);
    CHECK_U64(after.invoked - before.invoked, 2);
    CHECK_U64(after.released - before.released, 1);
    CHECK_U64(after.live, before.live);
}

static void site_invokes_until_unregistered_and_never_the_next_entry(void) {
    cbreg_registry r = new_registry();
    probe p1, p2;
    cbreg_site site, zeroed;
    uint64_t id1;
    cbreg_value arg;
    probe_init(&p1);
    probe_init(&p2);
    memset(&zeroed, 0, sizeof zeroed);
    arg.tag = CBREG_TAG_F64;
    arg.len = 0;
    arg.as.f64 = 440.0;
    arg.drop = NULL;
    arg.owner = NULL;
    id1 = register_probe(r, &p1, 0);
    CHECK_STATUS(cbreg_site_resolve(r, id1, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_site_resolve(r, id1, &site), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_site_invoke(&site, &arg, 1, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_site_invoke(&site, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_site_invoke(NULL, NULL, 0, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_site_invoke(&zeroed, NULL, 0, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_unregister(r, id1), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_site_invoke(&site, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    (void)register_probe(r, &p2, 0); /* takes the freed slot */
    CHECK_STATUS(cbreg_site_invoke(&site, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK(p1.calls == 2);
    CHECK(p2.calls == 0);
    CHECK_STATUS(cbreg_site_resolve(r, id1, &site), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_registry_free(r), CBREG_STATUS_OK);
    check_released_once_cleanly(&p1);
    check_released_once_cleanly(&p2);
}

static void registry_new_and_free_release_everything(void) {
    cbreg_registry r1 = new_registry(), r2 = new_registry();
    probe p1, p2;
    uint64_t id1, id2;
    CHECK(r1.handle != r2.handle);
    CHECK(r1.handle != cbreg_default().handle);
    probe_init(&p1);
    probe_init(&p2);
    id1 = register_probe(r1, &p1, 0);
    id2 = register_probe(r1, &p2, CBREG_ONCE);
    /* registries are separate tables */
    CHECK_STATUS(cbreg_invoke(r2, id1, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_invoke(r1, id1, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_registry_free(r1), CBREG_STATUS_OK);
    check_released_once_cleanly(&p1);
    check_released_once_cleanly(&p2);
    CHECK(p2.calls == 0);
    CHECK_STATUS(cbreg_invoke(r1, id2, NULL, 0, NULL), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_registry_free(r2), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_registry_new(NULL), CBREG_STATUS_INVALID_ARGUMENT);
}

static void register_persistent_invokes_with_ctx_and_releases_once(void) {
    cbreg_registry reg = new_registry();
    probe p;
    uint64_t id;
    int i;
    probe_init(&p);
    id = register_probe(reg, &p, 0);
    for (i = 0; i < 5; ++i) CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK(p.calls == 5);
    CHECK(p.releases == 0);
    CHECK_STATUS(cbreg_unregister(reg, id), CBREG_STATUS_OK);
    check_released_once_cleanly(&p);
    CHECK(pthread_equal(p.release_thread, pthread_self()));
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_unregister(reg, id), CBREG_STATUS_NOT_FOUND);
    CHECK(p.releases == 1);
    /* a NULL release is allowed; ids are never reused */
    {
        uint64_t id2 = 0;
        CHECK_STATUS(cbreg_register(reg, probe_call, &p, NULL, 0, &id2), CBREG_STATUS_OK);
        CHECK(id2 != 0 && id2 != id);
        CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
        CHECK_STATUS(cbreg_unregister(reg, id2), CBREG_STATUS_OK);
    }
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

static void register_once_runs_at_most_once(void) {
    cbreg_registry reg = new_registry();
    probe p;
    uint64_t id;
    cbreg_stats s;
    probe_init(&p);
    id = register_probe(reg, &p, CBREG_ONCE);
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_OK);
    check_released_once_cleanly(&p);
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_unregister(reg, id), CBREG_STATUS_NOT_FOUND);
    CHECK(p.calls == 1);
    CHECK(p.releases == 1);
    s = stats_of(reg);
    CHECK_U64(s.live, 0);
    CHECK_U64(s.released, 1);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

typedef struct once_race {
    cbreg_registry reg;
    uint64_t id;
    int start;
    int ok;
    int not_found;
    int other;
} once_race;

static void *once_racer(void *arg) {
    once_race *r = (once_race *)arg;
    cbreg_status st;
    while (!LOAD(&r->start)) sched_yield();
    st = cbreg_invoke(r->reg, r->id, NULL, 0, NULL);
    if (st == CBREG_STATUS_OK) INC(&r->ok);
    else if (st == CBREG_STATUS_NOT_FOUND) INC(&r->not_found);
    else INC(&r->other);
    return NULL;
}

static void register_once_races_have_one_winner(void) {
    enum { THREADS = 8, ROUNDS = 50 };
    cbreg_registry reg = new_registry();
    int round, i;
    for (round = 0; round < ROUNDS; ++round) {
        pthread_t t[THREADS];
        once_race r;
        probe p;
        probe_init(&p);
        memset(&r, 0, sizeof r);
        r.reg = reg;
        r.id = register_probe(reg, &p, CBREG_ONCE);
        for (i = 0; i < THREADS; ++i) CHECK(pthread_create(&t[i], NULL, once_racer, &r) == 0);
        STORE(&r.start, 1);
        for (i = 0; i < THREADS; ++i) pthread_join(t[i], NULL);
        CHECK(r.ok == 1);
        CHECK(r.not_found == THREADS - 1);
        CHECK(r.other == 0);
        CHECK(p.calls == 1);
        CHECK_STATUS(cbreg_collect(reg, NULL), CBREG_STATUS_OK);
        check_released_once_cleanly(&p);
    }
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

/* The full typed vector (440.0, "A4", ...), checked inside the callback. */

static const uint8_t k_bytes[] = {0x00, 0xff, 0x7f, 0x80};
static const int64_t k_i64s[] = {1, -2, INT64_MAX, INT64_MIN};
static const double k_f64s[] = {0.5, -1.25, 1e300};
static int k_marker;

typedef struct vector_check {
    int calls;
    int bad_index; /* first argument that did not match, or -1 */
} vector_check;

static int arg_ok(const cbreg_value *a, size_t i) {
    switch (i) {
    case 0: return a->tag == CBREG_TAG_NONE;
    case 1: return a->tag == CBREG_TAG_BOOL && a->as.b == true;
    case 2: return a->tag == CBREG_TAG_BOOL && a->as.b == false;
    case 3: return a->tag == CBREG_TAG_I64 && a->as.i64 == -42;
    case 4: return a->tag == CBREG_TAG_F64 && a->as.f64 == 440.0;
    case 5: /* "A4" with a length: the bytes after it must not be read */
        return a->tag == CBREG_TAG_STR && a->len == 2 && a->as.str != NULL &&
               memcmp(a->as.str, "A4", 2) == 0;
    case 6:
        return a->tag == CBREG_TAG_BYTES && a->len == sizeof k_bytes &&
               memcmp(a->as.bytes, k_bytes, sizeof k_bytes) == 0;
    case 7:
        return a->tag == CBREG_TAG_I64_ARRAY && a->len == 4 &&
               memcmp(a->as.i64s, k_i64s, sizeof k_i64s) == 0;
    case 8:
        return a->tag == CBREG_TAG_F64_ARRAY && a->len == 3 && a->as.f64s[0] == 0.5 &&
               a->as.f64s[1] == -1.25 && a->as.f64s[2] == 1e300;
    case 9: return a->tag == CBREG_TAG_PTR && a->as.ptr == (void *)&k_marker;
    case 10: return a->tag == CBREG_TAG_STR && a->len == 0; /* empty string, NULL pointer */
    default: return 0;
    }
}

static uint32_t vector_call(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    vector_check *c = (vector_check *)ctx;
    size_t i;
    c->calls++;
    CHECK(ret != NULL && ret->tag == CBREG_TAG_NONE);
    if (nargs != 11 || args == NULL) {
        c->bad_index = 99;
        return CBREG_STATUS_CALLBACK_FAILED;
    }
    for (i = 0; i < nargs; ++i) {
        if (!arg_ok(&args[i], i)) {
            c->bad_index = (int)i;
            return CBREG_STATUS_CALLBACK_FAILED;
        }
    }
    ret->tag = CBREG_TAG_I64;
    ret->as.i64 = (int64_t)nargs;
    return CBREG_STATUS_OK;
}

static void invoke_passes_the_full_typed_value_vector(void) {
    cbreg_registry reg = new_registry();
    const char a4_and_more[] = "A4 and then some";
    cbreg_value args[11];
    cbreg_value ret = garbage_value();
    vector_check c;
    uint64_t id = 0;
    size_t i;
    c.calls = 0;
    c.bad_index = -1;
    for (i = 0; i < 11; ++i) args[i] = none_value();
    args[1].tag = CBREG_TAG_BOOL;
    args[1].as.b = true;
    args[2].tag = CBREG_TAG_BOOL;
    args[2].as.b = false;
    args[3].tag = CBREG_TAG_I64;
    args[3].as.i64 = -42;
    args[4].tag = CBREG_TAG_F64;
    args[4].as.f64 = 440.0;
    args[5].tag = CBREG_TAG_STR;
    args[5].as.str = (const uint8_t *)a4_and_more;
    args[5].len = 2;
    args[6].tag = CBREG_TAG_BYTES;
    args[6].as.bytes = k_bytes;
    args[6].len = sizeof k_bytes;
    args[7].tag = CBREG_TAG_I64_ARRAY;
    args[7].as.i64s = k_i64s;
    args[7].len = 4;
    args[8].tag = CBREG_TAG_F64_ARRAY;
    args[8].as.f64s = k_f64s;
    args[8].len = 3;
    args[9].tag = CBREG_TAG_PTR;
    args[9].as.ptr = &k_marker;
    args[10].tag = CBREG_TAG_STR;
    args[10].as.str = NULL;
    args[10].len = 0;

    CHECK_STATUS(cbreg_register(reg, vector_call, &c, NULL, 0, &id), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(reg, id, args, 11, &ret), CBREG_STATUS_OK);
    CHECK(c.calls == 1);
    CHECK(c.bad_index == -1);
    if (c.bad_index != -1) printf("    argument %d did not match\n", c.bad_index);
    CHECK(ret.tag == CBREG_TAG_I64 && ret.as.i64 == 11);
    cbreg_value_drop(&ret);
    /* a mismatch is reported as the callback's failure */
    args[4].as.f64 = 441.0;
    CHECK_STATUS(cbreg_invoke(reg, id, args, 11, &ret), CBREG_STATUS_CALLBACK_FAILED);
    CHECK(c.bad_index == 4);
    CHECK(ret.tag == CBREG_TAG_NONE);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

/* Return values: a scalar, and an owned string freed by cbreg_value_drop. */

static int g_drops;
static void *g_dropped_owner;

static void free_owned(void *owner) {
    INC(&g_drops);
    g_dropped_owner = owner;
    free(owner);
}

static uint32_t returns_f64(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    (void)ctx;
    if (nargs != 1 || args[0].tag != CBREG_TAG_F64) return CBREG_STATUS_CALLBACK_FAILED;
    if (ret != NULL) {
        ret->tag = CBREG_TAG_F64;
        ret->as.f64 = args[0].as.f64 * 2.0;
    }
    return CBREG_STATUS_OK;
}

static uint32_t returns_owned_str(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    static const char text[] = "hello from C";
    char *s;
    (void)ctx;
    (void)args;
    (void)nargs;
    if (ret == NULL) return CBREG_STATUS_OK;
    s = (char *)malloc(sizeof text - 1);
    if (s == NULL) return CBREG_STATUS_NO_MEMORY;
    memcpy(s, text, sizeof text - 1); /* no NUL: the length says where it ends */
    ret->tag = CBREG_TAG_STR;
    ret->len = sizeof text - 1;
    ret->as.str = (const uint8_t *)s;
    ret->drop = free_owned;
    ret->owner = s;
    return CBREG_STATUS_OK;
}

static void invoke_returns_a_scalar_value(void) {
    cbreg_registry reg = new_registry();
    cbreg_value arg = none_value(), ret = garbage_value();
    uint64_t id = 0;
    arg.tag = CBREG_TAG_F64;
    arg.as.f64 = 440.0;
    CHECK_STATUS(cbreg_register(reg, returns_f64, NULL, NULL, 0, &id), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(reg, id, &arg, 1, &ret), CBREG_STATUS_OK);
    CHECK(ret.tag == CBREG_TAG_F64 && ret.as.f64 == 880.0);
    CHECK(ret.drop == NULL);
    cbreg_value_drop(&ret); /* borrowed/scalar: just resets it */
    CHECK(ret.tag == CBREG_TAG_NONE);
    CHECK_STATUS(cbreg_invoke(reg, id, &arg, 1, NULL), CBREG_STATUS_OK); /* no return slot */
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

static void invoke_returns_an_owned_string_freed_by_value_drop(void) {
    cbreg_registry reg = new_registry();
    cbreg_value ret = garbage_value();
    const void *owner;
    uint64_t id = 0;
    STORE(&g_drops, 0);
    CHECK_STATUS(cbreg_register(reg, returns_owned_str, NULL, NULL, 0, &id), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, &ret), CBREG_STATUS_OK);
    CHECK(ret.tag == CBREG_TAG_STR);
    CHECK(ret.len == 12 && memcmp(ret.as.str, "hello from C", 12) == 0);
    CHECK(ret.drop == free_owned && ret.owner != NULL);
    owner = ret.owner;
    CHECK(g_drops == 0);
    cbreg_value_drop(&ret);
    CHECK(g_drops == 1);
    CHECK(g_dropped_owner == owner);
    CHECK(ret.tag == CBREG_TAG_NONE && ret.drop == NULL && ret.owner == NULL && ret.len == 0);
    cbreg_value_drop(&ret); /* reset: nothing left to free */
    cbreg_value_drop(NULL);
    CHECK(g_drops == 1);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

static void callback_status_codes_are_returned(void) {
    cbreg_registry reg = new_registry();
    probe p;
    uint64_t id;
    probe_init(&p);
    id = register_probe(reg, &p, 0);
    p.code = CBREG_STATUS_CALLBACK_FAILED;
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_CALLBACK_FAILED);
    p.code = 12345; /* unknown codes become CALLBACK_FAILED */
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_CALLBACK_FAILED);
    p.code = CBREG_STATUS_OK;
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK(p.calls == 3);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
    check_released_once_cleanly(&p);
}

static void unregister_in_flight_defers_release_until_the_call_returns(void) {
    cbreg_registry reg = new_registry();
    probe p;
    invoker inv;
    uint64_t id;
    cbreg_stats s;
    probe_init(&p);
    p.gated = 1;
    id = register_probe(reg, &p, 0);
    invoker_start(&inv, reg, id);
    wait_for(&p.entered);
    CHECK_STATUS(cbreg_unregister(reg, id), CBREG_STATUS_OK); /* returns at once */
    CHECK(LOAD(&p.releases) == 0);
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    s = stats_of(reg);
    CHECK_U64(s.live, 0);
    CHECK_U64(s.deferred, 1);
    STORE(&p.go, 1);
    pthread_join(inv.thread, NULL);
    CHECK_STATUS(inv.status, CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_collect(reg, NULL), CBREG_STATUS_OK);
    check_released_once_cleanly(&p);
    s = stats_of(reg);
    CHECK_U64(s.pending, 0);
    CHECK_U64(s.released, 1);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

/* A callback that unregisters itself: the release waits for it to return. */
typedef struct self_unreg {
    cbreg_registry reg;
    uint64_t id;
    probe p;
    cbreg_status st;
    int releases_seen_inside;
} self_unreg;

static uint32_t self_unregistering_call(void *ctx, const cbreg_value *a, size_t n, cbreg_value *r) {
    self_unreg *s = (self_unreg *)ctx;
    uint32_t code = probe_call(&s->p, a, n, r);
    INC(&s->p.inside); /* still inside while we unregister */
    s->st = cbreg_unregister(s->reg, s->id);
    s->releases_seen_inside = LOAD(&s->p.releases);
    DEC(&s->p.inside);
    return code;
}

static void self_unreg_release(void *ctx) {
    probe_release(&((self_unreg *)ctx)->p);
}

static void callback_may_unregister_itself(void) {
    self_unreg s;
    memset(&s, 0, sizeof s);
    probe_init(&s.p);
    s.reg = new_registry();
    CHECK_STATUS(cbreg_register(s.reg, self_unregistering_call, &s, self_unreg_release, 0, &s.id),
                 CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(s.reg, s.id, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(s.st, CBREG_STATUS_OK);
    CHECK(s.releases_seen_inside == 0);
    CHECK_STATUS(cbreg_collect(s.reg, NULL), CBREG_STATUS_OK);
    check_released_once_cleanly(&s.p);
    CHECK_STATUS(cbreg_invoke(s.reg, s.id, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_registry_free(s.reg), CBREG_STATUS_OK);
}

static void unregister_wait_waits_for_calls_in_flight(void) {
    cbreg_registry reg = new_registry();
    probe p;
    invoker inv;
    uint64_t id;
    probe_init(&p);
    p.sleep_ms_inside = 100;
    id = register_probe(reg, &p, 0);
    invoker_start(&inv, reg, id);
    wait_for(&p.entered);
    CHECK_STATUS(cbreg_unregister_wait(reg, id), CBREG_STATUS_OK);
    CHECK(LOAD(&p.left) == 1); /* the call in flight has returned */
    check_released_once_cleanly(&p);
    CHECK(pthread_equal(p.release_thread, pthread_self())); /* released here */
    pthread_join(inv.thread, NULL);
    CHECK_STATUS(inv.status, CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_unregister_wait(reg, id), CBREG_STATUS_NOT_FOUND);
    CHECK(p.releases == 1);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

/* From inside its own callback, unregister_wait (and registry_free) refuse. */
typedef struct reentrant {
    cbreg_registry reg;
    uint64_t id;
    cbreg_status wait_status;
    cbreg_status free_status;
    cbreg_status other_wait_status;
    uint64_t other_id;
    probe other;
    int calls;
} reentrant;

static uint32_t waits_for_itself(void *ctx, const cbreg_value *a, size_t n, cbreg_value *r) {
    reentrant *s = (reentrant *)ctx;
    (void)a;
    (void)n;
    (void)r;
    s->calls++;
    s->wait_status = cbreg_unregister_wait(s->reg, s->id);
    s->free_status = cbreg_registry_free(s->reg);
    if (s->other_id != 0) s->other_wait_status = cbreg_unregister_wait(s->reg, s->other_id);
    return CBREG_STATUS_OK;
}

static void unregister_wait_from_own_callback_would_deadlock(void) {
    reentrant s;
    cbreg_stats st;
    memset(&s, 0, sizeof s);
    probe_init(&s.other);
    s.reg = new_registry();
    CHECK_STATUS(cbreg_register(s.reg, waits_for_itself, &s, NULL, 0, &s.id), CBREG_STATUS_OK);
    s.other_id = register_probe(s.reg, &s.other, 0);
    CHECK_STATUS(cbreg_invoke(s.reg, s.id, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(s.wait_status, CBREG_STATUS_WOULD_DEADLOCK);
    CHECK_STATUS(s.free_status, CBREG_STATUS_WOULD_DEADLOCK);
    /* waiting for another entry from a callback is fine */
    CHECK_STATUS(s.other_wait_status, CBREG_STATUS_OK);
    check_released_once_cleanly(&s.other);
    /* WOULD_DEADLOCK changed nothing: still registered, registry alive */
    s.other_id = 0;
    CHECK_STATUS(cbreg_invoke(s.reg, s.id, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK(s.calls == 2);
    st = stats_of(s.reg);
    CHECK_U64(st.live, 1);
    CHECK_STATUS(cbreg_unregister_wait(s.reg, s.id), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_registry_free(s.reg), CBREG_STATUS_OK);
}

static void clear_counts_and_releases_everything(void) {
    enum { N = 100 };
    cbreg_registry reg = new_registry();
    static probe p[N];
    uint64_t ids[N];
    size_t count = 12345;
    int i;
    for (i = 0; i < N; ++i) {
        probe_init(&p[i]);
        ids[i] = register_probe(reg, &p[i], i % 2 ? CBREG_ONCE : 0);
    }
    CHECK_STATUS(cbreg_invoke(reg, ids[1], NULL, 0, NULL), CBREG_STATUS_OK); /* one-shot gone */
    CHECK_STATUS(cbreg_unregister(reg, ids[0]), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_clear(reg, &count), CBREG_STATUS_OK);
    CHECK_U64(count, N - 2);
    for (i = 0; i < N; ++i) {
        check_released_once_cleanly(&p[i]);
        CHECK_STATUS(cbreg_invoke(reg, ids[i], NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    }
    CHECK_STATUS(cbreg_clear(reg, &count), CBREG_STATUS_OK);
    CHECK_U64(count, 0);
    CHECK_STATUS(cbreg_clear(reg, NULL), CBREG_STATUS_OK);
    /* clear does not close */
    ids[0] = register_probe(reg, &p[0], 0);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
    CHECK(p[0].releases == 2);
}

static void close_then_register_is_closed(void) {
    cbreg_registry reg = new_registry();
    probe a, b, c;
    uint64_t ida, idb, idc = 777;
    size_t count = 0;
    cbreg_stats s;
    probe_init(&a);
    probe_init(&b);
    probe_init(&c);
    ida = register_probe(reg, &a, 0);
    idb = register_probe(reg, &b, CBREG_ONCE);
    CHECK_STATUS(cbreg_close(reg, &count), CBREG_STATUS_OK);
    CHECK_U64(count, 2);
    check_released_once_cleanly(&a);
    check_released_once_cleanly(&b);
    CHECK_STATUS(cbreg_invoke(reg, ida, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_invoke(reg, idb, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_register(reg, probe_call, &c, probe_release, 0, &idc), CBREG_STATUS_CLOSED);
    CHECK(c.releases == 0); /* on failure ctx stays the caller's */
    CHECK_STATUS(cbreg_close(reg, NULL), CBREG_STATUS_OK); /* again: fine */
    CHECK_STATUS(cbreg_clear(reg, &count), CBREG_STATUS_OK);
    CHECK_U64(count, 0);
    s = stats_of(reg);
    CHECK_U64(s.live, 0);
    CHECK_U64(s.registered, 2);
    CHECK_U64(s.released, 2);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
    CHECK(c.releases == 0);
}

typedef struct counted_invokes {
    cbreg_registry reg;
    uint64_t id;
    int n;
    int ok;
} counted_invokes;

static void *invoke_n_times(void *arg) {
    counted_invokes *c = (counted_invokes *)arg;
    int i;
    for (i = 0; i < c->n; ++i)
        if (cbreg_invoke(c->reg, c->id, NULL, 0, NULL) == CBREG_STATUS_OK) c->ok++;
    return NULL;
}

static void stats_count_live_registered_invoked_released(void) {
    cbreg_registry reg = new_registry();
    probe p1, p2;
    uint64_t id1, id2, id3 = 0;
    counted_invokes c;
    pthread_t t;
    cbreg_stats s = stats_of(reg);
    CHECK_U64(s.live, 0);
    CHECK_U64(s.registered, 0);
    CHECK_U64(s.invoked, 0);
    CHECK_U64(s.released, 0);
    CHECK_U64(s.deferred, 0);
    CHECK_U64(s.pending, 0);
    CHECK_U64(s.leaked, 0);
    probe_init(&p1);
    probe_init(&p2);
    id1 = register_probe(reg, &p1, 0);
    id2 = register_probe(reg, &p2, 0);
    CHECK_STATUS(cbreg_register(reg, probe_call, &p2, NULL, 0, &id3), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(reg, id1, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(reg, id1, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(reg, id2, NULL, 0, NULL), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_invoke(reg, 999, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND); /* not started */
    /* invocations from a thread that has exited still count */
    c.reg = reg;
    c.id = id3;
    c.n = 7;
    c.ok = 0;
    CHECK(pthread_create(&t, NULL, invoke_n_times, &c) == 0);
    pthread_join(t, NULL);
    CHECK(c.ok == 7);
    s = stats_of(reg);
    CHECK_U64(s.live, 3);
    CHECK_U64(s.registered, 3);
    CHECK_U64(s.invoked, 10);
    CHECK_U64(s.released, 0);
    CHECK_STATUS(cbreg_unregister(reg, id1), CBREG_STATUS_OK);
    s = stats_of(reg);
    CHECK_U64(s.live, 2);
    CHECK_U64(s.released, 1);
    CHECK_STATUS(cbreg_clear(reg, NULL), CBREG_STATUS_OK);
    s = stats_of(reg);
    CHECK_U64(s.live, 0);
    CHECK_U64(s.registered, 3);
    CHECK_U64(s.invoked, 10);
    CHECK_U64(s.released, 3); /* a NULL release counts as released */
    CHECK_U64(s.deferred, 0);
    CHECK_U64(s.pending, 0);
    CHECK_U64(s.leaked, 0);
    CHECK_STATUS(cbreg_stats_get(reg, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
    check_released_once_cleanly(&p1);
    check_released_once_cleanly(&p2);
}

/* A real-time thread never runs a release: it waits for collect elsewhere. */
typedef struct rt_work {
    cbreg_registry reg;
    probe *p;
    int was_rt_before, is_rt;
    cbreg_status reg_st, inv_st, unreg_st, clear_st, collect_st, wait_st;
    size_t collected;
    size_t cleared;
    int releases_after;
    probe *q;
} rt_work;

static void *rt_thread(void *arg) {
    rt_work *w = (rt_work *)arg;
    uint64_t id = 0, id2 = 0;
    w->was_rt_before = cbreg_thread_is_realtime();
    CHECK_STATUS(cbreg_thread_set_realtime(true), CBREG_STATUS_OK);
    w->is_rt = cbreg_thread_is_realtime();
    w->reg_st = cbreg_register(w->reg, probe_call, w->p, probe_release, 0, &id);
    w->inv_st = cbreg_invoke(w->reg, id, NULL, 0, NULL);
    w->unreg_st = cbreg_unregister(w->reg, id);
    CHECK_STATUS(cbreg_register(w->reg, probe_call, w->q, probe_release, 0, &id2), CBREG_STATUS_OK);
    w->clear_st = cbreg_clear(w->reg, &w->cleared);
    w->collect_st = cbreg_collect(w->reg, &w->collected);
    w->releases_after = LOAD(&w->p->releases) + LOAD(&w->q->releases);
    return NULL;
}

static void collect_runs_releases_deferred_by_a_realtime_thread(void) {
    rt_work w;
    probe p, q;
    pthread_t t;
    cbreg_stats s;
    size_t n = 99;
    memset(&w, 0, sizeof w);
    probe_init(&p);
    probe_init(&q);
    w.reg = new_registry();
    w.p = &p;
    w.q = &q;
    CHECK(!cbreg_thread_is_realtime());
    CHECK(pthread_create(&t, NULL, rt_thread, &w) == 0);
    pthread_join(t, NULL);
    CHECK(!w.was_rt_before);
    CHECK(w.is_rt);
    CHECK(!cbreg_thread_is_realtime()); /* per thread */
    CHECK_STATUS(w.reg_st, CBREG_STATUS_OK);
    CHECK_STATUS(w.inv_st, CBREG_STATUS_OK);
    CHECK_STATUS(w.unreg_st, CBREG_STATUS_OK);
    CHECK_STATUS(w.clear_st, CBREG_STATUS_OK);
    CHECK_STATUS(w.collect_st, CBREG_STATUS_OK);
    CHECK_U64(w.cleared, 1);
    CHECK_U64(w.collected, 0); /* collect does nothing on a real-time thread */
    CHECK(w.releases_after == 0); /* nothing ran on the real-time thread */
    s = stats_of(w.reg);
    CHECK_U64(s.deferred, 2);
    CHECK_U64(s.live, 0);
    /* From here the reclaimer thread may already have run them (it looks
     * every 10 ms): this collect runs what is left, or waits for it. */
    CHECK_STATUS(cbreg_collect(w.reg, &n), CBREG_STATUS_OK);
    CHECK(n <= 2);
    check_released_once_cleanly(&p);
    check_released_once_cleanly(&q);
    CHECK(!pthread_equal(p.release_thread, t));
    CHECK(!pthread_equal(q.release_thread, t));
    CHECK_STATUS(cbreg_collect(w.reg, &n), CBREG_STATUS_OK);
    CHECK_U64(n, 0);
    s = stats_of(w.reg);
    CHECK_U64(s.pending, 0);
    CHECK_U64(s.released, 2);
    /* the flag toggles on this thread too */
    CHECK_STATUS(cbreg_thread_set_realtime(true), CBREG_STATUS_OK);
    CHECK(cbreg_thread_is_realtime());
    CHECK_STATUS(cbreg_thread_set_realtime(false), CBREG_STATUS_OK);
    CHECK(!cbreg_thread_is_realtime());
    CHECK_STATUS(cbreg_registry_free(w.reg), CBREG_STATUS_OK);
}

static void leaking_release(void *ctx) {
    probe_release(ctx);
    cbreg_release_mark_leaked(); /* "my runtime is finalizing: not freed" */
}

static void release_mark_leaked_counts_as_leaked(void) {
    cbreg_registry reg = new_registry();
    probe a, b;
    uint64_t ida = 0, idb;
    cbreg_stats s;
    probe_init(&a);
    probe_init(&b);
    CHECK_STATUS(cbreg_register(reg, probe_call, &a, leaking_release, 0, &ida), CBREG_STATUS_OK);
    idb = register_probe(reg, &b, 0);
    CHECK_STATUS(cbreg_unregister(reg, ida), CBREG_STATUS_OK);
    check_released_once_cleanly(&a);
    s = stats_of(reg);
    CHECK_U64(s.leaked, 1);
    CHECK_U64(s.released, 0);
    /* the mark does not stick to the next release */
    CHECK_STATUS(cbreg_unregister(reg, idb), CBREG_STATUS_OK);
    s = stats_of(reg);
    CHECK_U64(s.leaked, 1);
    CHECK_U64(s.released, 1);
    CHECK_U64(s.live, 0);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
}

static void bad_input_gets_invalid_argument(void) {
    cbreg_registry reg = new_registry();
    probe p;
    uint64_t id = 0, out = 4242;
    cbreg_value args[2], ret;
    cbreg_stats s;
    probe_init(&p);
    /* register */
    CHECK_STATUS(cbreg_register(reg, NULL, &p, probe_release, 0, &out), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_register(reg, probe_call, &p, probe_release, 0, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_register(reg, probe_call, &p, probe_release, 2, &out), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_register(reg, probe_call, &p, probe_release, UINT32_MAX, &out),
                 CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_collect(reg, NULL), CBREG_STATUS_OK);
    CHECK(p.releases == 0); /* nothing kept */
    s = stats_of(reg);
    CHECK_U64(s.registered, 0);
    /* id 0 */
    CHECK_STATUS(cbreg_invoke(reg, 0, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_unregister(reg, 0), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_unregister_wait(reg, 0), CBREG_STATUS_NOT_FOUND);
    /* ids that were never handed out */
    CHECK_STATUS(cbreg_invoke(reg, 1, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_invoke(reg, (uint64_t)1 << 32, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_invoke(reg, UINT64_MAX, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_unregister(reg, UINT64_MAX), CBREG_STATUS_NOT_FOUND);
    CHECK_STATUS(cbreg_unregister_wait(reg, ((uint64_t)7 << 32) | 5000000), CBREG_STATUS_NOT_FOUND);
    /* argument vectors */
    id = register_probe(reg, &p, 0);
    ret = garbage_value();
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 1, &ret), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK(ret.tag == CBREG_TAG_NONE); /* reset whatever the outcome */
    args[0] = none_value();
    args[1] = none_value();
    args[1].tag = CBREG_TAG_PTR + 1;
    CHECK_STATUS(cbreg_invoke(reg, id, args, 2, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    args[1].tag = UINT32_MAX;
    CHECK_STATUS(cbreg_invoke(reg, id, args, 2, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    args[1].tag = CBREG_TAG_STR; /* NULL pointer with a length */
    args[1].as.str = NULL;
    args[1].len = 3;
    CHECK_STATUS(cbreg_invoke(reg, id, args, 2, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    args[1].tag = CBREG_TAG_F64_ARRAY;
    args[1].as.f64s = NULL;
    CHECK_STATUS(cbreg_invoke(reg, id, args, 2, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK(p.calls == 0);
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_OK); /* NULL with 0 is fine */
    CHECK(p.calls == 1);
    /* other required out-pointers */
    CHECK_STATUS(cbreg_stats_get(reg, NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_registry_new(NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
    check_released_once_cleanly(&p);
}

static void check_handle_is_invalid(cbreg_registry bad, probe *p) {
    uint64_t out = 0;
    size_t n = 0;
    cbreg_stats s;
    cbreg_value ret = garbage_value();
    CHECK_STATUS(cbreg_register(bad, probe_call, p, probe_release, 0, &out), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_invoke(bad, 1, NULL, 0, &ret), CBREG_STATUS_INVALID_REGISTRY);
    CHECK(ret.tag == CBREG_TAG_NONE);
    CHECK_STATUS(cbreg_unregister(bad, 1), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_unregister_wait(bad, 1), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_clear(bad, &n), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_close(bad, &n), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_collect(bad, &n), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_stats_get(bad, &s), CBREG_STATUS_INVALID_REGISTRY);
    CHECK_STATUS(cbreg_registry_free(bad), CBREG_STATUS_INVALID_REGISTRY);
    CHECK(p->releases == 0 && p->calls == 0);
}

static void destroyed_registry_handle_is_invalid_registry(void) {
    cbreg_registry reg = new_registry(), again;
    probe p, q;
    uint64_t id;
    probe_init(&p);
    probe_init(&q);
    id = register_probe(reg, &p, 0);
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
    check_released_once_cleanly(&p);
    CHECK_STATUS(cbreg_invoke(reg, id, NULL, 0, NULL), CBREG_STATUS_INVALID_REGISTRY);
    check_handle_is_invalid(reg, &q);
    /* a new registry (maybe reusing the storage) never revives the old handle */
    again = new_registry();
    CHECK(again.handle != reg.handle);
    check_handle_is_invalid(reg, &q);
    CHECK_STATUS(cbreg_registry_free(again), CBREG_STATUS_OK);
}

static void zeroed_handle_is_invalid_registry(void) {
    cbreg_registry zero, junk;
    probe p;
    probe_init(&p);
    memset(&zero, 0, sizeof zero);
    check_handle_is_invalid(zero, &p);
    junk.handle = 0xdeadbeef00000007ull;
    check_handle_is_invalid(junk, &p);
    junk.handle = UINT64_MAX;
    check_handle_is_invalid(junk, &p);
}

/* A second thread invokes in a loop while the main thread clears. */

enum { CONC_ENTRIES = 32, CONC_ROUNDS = 300 };

typedef struct conc_entry {
    int inside;
    int calls;
    int releases;
    int release_while_inside;
    int call_after_release;
} conc_entry;

typedef struct conc_shared {
    cbreg_registry reg;
    uint64_t ids[CONC_ENTRIES];
    int stop;
    long found;
    long not_found;
    long other;
    long found_seen; /* `found`, published for the main thread */
} conc_shared;

static conc_entry g_conc[CONC_ROUNDS][CONC_ENTRIES];

static uint32_t conc_call(void *ctx, const cbreg_value *a, size_t n, cbreg_value *r) {
    conc_entry *e = (conc_entry *)ctx;
    int i;
    (void)a;
    (void)n;
    (void)r;
    INC(&e->inside);
    INC(&e->calls);
    for (i = 0; i < 200; ++i) {
        if (LOAD(&e->releases) != 0) {
            INC(&e->call_after_release);
            break;
        }
    }
    DEC(&e->inside);
    return CBREG_STATUS_OK;
}

static void conc_release(void *ctx) {
    conc_entry *e = (conc_entry *)ctx;
    if (LOAD(&e->inside) != 0) INC(&e->release_while_inside);
    INC(&e->releases);
}

static void *conc_invoker(void *arg) {
    conc_shared *s = (conc_shared *)arg;
    unsigned k = 0;
    while (!LOAD(&s->stop)) {
        uint64_t id = LOAD(&s->ids[k++ % CONC_ENTRIES]);
        cbreg_status st;
        if (id == 0) continue;
        st = cbreg_invoke(s->reg, id, NULL, 0, NULL);
        if (st == CBREG_STATUS_OK) STORE(&s->found_seen, ++s->found);
        else if (st == CBREG_STATUS_NOT_FOUND) s->not_found++;
        else s->other++;
    }
    return NULL;
}

static void concurrent_invoke_while_clear_releases_once_never_inside(void) {
    static conc_shared s;
    pthread_t t;
    int round, i;
    long calls = 0;
    int bad_count = 0, bad_release = 0, bad_inside = 0, bad_after = 0;
    cbreg_stats st;
    memset(&s, 0, sizeof s);
    memset(g_conc, 0, sizeof g_conc);
    s.reg = new_registry();
    CHECK(pthread_create(&t, NULL, conc_invoker, &s) == 0);
    for (round = 0; round < CONC_ROUNDS; ++round) {
        size_t count = 0;
        for (i = 0; i < CONC_ENTRIES; ++i) {
            uint64_t id = 0;
            CHECK_STATUS(cbreg_register(s.reg, conc_call, &g_conc[round][i], conc_release, 0, &id),
                         CBREG_STATUS_OK);
            STORE(&s.ids[i], id);
        }
        for (i = 0; i < 20; ++i) sched_yield();
        /* The first round waits (bounded) for the invoker to get a call in,
         * so the overlap checked below does not depend on the scheduler. */
        for (i = 0; round == 0 && LOAD(&s.found_seen) == 0 && i < 1000000; ++i) sched_yield();
        CHECK_STATUS(cbreg_clear(s.reg, &count), CBREG_STATUS_OK);
        if (count != CONC_ENTRIES) bad_count++;
    }
    STORE(&s.stop, 1);
    pthread_join(t, NULL);
    CHECK_STATUS(cbreg_collect(s.reg, NULL), CBREG_STATUS_OK);
    for (round = 0; round < CONC_ROUNDS; ++round) {
        for (i = 0; i < CONC_ENTRIES; ++i) {
            const conc_entry *e = &g_conc[round][i];
            calls += e->calls;
            if (e->releases != 1) bad_release++;
            if (e->release_while_inside) bad_inside++;
            if (e->call_after_release) bad_after++;
        }
    }
    CHECK(bad_count == 0);
    CHECK(bad_release == 0);
    CHECK(bad_inside == 0);
    CHECK(bad_after == 0);
    CHECK(s.other == 0);
    CHECK(s.found > 0); /* the two threads did overlap */
    CHECK(calls == s.found);
    st = stats_of(s.reg);
    CHECK_U64(st.registered, CONC_ROUNDS * CONC_ENTRIES);
    CHECK_U64(st.released, CONC_ROUNDS * CONC_ENTRIES);
    CHECK_U64(st.invoked, s.found);
    CHECK_U64(st.live, 0);
    CHECK_U64(st.pending, 0);
    printf("    (%ld calls, %ld not found, %llu releases deferred)\n", s.found, s.not_found,
           (unsigned long long)st.deferred);
    CHECK_STATUS(cbreg_registry_free(s.reg), CBREG_STATUS_OK);
}

/* ---- post ---- */

static void post_is_delivered_by_the_pump_and_by_the_dispatcher(void) {
    cbreg_registry reg = new_registry();
    cbreg_target pump = {0};
    cbreg_post_config config = {8, 256, 0};
    cbreg_post_stats st;
    probe p, q;
    uint64_t on_pump, on_dispatcher;
    size_t n = 99;
    int fd = -2, i;
    cbreg_value arg;
    memset(&arg, 0, sizeof arg);
    arg.tag = CBREG_TAG_F64;
    arg.as.f64 = 440.0;
    probe_init(&p);
    probe_init(&q);
    CHECK_STATUS(cbreg_pump_new(&config, &pump), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_pump_fd(pump, &fd), CBREG_STATUS_OK);
    CHECK(fd >= 0);
    on_pump = register_probe(reg, &p, 0);
    CHECK_STATUS(cbreg_entry_set_target(reg, on_pump, pump), CBREG_STATUS_OK);
    for (i = 0; i < 8; ++i) CHECK_STATUS(cbreg_post(reg, on_pump, &arg, 1, 0), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_post(reg, on_pump, &arg, 1, 0), CBREG_STATUS_FULL);
    CHECK_STATUS(cbreg_post(reg, on_pump, &arg, 1, 1u << 7), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK(LOAD(&p.calls) == 0);
    CHECK_STATUS(cbreg_pump_drain(pump, 100, &n), CBREG_STATUS_OK);
    CHECK(n == 8 && LOAD(&p.calls) == 8);
    CHECK_STATUS(cbreg_post_stats_get(pump, &st), CBREG_STATUS_OK);
    CHECK(st.posted == 9 && st.delivered == 8 && st.dropped_full == 1 && st.ring_events == 8);
    CHECK_STATUS(cbreg_post_stats_total(&st), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_pump_free(pump), CBREG_STATUS_OK);
    CHECK_STATUS(cbreg_post(reg, on_pump, &arg, 1, 0), CBREG_STATUS_CLOSED);
    CHECK_STATUS(cbreg_pump_free(pump), CBREG_STATUS_INVALID_ARGUMENT);
    /* The native dispatcher, every entry's target until set. */
    CHECK_STATUS(cbreg_dispatcher_configure(NULL), CBREG_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(cbreg_post_reserve(pump), CBREG_STATUS_CLOSED);
    pump.handle = 0;
    CHECK_STATUS(cbreg_post_reserve(pump), CBREG_STATUS_OK);
    on_dispatcher = register_probe(reg, &q, CBREG_ONCE);
    CHECK_STATUS(cbreg_post(reg, on_dispatcher, &arg, 1, CBREG_POST_NO_WAKE), CBREG_STATUS_OK);
    {
        /* Queued, or refused if the first was delivered already. */
        cbreg_status second = cbreg_post(reg, on_dispatcher, NULL, 0, CBREG_POST_COALESCE);
        CHECK(second == CBREG_STATUS_OK || second == CBREG_STATUS_NOT_FOUND);
    }
    CHECK(wait_for(&q.left));
    CHECK_STATUS(cbreg_registry_free(reg), CBREG_STATUS_OK);
    CHECK(LOAD(&q.calls) == 1);
    check_released_once_cleanly(&q);
    check_released_once_cleanly(&p);
}

/* ---- the runner ---- */

typedef struct test_case {
    const char *name;
    void (*run)(void);
} test_case;

#define TEST(fn) {#fn, fn}

static const test_case k_tests[] = {
    TEST(status_str_describes_every_code),
    TEST(value_layout_matches_the_rust_side),
    TEST(default_registry_is_shared_and_never_destroyed),
    TEST(registry_new_and_free_release_everything),
    TEST(site_invokes_until_unregistered_and_never_the_next_entry),
    TEST(register_persistent_invokes_with_ctx_and_releases_once),
    TEST(register_once_runs_at_most_once),
    TEST(register_once_races_have_one_winner),
    TEST(invoke_passes_the_full_typed_value_vector),
    TEST(invoke_returns_a_scalar_value),
    TEST(invoke_returns_an_owned_string_freed_by_value_drop),
    TEST(callback_status_codes_are_returned),
    TEST(unregister_in_flight_defers_release_until_the_call_returns),
    TEST(callback_may_unregister_itself),
    TEST(unregister_wait_waits_for_calls_in_flight),
    TEST(unregister_wait_from_own_callback_would_deadlock),
    TEST(clear_counts_and_releases_everything),
    TEST(close_then_register_is_closed),
    TEST(stats_count_live_registered_invoked_released),
    TEST(collect_runs_releases_deferred_by_a_realtime_thread),
    TEST(release_mark_leaked_counts_as_leaked),
    TEST(bad_input_gets_invalid_argument),
    TEST(post_is_delivered_by_the_pump_and_by_the_dispatcher),
    TEST(destroyed_registry_handle_is_invalid_registry),
    TEST(zeroed_handle_is_invalid_registry),
    TEST(concurrent_invoke_while_clear_releases_once_never_inside),
};

int main(void) {
    int passed = 0, failed = 0;
    size_t i;
    for (i = 0; i < sizeof k_tests / sizeof k_tests[0]; ++i) {
        int ok;
        STORE(&g_checks_failed, 0);
        k_tests[i].run();
        ok = LOAD(&g_checks_failed) == 0;
        printf("%s %s\n", ok ? "ok" : "FAIL", k_tests[i].name);
        fflush(stdout);
        if (ok) passed++;
        else failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
