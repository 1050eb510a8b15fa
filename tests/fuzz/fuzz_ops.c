/*
 * libFuzzer target: the input bytes are a sequence of operations over the C
 * ABI, checked against a small model (docs/contract.md 4.2 statuses, 4.3
 * exactly-once release, 4.4 where releases run).
 *
 * Operations: new/free registries, register persistent or one-shot entries
 * (each with a counted release), invoke live, retired, stale, forged and
 * other-registry ids and stale handles, malformed arguments, unregister,
 * unregister_wait, clear, close, collect, stats, nested invokes whose
 * callbacks run the next few operations from inside (any depth up to 12),
 * real-time on/off; posts to a pump of the input's own (live, retired,
 * stale and malformed; scalars, bytes, spilled arguments) and drains of it,
 * at the top or from inside a callback. Each input ends by draining the
 * pump and freeing every registry it made; then every entry it registered
 * must have been released exactly once, every event delivered at most once
 * and exactly when the model says, and the pump's counters must account
 * for every post.
 *
 * A broken rule aborts with a message (libFuzzer saves the input); a hang
 * is a libFuzzer timeout. Build and run: make fuzz.
 */

#include "cbreg.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_REGS = 4, MAX_ENTRIES = 64, MAX_STALE = 16, MAX_DEPTH = 12, MAX_OPS = 400 };

typedef struct {
    int reg;        /* index into regs */
    uint64_t id;
    int once;
    int live;       /* model: registered and not retired */
    int releases;   /* how many times its release ran */
    int calls;
    int inside;     /* calls of it on the stack right now */
} entry;

typedef struct {
    uint64_t handle;
    int alive, closed;
    uint64_t registered, invoked;
} reg_model;

static reg_model regs[MAX_REGS];
static int nregs;
static entry entries[MAX_ENTRIES];
static int nentries;
static uint64_t stale_handles[MAX_STALE];
static int nstale;
static int realtime;
static int depth;
static int stack_regs[MAX_DEPTH + 1]; /* registry of each entry on the stack */

static const uint8_t *in;
static size_t in_len, in_pos;
static int ops_done;

static unsigned byte(void) { return in_pos < in_len ? in[in_pos++] : 0; }
static uint64_t u64(void) {
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; ++i) v = v << 8 | byte();
    return v;
}

#define FAIL(...)                                                       \
    do {                                                                \
        fprintf(stderr, "fuzz_ops: model violation: " __VA_ARGS__);     \
        fprintf(stderr, " (op %d, depth %d, realtime %d)\n", ops_done, depth, realtime); \
        abort();                                                        \
    } while (0)

#define EXPECT(call, want)                                              \
    do {                                                                \
        cbreg_status got_ = (call), want_ = (want);                     \
        if (got_ != want_)                                              \
            FAIL("%s gave %s, want %s", #call, cbreg_status_str(got_), cbreg_status_str(want_)); \
    } while (0)

static cbreg_registry H(uint64_t h) { cbreg_registry r; r.handle = h; return r; }

/* ---- the entries' callback and release ---- */

static int pending_nested_ops;
static void run_ops(int budget);
static void post_delivered(const void *e, const cbreg_value *a, size_t n);

static uint32_t on_call(void *ctx, const cbreg_value *a, size_t n, cbreg_value *r) {
    entry *e = ctx;
    int ops = pending_nested_ops;
    (void)a; (void)n; (void)r;
    pending_nested_ops = 0;
    post_delivered(e, a, n);
    if (e->releases) FAIL("entry %#llx called after its release", (unsigned long long)e->id);
    e->calls++;
    e->inside++;
    stack_regs[++depth] = e->reg;
    if (ops > 0 && depth < MAX_DEPTH) run_ops(ops);
    depth--;
    e->inside--;
    return 0;
}

static void on_release(void *ctx) {
    entry *e = ctx;
    if (e->inside) FAIL("entry %#llx released while a call of it is inside", (unsigned long long)e->id);
    if (cbreg_thread_is_realtime()) FAIL("release of %#llx ran on a real-time thread", (unsigned long long)e->id);
    if (++e->releases > 1) FAIL("entry %#llx released twice", (unsigned long long)e->id);
}

/* ---- helpers over the model ---- */

static entry *pick_entry(void) { return nentries ? &entries[byte() % nentries] : NULL; }
static reg_model *pick_reg(void) { return nregs ? &regs[byte() % nregs] : NULL; }

static int on_stack(int reg) {
    int d;
    for (d = 1; d <= depth; ++d)
        if (stack_regs[d] == reg) return 1;
    return 0;
}

static uint64_t live_in(int reg) {
    uint64_t n = 0;
    int i;
    for (i = 0; i < nentries; ++i) n += entries[i].reg == reg && entries[i].live;
    return n;
}

static uint64_t released_in(int reg) {
    uint64_t n = 0;
    int i;
    for (i = 0; i < nentries; ++i) n += entries[i].reg == reg && entries[i].releases;
    return n;
}

static int id_is_live_somewhere(uint64_t id) {
    int i;
    for (i = 0; i < nentries; ++i)
        if (entries[i].id == id && entries[i].live) return 1;
    return 0;
}

/* After a free, or a collect/unregister_wait on a normal thread: every
 * retired entry of `reg` not running on this stack has been released. */
static void check_released(int reg, const char *after) {
    int i;
    for (i = 0; i < nentries; ++i) {
        entry *e = &entries[i];
        if (e->reg == reg && !e->live && !e->inside && e->releases != 1)
            FAIL("after %s, retired entry %#llx released %d times", after, (unsigned long long)e->id, e->releases);
    }
}

static void retire_all(int reg) {
    int i;
    for (i = 0; i < nentries; ++i)
        if (entries[i].reg == reg) entries[i].live = 0;
}

/* ---- post: a pump of the input's own ----
 *
 * Every entry's target is the pump. One sender (this thread), so the pump
 * delivers in posting order, and the model predicts each event: a drain
 * delivers it when its entry is live then (a one-shot is claimed by it),
 * and drops it otherwise. Each event carries its number; a second delivery
 * of one number is a violation.
 */

enum { MAX_EVENTS = MAX_OPS };
#define POST_MAGIC 0x7057u

static cbreg_target pump;
static int queued_entry[MAX_EVENTS], queued_head, queued_tail; /* the model's FIFO of entry indexes */
static int delivered_count[MAX_EVENTS], nposted;
static uint64_t model_delivered, model_dropped;

/* Called by on_call: a delivery carries (magic << 32 | number) first. */
static void post_delivered(const void *ctx, const cbreg_value *a, size_t n) {
    uint64_t word, number;
    (void)ctx;
    if (n < 1 || a[0].tag != CBREG_TAG_I64 || ((uint64_t)a[0].as.i64 >> 32) != POST_MAGIC) return;
    word = (uint64_t)a[0].as.i64;
    number = word & 0xffffffffu;
    if (number >= (uint64_t)nposted) FAIL("delivered event %llu, only %d posted", (unsigned long long)number, nposted);
    if (++delivered_count[number] > 1) FAIL("event %llu delivered twice", (unsigned long long)number);
    if (n >= 2 && (a[1].tag != CBREG_TAG_BYTES || a[1].len != sizeof word || memcmp(a[1].as.bytes, &word, sizeof word) != 0))
        FAIL("event %llu delivered with its bytes altered", (unsigned long long)number);
    if (n == 3 && (a[2].tag != CBREG_TAG_F64 || a[2].as.f64 != 0.5)) FAIL("event %llu: third argument altered", (unsigned long long)number);
}

static void op_post(void) {
    entry *e = pick_entry();
    reg_model *m = byte() % 8 ? (e ? &regs[e->reg] : NULL) : pick_reg();
    cbreg_value args[3];
    size_t n = 1 + byte() % 3;
    uint64_t word;
    cbreg_status s, want;
    if (e == NULL || m == NULL || nposted == MAX_EVENTS) return;
    word = (uint64_t)POST_MAGIC << 32 | (uint64_t)nposted;
    memset(args, 0, sizeof args);
    args[0].tag = CBREG_TAG_I64;
    args[0].as.i64 = (int64_t)word;
    args[1].tag = CBREG_TAG_BYTES;
    args[1].len = sizeof word;
    args[1].as.bytes = (const uint8_t *)&word;
    args[2].tag = CBREG_TAG_F64;
    args[2].as.f64 = 0.5;
    if (!m->alive) want = CBREG_STATUS_INVALID_REGISTRY;
    else if (m->closed) want = CBREG_STATUS_CLOSED;
    else if (m == &regs[e->reg] && e->live) want = CBREG_STATUS_OK;
    else want = CBREG_STATUS_NOT_FOUND;
    s = cbreg_post(H(m->handle), e->id, args, n, 0);
    if (s != want) FAIL("post of %#llx gave %s, want %s", (unsigned long long)e->id, cbreg_status_str(s), cbreg_status_str(want));
    if (s == CBREG_STATUS_OK) {
        queued_entry[queued_tail++] = (int)(e - entries);
        nposted++;
    }
}

static void op_post_bad(void) {
    entry *e = pick_entry();
    cbreg_value args[CBREG_MAX_ARGS + 1];
    if (e == NULL || !regs[e->reg].alive) return;
    memset(args, 0, sizeof args);
    switch (byte() % 3) {
    case 0: args[0].tag = 9 + byte(); EXPECT(cbreg_post(H(regs[e->reg].handle), e->id, args, 1, 0), CBREG_STATUS_INVALID_ARGUMENT); break;
    case 1: EXPECT(cbreg_post(H(regs[e->reg].handle), e->id, args, CBREG_MAX_ARGS + 1, 0), CBREG_STATUS_INVALID_ARGUMENT); break;
    default: EXPECT(cbreg_post(H(regs[e->reg].handle), e->id, args, 1, 4u << (byte() % 29)), CBREG_STATUS_INVALID_ARGUMENT); break;
    }
}

/* Drains up to `max`; the model takes as many from its FIFO. Inside a
 * drain's own callback a drain takes nothing (one drain at a time); the
 * pump is drained only from here, so `draining` says when. */
static int draining;

static void drain_up_to(size_t max) {
    size_t n = 12345, want = 0, k;
    if (draining) {
        EXPECT(cbreg_pump_drain(pump, max, &n), CBREG_STATUS_OK);
        if (n != 0) FAIL("a drain inside a drain took %zu events", n);
        return;
    }
    /* The model first: deliveries run the callbacks, which check nothing
     * of the model but the event numbers. */
    for (k = 0; k < max && queued_head + (int)k < queued_tail; ++k) {
        entry *e = &entries[queued_entry[queued_head + (int)k]];
        if (e->live && regs[e->reg].alive) {
            if (e->once) e->live = 0;
            regs[e->reg].invoked++;
            model_delivered++;
        } else {
            model_dropped++;
        }
        want++;
    }
    queued_head += (int)want;
    draining = 1;
    EXPECT(cbreg_pump_drain(pump, max, &n), CBREG_STATUS_OK);
    draining = 0;
    if (n != want) FAIL("drain took %zu events, the model %zu", n, want);
}

static void op_drain(void) { drain_up_to(byte() % 8); }

/* ---- operations ---- */

static void op_new(void) {
    cbreg_registry r;
    if (nregs == MAX_REGS) return;
    EXPECT(cbreg_registry_new(&r), CBREG_STATUS_OK);
    memset(&regs[nregs], 0, sizeof regs[nregs]);
    regs[nregs].handle = r.handle;
    regs[nregs].alive = 1;
    nregs++;
}

static void op_free(void) {
    reg_model *m = pick_reg();
    int k;
    if (m == NULL) return;
    k = (int)(m - regs);
    if (!m->alive) { EXPECT(cbreg_registry_free(H(m->handle)), CBREG_STATUS_INVALID_REGISTRY); return; }
    if (on_stack(k)) {
        /* Inside one of its own callbacks, at any depth. */
        EXPECT(cbreg_registry_free(H(m->handle)), CBREG_STATUS_WOULD_DEADLOCK);
        return;
    }
    EXPECT(cbreg_registry_free(H(m->handle)), CBREG_STATUS_OK);
    m->alive = 0;
    retire_all(k);
    check_released(k, "registry_free");
    if (nstale < MAX_STALE) stale_handles[nstale++] = m->handle;
}

static void op_register(int once) {
    reg_model *m = pick_reg();
    entry *e;
    uint64_t id = 0;
    cbreg_status s;
    if (m == NULL || nentries == MAX_ENTRIES) return;
    e = &entries[nentries];
    memset(e, 0, sizeof *e);
    e->reg = (int)(m - regs);
    e->once = once;
    s = cbreg_register(H(m->handle), on_call, e, on_release, once ? CBREG_ONCE : 0, &id);
    if (!m->alive) { if (s != CBREG_STATUS_INVALID_REGISTRY) FAIL("register on a freed registry gave %s", cbreg_status_str(s)); return; }
    if (m->closed) { if (s != CBREG_STATUS_CLOSED) FAIL("register after close gave %s", cbreg_status_str(s)); return; }
    if (s != CBREG_STATUS_OK) FAIL("register gave %s", cbreg_status_str(s));
    if (id == 0) FAIL("register gave id 0");
    e->id = id;
    e->live = 1;
    m->registered++;
    nentries++;
    EXPECT(cbreg_entry_set_target(H(m->handle), id, pump), CBREG_STATUS_OK);
}

static void op_register_bad(void) {
    reg_model *m = pick_reg();
    uint64_t id = 0;
    if (m == NULL || !m->alive) return;
    /* bits past CBREG_ONCE (1) and CBREG_PROMPT (4): 2, then 8 and up */
    EXPECT(cbreg_register(H(m->handle), on_call, NULL, on_release, byte() & 1 ? 2u : 8u << (byte() % 28), &id),
           CBREG_STATUS_INVALID_ARGUMENT);
    EXPECT(cbreg_register(H(m->handle), NULL, NULL, on_release, 0, &id), CBREG_STATUS_INVALID_ARGUMENT);
    EXPECT(cbreg_register(H(m->handle), on_call, NULL, on_release, 0, NULL), CBREG_STATUS_INVALID_ARGUMENT);
}

/* Invoke `e` in registry `via`; `nested` ops run inside its callback. */
static void do_invoke(entry *e, reg_model *via, int nested) {
    reg_model *own = &regs[e->reg];
    cbreg_status s;
    int expect_call;
    cbreg_value arg;
    memset(&arg, 0, sizeof arg);
    arg.tag = CBREG_TAG_F64;
    arg.as.f64 = 440.0;
    if (!via->alive) {
        EXPECT(cbreg_invoke(H(via->handle), e->id, &arg, 1, NULL), CBREG_STATUS_INVALID_REGISTRY);
        return;
    }
    expect_call = via == own && e->live;
    if (expect_call && e->once) e->live = 0; /* the invoker claims it */
    if (expect_call) own->invoked++;         /* counted as the call starts */
    pending_nested_ops = nested;
    {
        int calls = e->calls;
        s = cbreg_invoke(H(via->handle), e->id, &arg, 1, NULL);
        pending_nested_ops = 0;
        if (expect_call && s != CBREG_STATUS_OK) FAIL("invoke of live %#llx gave %s", (unsigned long long)e->id, cbreg_status_str(s));
        if (!expect_call && s != CBREG_STATUS_NOT_FOUND)
            FAIL("invoke of %s %#llx gave %s", via == own ? "retired" : "another registry's", (unsigned long long)e->id, cbreg_status_str(s));
        /* Nested operations may invoke it again from inside: at least once. */
        if (expect_call ? e->calls < calls + 1 : e->calls != calls)
            FAIL("invoke of %#llx ran its callback %d times", (unsigned long long)e->id, e->calls - calls);
    }
}

static void op_invoke(int nested) {
    entry *e = pick_entry();
    if (e == NULL) return;
    do_invoke(e, &regs[e->reg], nested ? (int)(byte() % 4) + 1 : 0);
}

static void op_invoke_elsewhere(void) {
    entry *e = pick_entry();
    reg_model *m = pick_reg();
    if (e == NULL || m == NULL || m == &regs[e->reg]) return;
    do_invoke(e, m, 0);
}

static void op_invoke_forged(void) {
    reg_model *m = pick_reg();
    uint64_t id;
    if (m == NULL || !m->alive) return;
    switch (byte() % 4) {
    case 0: id = 0; break;
    case 1: id = u64(); break;
    case 2: id = nentries ? entries[byte() % nentries].id ^ ((uint64_t)1 << (byte() % 64)) : 1; break;
    default: id = nentries ? entries[byte() % nentries].id + ((uint64_t)1 << 32) : 2; break;
    }
    if (id_is_live_somewhere(id)) return;
    EXPECT(cbreg_invoke(H(m->handle), id, NULL, 0, NULL), CBREG_STATUS_NOT_FOUND);
    EXPECT(cbreg_unregister(H(m->handle), id), CBREG_STATUS_NOT_FOUND);
}

static void op_stale_handle(void) {
    uint64_t h = nstale ? stale_handles[byte() % nstale] : (u64() | 1);
    cbreg_stats st;
    size_t n;
    int i;
    for (i = 0; i < nregs; ++i)
        if (regs[i].alive && regs[i].handle == h) return;
    if (h == cbreg_default().handle) return;
    EXPECT(cbreg_invoke(H(h), nentries ? entries[0].id : 1, NULL, 0, NULL), CBREG_STATUS_INVALID_REGISTRY);
    EXPECT(cbreg_unregister(H(h), nentries ? entries[0].id : 1), CBREG_STATUS_INVALID_REGISTRY);
    EXPECT(cbreg_clear(H(h), &n), CBREG_STATUS_INVALID_REGISTRY);
    EXPECT(cbreg_stats_get(H(h), &st), CBREG_STATUS_INVALID_REGISTRY);
}

static void op_bad_args(void) {
    entry *e = pick_entry();
    cbreg_value args[CBREG_MAX_ARGS + 1];
    int calls;
    if (e == NULL || !regs[e->reg].alive || !e->live) return;
    memset(args, 0, sizeof args);
    calls = e->calls;
    switch (byte() % 3) {
    case 0: args[0].tag = 9 + byte(); EXPECT(cbreg_invoke(H(regs[e->reg].handle), e->id, args, 1, NULL), CBREG_STATUS_INVALID_ARGUMENT); break;
    case 1: EXPECT(cbreg_invoke(H(regs[e->reg].handle), e->id, args, CBREG_MAX_ARGS + 1, NULL), CBREG_STATUS_INVALID_ARGUMENT); break;
    default: EXPECT(cbreg_invoke(H(regs[e->reg].handle), e->id, NULL, 1 + byte(), NULL), CBREG_STATUS_INVALID_ARGUMENT); break;
    }
    if (e->calls != calls) FAIL("a rejected invoke ran the callback");
}

static void op_unregister(int wait) {
    entry *e = pick_entry();
    reg_model *m;
    cbreg_status s;
    if (e == NULL) return;
    m = &regs[e->reg];
    s = wait ? cbreg_unregister_wait(H(m->handle), e->id) : cbreg_unregister(H(m->handle), e->id);
    if (!m->alive) {
        if (s != CBREG_STATUS_INVALID_REGISTRY) FAIL("unregister%s on a freed registry gave %s", wait ? "_wait" : "", cbreg_status_str(s));
        return;
    }
    if (wait && e->inside) {
        /* Waiting on itself: the entry is running on this very stack. */
        if (e->live && s != CBREG_STATUS_WOULD_DEADLOCK) FAIL("unregister_wait on itself gave %s", cbreg_status_str(s));
        if (!e->live && s != CBREG_STATUS_WOULD_DEADLOCK && s != CBREG_STATUS_NOT_FOUND)
            FAIL("unregister_wait on itself (retired) gave %s", cbreg_status_str(s));
        return;
    }
    if (e->live) {
        if (s != CBREG_STATUS_OK) FAIL("unregister%s of live %#llx gave %s", wait ? "_wait" : "", (unsigned long long)e->id, cbreg_status_str(s));
        e->live = 0;
        if (wait && !realtime && e->releases != 1) FAIL("unregister_wait returned before the release ran");
    } else if (s != CBREG_STATUS_NOT_FOUND) {
        FAIL("unregister%s of retired %#llx gave %s", wait ? "_wait" : "", (unsigned long long)e->id, cbreg_status_str(s));
    }
}

static void op_clear(int close) {
    reg_model *m = pick_reg();
    size_t n = 12345;
    uint64_t want;
    if (m == NULL) return;
    if (!m->alive) {
        EXPECT(close ? cbreg_close(H(m->handle), &n) : cbreg_clear(H(m->handle), &n), CBREG_STATUS_INVALID_REGISTRY);
        return;
    }
    want = live_in((int)(m - regs));
    EXPECT(close ? cbreg_close(H(m->handle), &n) : cbreg_clear(H(m->handle), &n), CBREG_STATUS_OK);
    if (n != want) FAIL("%s counted %zu entries, the model has %llu live", close ? "close" : "clear", n, (unsigned long long)want);
    retire_all((int)(m - regs));
    if (close) m->closed = 1;
}

static void op_collect(void) {
    reg_model *m = pick_reg();
    size_t n;
    if (m == NULL) return;
    if (!m->alive) { EXPECT(cbreg_collect(H(m->handle), &n), CBREG_STATUS_INVALID_REGISTRY); return; }
    EXPECT(cbreg_collect(H(m->handle), &n), CBREG_STATUS_OK);
    if (!realtime) check_released((int)(m - regs), "collect");
}

static void op_stats(void) {
    reg_model *m = pick_reg();
    cbreg_stats st;
    int k;
    if (m == NULL || !m->alive) return;
    k = (int)(m - regs);
    EXPECT(cbreg_stats_get(H(m->handle), &st), CBREG_STATUS_OK);
    if (st.live != live_in(k)) FAIL("stats.live %llu, model %llu", (unsigned long long)st.live, (unsigned long long)live_in(k));
    if (st.registered != m->registered) FAIL("stats.registered %llu, model %llu", (unsigned long long)st.registered, (unsigned long long)m->registered);
    if (st.invoked != m->invoked) FAIL("stats.invoked %llu, model %llu", (unsigned long long)st.invoked, (unsigned long long)m->invoked);
    if (st.released != released_in(k)) FAIL("stats.released %llu, model %llu", (unsigned long long)st.released, (unsigned long long)released_in(k));
    if (st.released + st.pending + st.leaked + st.live > st.registered)
        FAIL("stats: released %llu + pending %llu + live %llu > registered %llu", (unsigned long long)st.released,
             (unsigned long long)st.pending, (unsigned long long)st.live, (unsigned long long)st.registered);
}

static void op_realtime(void) {
    realtime = (int)(byte() & 1);
    EXPECT(cbreg_thread_set_realtime(realtime != 0), CBREG_STATUS_OK);
    if (cbreg_thread_is_realtime() != (realtime != 0)) FAIL("thread_is_realtime disagrees");
}

static void run_ops(int budget) {
    while (budget-- > 0 && in_pos < in_len && ops_done < MAX_OPS) {
        ops_done++;
        switch (byte() % 24) {
        case 0: op_new(); break;
        case 1: op_free(); break;
        case 2: case 3: op_register(0); break;
        case 4: op_register(1); break;
        case 5: op_register_bad(); break;
        case 6: case 7: op_invoke(0); break;
        case 8: case 9: op_invoke(1); break;
        case 10: op_invoke_elsewhere(); break;
        case 11: op_invoke_forged(); break;
        case 12: op_stale_handle(); break;
        case 13: op_bad_args(); break;
        case 14: op_unregister(0); break;
        case 15: op_unregister(1); break;
        case 16: op_clear(byte() & 1); break;
        case 17: op_collect(); break;
        case 18: op_stats(); break;
        case 20: case 21: op_post(); break;
        case 22: op_drain(); break;
        case 23: op_post_bad(); break;
        default: op_realtime(); break;
        }
    }
}

static void post_start(void) {
    EXPECT(cbreg_pump_new(NULL, &pump), CBREG_STATUS_OK);
    /* Claimed here, on a normal thread: a real-time post then finds it. */
    EXPECT(cbreg_post_reserve(pump), CBREG_STATUS_OK);
    queued_head = queued_tail = nposted = 0;
    memset(delivered_count, 0, sizeof delivered_count);
    model_delivered = model_dropped = 0;
    draining = 0;
}

/* After every registry is freed: what is left is dropped; then the
 * counters must account for every post, as the model does. */
static void post_finish(void) {
    cbreg_post_stats st;
    int i;
    uint64_t delivered = 0;
    drain_up_to((size_t)(queued_tail - queued_head));
    EXPECT(cbreg_post_stats_get(pump, &st), CBREG_STATUS_OK);
    for (i = 0; i < nposted; ++i) delivered += (uint64_t)delivered_count[i];
    if (delivered != model_delivered) FAIL("%llu events delivered, the model %llu", (unsigned long long)delivered, (unsigned long long)model_delivered);
    if (st.pending != 0 || st.posted != (uint64_t)nposted || st.delivered != model_delivered ||
        st.dropped_stale + st.dropped_closed != model_dropped || st.dropped_full + st.dropped_fork + st.coalesced != 0)
        FAIL("pump counters: posted %llu delivered %llu stale %llu closed %llu pending %llu; model posted %d delivered %llu dropped %llu",
             (unsigned long long)st.posted, (unsigned long long)st.delivered, (unsigned long long)st.dropped_stale,
             (unsigned long long)st.dropped_closed, (unsigned long long)st.pending, nposted,
             (unsigned long long)model_delivered, (unsigned long long)model_dropped);
    EXPECT(cbreg_pump_free(pump), CBREG_STATUS_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int i;
    in = data;
    in_len = size;
    in_pos = 0;
    ops_done = 0;
    nregs = nentries = nstale = 0;
    depth = 0;
    realtime = 0;
    post_start();
    op_new(); /* every input starts with one registry */
    run_ops(MAX_OPS);

    /* Tear down from outside every callback, on a normal thread. */
    realtime = 0;
    cbreg_thread_set_realtime(false);
    for (i = 0; i < nregs; ++i)
        if (regs[i].alive) {
            EXPECT(cbreg_registry_free(H(regs[i].handle)), CBREG_STATUS_OK);
            regs[i].alive = 0;
        }
    post_finish();
    for (i = 0; i < nentries; ++i)
        if (entries[i].releases != 1)
            FAIL("at the end, entry %#llx (%s) released %d times", (unsigned long long)entries[i].id,
                 entries[i].once ? "one-shot" : "persistent", entries[i].releases);
    return 0;
}
