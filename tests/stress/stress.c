/*
 * Stress and accounting job for cbreg (docs/contract.md 4.3, 4.4, 4.4a).
 *
 * Many threads work the C ABI at once: registrations (persistent and
 * one-shot), invokes nested deeper than the six hazard cells, unregister,
 * unregister_wait, clear, collect, registries freed and recreated, bursts of
 * short-lived threads past the 256-record pool, threads marked real-time,
 * and forks whose children do a few operations and report by exit code.
 *
 * Every entry's context is a record in memory, so the job can check the
 * guarantees directly:
 *   - every release runs exactly once (a second release, or an entry still
 *     unreleased when everything is torn down, is a violation);
 *   - no release runs while a call of that entry is inside (the release
 *     checks the entry's in-flight count; the callback checks its canary);
 *   - no release runs on a real-time thread;
 *   - every status is one the contract allows for that call;
 *   - every posted event is delivered at most once, in order per sender,
 *     and every post is accounted for (the post job, below).
 *
 * Usage: stress [seconds] [threads]   (defaults 30, 32)
 * Prints threads, operations, forks, seconds, violations; exits 1 on any
 * violation, 2 if the watchdog fires (a hang).
 */

#define _GNU_SOURCE
#include "cbreg.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define CAS(p, expect, desired) \
    __atomic_compare_exchange_n((p), (expect), (desired), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

enum { REGISTRIES = 8, ENTRIES_PER_THREAD = 1024, SHARED_IDS = 4096, MAX_DEPTH = 9,
       BURST_THREADS = 300, MAX_WORKERS = 256 };

/* Entry states. */
enum { FREE = 0, REGISTERING, REGISTERED, RELEASED };
#define CANARY_ALIVE 0x5eed5eedu
#define CANARY_DEAD 0xdeadbeefu

typedef struct {
    int state;
    unsigned canary;
    int inside;
    int owner_realtime;
    uint64_t handle, id;
} entry;

/* ---- bookkeeping ---- */

static int g_stop;
static unsigned long g_ops, g_violations, g_forks, g_registered, g_released, g_burst_threads;
static int g_threads_started;
/* In a fork child: parent entries whose calls were inside threads that do
 * not exist here are rightly released; the child reports by exit code. */
static int g_in_child;

static void violation(const char *fmt, unsigned long long a, unsigned long long b) {
    unsigned long n;
    if (g_in_child) return;
    n = ADD(&g_violations, 1);
    if (n <= 20) {
        fprintf(stderr, "VIOLATION: ");
        fprintf(stderr, fmt, a, b);
        fprintf(stderr, "\n");
    }
}

static __thread int t_realtime;
static __thread int t_depth;
static __thread int t_in_callback;
static __thread uint64_t t_rng;

static uint64_t rnd(void) {
    t_rng ^= t_rng << 13;
    t_rng ^= t_rng >> 7;
    t_rng ^= t_rng << 17;
    return t_rng;
}

/* Registries: slot 0 is the default one, never freed. */
static uint64_t g_regs[REGISTRIES];
/* Recently registered (handle, id) pairs; torn pairs only cost a NOT_FOUND. */
static uint64_t g_shared_handle[SHARED_IDS], g_shared_id[SHARED_IDS];

static cbreg_registry reg_of(uint64_t handle) {
    cbreg_registry r;
    r.handle = handle;
    return r;
}

static int status_in(cbreg_status s, unsigned allowed_mask) { return s < 32 && ((1u << s) & allowed_mask); }
#define BIT(s) (1u << (s))

/* ---- callbacks ---- */

static void invoke_random(void);

static uint32_t on_call(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    entry *e = ctx;
    (void)args; (void)nargs; (void)ret;
    if (LOAD(&e->canary) != CANARY_ALIVE) violation("callback ran on a released entry (id %#llx, state %llu)", e->id, LOAD(&e->state));
    ADD(&e->inside, 1);
    t_in_callback++;
    /* Nest: deeper than the hazard cells, sometimes. */
    if (t_depth < MAX_DEPTH && (rnd() % 4) != 0) invoke_random();
    if (rnd() % 64 == 0) { /* a callback may unregister anything, itself included */
        cbreg_status s = cbreg_unregister(reg_of(e->handle), e->id);
        if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_NOT_FOUND) | BIT(CBREG_STATUS_INVALID_REGISTRY)))
            violation("unregister inside a callback gave %llu (id %#llx)", s, e->id);
    }
    if (LOAD(&e->canary) != CANARY_ALIVE) violation("entry released during its own call (id %#llx, state %llu)", e->id, LOAD(&e->state));
    t_in_callback--;
    ADD(&e->inside, -1);
    return 0;
}

static void on_release(void *ctx) {
    entry *e = ctx;
    int expect = REGISTERED;
    if (t_realtime) violation("release ran on a real-time thread (id %#llx)%llu", e->id, 0);
    if (LOAD(&e->inside) != 0) violation("release while %llu call(s) inside (id %#llx)", LOAD(&e->inside), e->id);
    STORE(&e->canary, CANARY_DEAD);
    if (!CAS(&e->state, &expect, RELEASED))
        violation("second release, or release of an entry never registered (id %#llx, state %llu)", e->id, expect);
    ADD(&g_released, 1);
}

static void invoke_random(void) {
    unsigned k = (unsigned)(rnd() % SHARED_IDS);
    uint64_t h = LOAD(&g_shared_handle[k]), id = LOAD(&g_shared_id[k]);
    cbreg_status s;
    if (rnd() % 16 == 0) id ^= (uint64_t)1 << 40; /* a forged id */
    t_depth++;
    s = cbreg_invoke(reg_of(h), id, NULL, 0, NULL);
    t_depth--;
    /* A handle of 0 (nothing published yet) is INVALID_REGISTRY too. */
    if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_NOT_FOUND) | BIT(CBREG_STATUS_INVALID_REGISTRY)))
        violation("invoke gave %llu (id %#llx)", s, id);
}

/* ---- worker threads ---- */

typedef struct {
    int index;
    entry entries[ENTRIES_PER_THREAD];
} worker;

static entry *free_entry(worker *w) {
    int tries;
    for (tries = 0; tries < 8; ++tries) {
        entry *e = &w->entries[rnd() % ENTRIES_PER_THREAD];
        int s = LOAD(&e->state);
        if ((s == FREE || s == RELEASED) && CAS(&e->state, &s, REGISTERING)) return e;
    }
    return NULL;
}

static void op_register(worker *w) {
    entry *e = free_entry(w);
    unsigned k = (unsigned)(rnd() % REGISTRIES);
    uint64_t h = LOAD(&g_regs[k]), id = 0;
    uint32_t flags = rnd() % 3 == 0 ? CBREG_ONCE : 0;
    cbreg_status s;
    if (e == NULL) return;
    e->handle = h;
    e->id = 0;
    STORE(&e->canary, CANARY_ALIVE);
    STORE(&e->state, REGISTERED); /* before register: a release may come at once */
    s = cbreg_register(reg_of(h), on_call, e, on_release, flags, &id);
    if (s == CBREG_STATUS_OK) {
        STORE(&e->id, id);
        ADD(&g_registered, 1);
        k = (unsigned)(rnd() % SHARED_IDS);
        STORE(&g_shared_handle[k], h);
        STORE(&g_shared_id[k], id);
    } else if (s == CBREG_STATUS_CLOSED || s == CBREG_STATUS_INVALID_REGISTRY) {
        /* Its registry is being freed: nothing was kept. */
        STORE(&e->canary, CANARY_DEAD);
        STORE(&e->state, FREE);
    } else {
        violation("register gave %llu (handle %#llx)", s, h);
        STORE(&e->state, FREE);
    }
}

static entry *registered_entry(worker *w) {
    entry *e = &w->entries[rnd() % ENTRIES_PER_THREAD];
    return LOAD(&e->state) == REGISTERED && LOAD(&e->id) != 0 ? e : NULL;
}

static void op_unregister(worker *w, int wait) {
    entry *e = registered_entry(w);
    cbreg_status s;
    unsigned allowed = BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_NOT_FOUND) | BIT(CBREG_STATUS_INVALID_REGISTRY);
    if (e == NULL) return;
    s = wait ? cbreg_unregister_wait(reg_of(e->handle), e->id) : cbreg_unregister(reg_of(e->handle), e->id);
    if (!status_in(s, allowed)) violation(wait ? "unregister_wait gave %llu (id %#llx)" : "unregister gave %llu (id %#llx)", s, e->id);
    /* Returning OK from unregister_wait on a normal thread: released by now. */
    if (wait && s == CBREG_STATUS_OK && !t_realtime && LOAD(&e->state) != RELEASED)
        violation("unregister_wait returned OK before the release ran (id %#llx)%llu", e->id, 0);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    t_rng = 0x9e3779b97f4a7c15ull * (uint64_t)(w->index + 1);
    if (w->index % 8 == 7) {
        cbreg_thread_set_realtime(true);
        t_realtime = 1;
    }
    ADD(&g_threads_started, 1);
    while (!LOAD(&g_stop)) {
        unsigned op = (unsigned)(rnd() % 100);
        if (op < 30) op_register(w);
        else if (op < 80) invoke_random();
        else if (op < 90) op_unregister(w, 0);
        else if (op < 97) op_unregister(w, 1);
        else if (op < 98) {
            cbreg_status s = cbreg_collect(reg_of(LOAD(&g_regs[rnd() % REGISTRIES])), NULL);
            if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_INVALID_REGISTRY))) violation("collect gave %llu%llu", s, 0);
        } else if (op < 99 && rnd() % 20 == 0) {
            cbreg_status s = cbreg_clear(reg_of(LOAD(&g_regs[rnd() % REGISTRIES])), NULL);
            if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_INVALID_REGISTRY))) violation("clear gave %llu%llu", s, 0);
        } else {
            cbreg_stats st;
            cbreg_status s = cbreg_stats_get(reg_of(LOAD(&g_regs[rnd() % REGISTRIES])), &st);
            if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_INVALID_REGISTRY))) violation("stats_get gave %llu%llu", s, 0);
        }
        ADD(&g_ops, 1);
    }
    return NULL;
}

/* ---- registries freed and recreated ---- */

static void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

static void *reaper_main(void *arg) {
    (void)arg;
    t_rng = 0x1234567;
    while (!LOAD(&g_stop)) {
        unsigned k = 1 + (unsigned)(rnd() % (REGISTRIES - 1));
        uint64_t old = LOAD(&g_regs[k]);
        cbreg_registry fresh;
        cbreg_status s;
        if (rnd() % 2) {
            size_t n;
            s = cbreg_close(reg_of(old), &n);
            if (s != CBREG_STATUS_OK) violation("close gave %llu (handle %#llx)", s, old);
        }
        s = cbreg_registry_free(reg_of(old));
        if (s != CBREG_STATUS_OK) violation("registry_free gave %llu (handle %#llx)", s, old);
        s = cbreg_registry_new(&fresh);
        if (s != CBREG_STATUS_OK) violation("registry_new gave %llu%llu", s, 0);
        else STORE(&g_regs[k], fresh.handle);
        ADD(&g_ops, 3);
        sleep_ms(20);
    }
    return NULL;
}

/* ---- bursts of short-lived threads ---- */

static void *burst_thread(void *arg) {
    int i;
    (void)arg;
    t_rng = (uint64_t)(uintptr_t)&i | 1;
    for (i = 0; i < 8; ++i) invoke_random();
    ADD(&g_ops, 8);
    return NULL;
}

static void *burster_main(void *arg) {
    pthread_attr_t attr;
    pthread_t ts[BURST_THREADS];
    (void)arg;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    while (!LOAD(&g_stop)) {
        int i, n = 0;
        for (i = 0; i < BURST_THREADS; ++i)
            if (pthread_create(&ts[n], &attr, burst_thread, NULL) == 0) n++;
        for (i = 0; i < n; ++i) pthread_join(ts[i], NULL);
        ADD(&g_burst_threads, (unsigned long)n);
        sleep_ms(200);
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

/* ---- forks ---- */

static int child_released;
static void child_release(void *ctx) { (void)ctx; child_released++; }
static uint32_t child_call(void *ctx, const cbreg_value *a, size_t n, cbreg_value *r) {
    (void)ctx; (void)a; (void)n; (void)r;
    return 0;
}

/* In the child: the parent's other threads are gone. Exit code = first
 * failed check. */
static int child_checks(void) {
    cbreg_registry d = cbreg_default(), mine;
    uint64_t id;
    if (cbreg_register(d, child_call, NULL, child_release, 0, &id) != CBREG_STATUS_OK) return 10;
    if (cbreg_invoke(d, id, NULL, 0, NULL) != CBREG_STATUS_OK) return 11;
    if (cbreg_unregister_wait(d, id) != CBREG_STATUS_OK || child_released != 1) return 12;
    if (cbreg_collect(d, NULL) != CBREG_STATUS_OK) return 13;
    if (cbreg_registry_new(&mine) != CBREG_STATUS_OK) return 14;
    if (cbreg_register(mine, child_call, NULL, child_release, CBREG_ONCE, &id) != CBREG_STATUS_OK) return 15;
    if (cbreg_invoke(mine, id, NULL, 0, NULL) != CBREG_STATUS_OK) return 16;
    if (cbreg_invoke(mine, id, NULL, 0, NULL) != CBREG_STATUS_NOT_FOUND) return 17;
    if (cbreg_registry_free(mine) != CBREG_STATUS_OK || child_released != 2) return 18;
    return 0;
}

static void *forker_main(void *arg) {
    (void)arg;
    while (!LOAD(&g_stop)) {
        int wstatus = 0;
        pid_t pid;
        sleep_ms(300);
        pid = fork();
        if (pid < 0) { violation("fork failed%llu%llu", 0, 0); continue; }
        if (pid == 0) {
            g_in_child = 1;
            signal(SIGALRM, SIG_DFL); /* a hung child dies of SIGALRM */
            alarm(10);
            _exit(child_checks());
        }
        ADD(&g_forks, 1);
        if (waitpid(pid, &wstatus, 0) != pid) violation("waitpid failed%llu%llu", 0, 0);
        else if (WIFSIGNALED(wstatus))
            violation(WTERMSIG(wstatus) == SIGALRM ? "fork child hung (signal %llu)%llu" : "fork child died of signal %llu%llu",
                      (unsigned long long)WTERMSIG(wstatus), 0);
        else if (WEXITSTATUS(wstatus) != 0) violation("fork child failed check %llu%llu", (unsigned long long)WEXITSTATUS(wstatus), 0);
    }
    return NULL;
}

/* ---- signals: emit while other threads subscribe and unsubscribe ---- */

/* Two emitters (one real-time) emit on one signal while a changer thread
 * subscribes and unsubscribes entries (persistent and one-shot; some
 * unsubscribe themselves from inside their call, some are unregistered
 * through the registry) in a loop. Checked: no call on a released entry,
 * no release while a call is inside or on the real-time thread, every
 * subscriber released exactly once by the end, every emit OK. */

enum { SIG_SUBS = 512 };

typedef struct {
    int state;
    unsigned canary;
    int inside;
    int self_removing;
    uint64_t id;
} sig_sub;

static cbreg_registry g_sig_reg;
static cbreg_signal g_sig;
static sig_sub g_sig_subs[SIG_SUBS];
static unsigned long g_sig_emits, g_sig_calls, g_sig_registered, g_sig_released;

static uint32_t sig_on_call(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    sig_sub *e = ctx;
    (void)ret;
    if (LOAD(&e->canary) != CANARY_ALIVE) violation("signal: call on a released subscriber (id %#llx)%llu", e->id, 0);
    ADD(&e->inside, 1);
    ADD(&g_sig_calls, 1);
    if (nargs != 1 || args[0].tag != CBREG_TAG_F64) violation("signal: arguments changed (nargs %llu)%llu", nargs, 0);
    if (LOAD(&e->self_removing) && (rnd() & 7) == 0) {
        cbreg_status s = cbreg_signal_unsubscribe(g_sig, LOAD(&e->id));
        if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_NOT_FOUND)))
            violation("signal: unsubscribe inside its call gave %llu (id %#llx)", s, e->id);
    }
    ADD(&e->inside, -1);
    return CBREG_STATUS_OK;
}

static void sig_on_release(void *ctx) {
    sig_sub *e = ctx;
    int expect = REGISTERED;
    if (t_realtime) violation("signal: release ran on a real-time thread (id %#llx)%llu", e->id, 0);
    if (LOAD(&e->inside) != 0) violation("signal: release while %llu call(s) inside (id %#llx)", LOAD(&e->inside), e->id);
    STORE(&e->canary, CANARY_DEAD);
    if (!CAS(&e->state, &expect, RELEASED)) violation("signal: second release (id %#llx, state %llu)", e->id, expect);
    ADD(&g_sig_released, 1);
}

static void *signal_emitter_main(void *arg) {
    cbreg_value x = {0};
    t_rng = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
    if (arg != NULL) {
        cbreg_thread_set_realtime(true);
        t_realtime = 1;
    }
    x.tag = CBREG_TAG_F64;
    x.as.f64 = 440.0;
    while (!LOAD(&g_stop)) {
        cbreg_emit_report report;
        cbreg_status s = cbreg_signal_emit(g_sig, &x, 1, &report);
        if (s != CBREG_STATUS_OK || report.failed != 0)
            violation("signal: emit gave %llu, %llu failed", s, (unsigned long long)report.failed);
        ADD(&g_sig_emits, 1);
    }
    return NULL;
}

static void *signal_changer_main(void *arg) {
    (void)arg;
    t_rng = 0x2545f4914f6cdd1dull;
    while (!LOAD(&g_stop)) {
        sig_sub *e = &g_sig_subs[rnd() % SIG_SUBS];
        int state = LOAD(&e->state);
        if (state == FREE || state == RELEASED) {
            uint64_t id = 0;
            uint32_t flags = (rnd() & 3) == 0 ? CBREG_ONCE : 0;
            cbreg_status s;
            STORE(&e->state, REGISTERING);
            STORE(&e->canary, CANARY_ALIVE);
            STORE(&e->self_removing, (int)((rnd() & 3) == 0));
            s = cbreg_register(g_sig_reg, sig_on_call, e, sig_on_release, flags, &id);
            if (s != CBREG_STATUS_OK) {
                violation("signal: register gave %llu%llu", s, 0);
                STORE(&e->state, FREE);
                continue;
            }
            STORE(&e->id, id);
            STORE(&e->state, REGISTERED);
            ADD(&g_sig_registered, 1);
            s = cbreg_signal_subscribe(g_sig, id);
            /* NOT_FOUND: a one-shot another emit cannot have run yet is
             * still live, so only OK is right here. */
            if (s != CBREG_STATUS_OK) violation("signal: subscribe gave %llu (id %#llx)", s, id);
        } else if (state == REGISTERED) {
            cbreg_status s = (rnd() & 3) == 0 ? cbreg_unregister(g_sig_reg, LOAD(&e->id))
                                               : cbreg_signal_unsubscribe(g_sig, LOAD(&e->id));
            if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_NOT_FOUND)))
                violation("signal: unsubscribe gave %llu (id %#llx)", s, e->id);
            if ((rnd() & 15) == 0) cbreg_collect(g_sig_reg, NULL);
        }
    }
    return NULL;
}

/* Starts the signal threads (three, in `threads`). */
static void signal_stress_start(pthread_t threads[3]) {
    if (cbreg_registry_new(&g_sig_reg) != CBREG_STATUS_OK || cbreg_signal_new(g_sig_reg, &g_sig) != CBREG_STATUS_OK) {
        violation("signal: set-up failed%llu%llu", 0, 0);
        return;
    }
    pthread_create(&threads[0], NULL, signal_emitter_main, NULL);
    pthread_create(&threads[1], NULL, signal_emitter_main, (void *)1);
    pthread_create(&threads[2], NULL, signal_changer_main, NULL);
}

/* Joins them, frees the signal and its registry (which waits for every
 * release), then checks the accounting. */
static void signal_stress_finish(pthread_t threads[3]) {
    int i;
    for (i = 0; i < 3; ++i) pthread_join(threads[i], NULL);
    if (cbreg_signal_free(g_sig) != CBREG_STATUS_OK) violation("signal: free failed%llu%llu", 0, 0);
    if (cbreg_registry_free(g_sig_reg) != CBREG_STATUS_OK) violation("signal: registry_free failed%llu%llu", 0, 0);
    for (i = 0; i < SIG_SUBS; ++i)
        if (LOAD(&g_sig_subs[i].state) == REGISTERED || LOAD(&g_sig_subs[i].state) == REGISTERING)
            violation("signal: subscriber never released (id %#llx)%llu", g_sig_subs[i].id, 0);
    if (LOAD(&g_sig_registered) != LOAD(&g_sig_released))
        violation("signal: registered %llu subscribers, %llu releases ran", LOAD(&g_sig_registered), LOAD(&g_sig_released));
    printf("stress: signal emits %lu, calls %lu, subscribers %lu\n", g_sig_emits, g_sig_calls, g_sig_registered);
}

/* ---- post: exactly-once delivery accounting ----
 *
 * Senders post to entries of a registry of the post job's own, half of them
 * on the native dispatcher and half on a pump a drainer thread drains,
 * while a churner unregisters and registers them again (some one-shot) and
 * now and then clears the registry. Each event carries its sender and a
 * sequence number per (sender, target): a target delivers one sender's
 * events in order, so a delivery whose number is not above the last one
 * delivered is an event delivered twice (or out of order). At the end,
 * with nothing pending, each target's counters must account for every
 * post it took (posted = delivered + every dropped count + coalesced), its
 * deliveries must be the callbacks that ran for its entries, and the
 * targets together must have taken what the senders were told OK or FULL.
 * (A post racing with the unregister of its entry may land on the target
 * of the entry that takes the slot next, where it is dropped as stale: so
 * the senders' counts are compared with the sum.)
 */

enum { POST_SENDERS = 4, POST_ENTRIES = 64, POST_TARGETS = 2 };
#define POST_SEQ_BITS 40

static uint64_t g_post_reg;
static cbreg_target g_post_targets[POST_TARGETS]; /* the dispatcher, a pump */
static uint64_t g_post_id[POST_ENTRIES];           /* 0 while none; entry k's target is k % 2 */
static unsigned long g_post_ok[POST_TARGETS], g_post_full[POST_TARGETS], g_post_calls[POST_TARGETS];
static unsigned long g_post_not_found;
static uint64_t g_post_last[POST_SENDERS][POST_TARGETS];
static cbreg_post_stats g_post_base[POST_TARGETS];
static int g_post_drainer_stop;
static pthread_t g_post_threads[POST_SENDERS], g_post_churner, g_post_drainer;

static uint32_t post_on_call(void *ctx, const cbreg_value *args, size_t nargs, cbreg_value *ret) {
    unsigned t = (unsigned)((uintptr_t)ctx % POST_TARGETS);
    uint64_t word, sender, seq, last;
    (void)ret;
    ADD(&g_post_calls[t], 1);
    if (nargs < 1 || args[0].tag != CBREG_TAG_I64) {
        violation("post delivered %llu arguments, the first tagged %llu", nargs, nargs ? args[0].tag : 0);
        return 0;
    }
    word = (uint64_t)args[0].as.i64;
    sender = word >> POST_SEQ_BITS;
    seq = word & (((uint64_t)1 << POST_SEQ_BITS) - 1);
    if (nargs == 2 && (args[1].tag != CBREG_TAG_BYTES || args[1].len != sizeof word ||
                       memcmp(args[1].as.bytes, &word, sizeof word) != 0))
        violation("post delivered the bytes of event %#llx altered (len %llu)", word, args[1].len);
    if (sender >= POST_SENDERS) {
        violation("post delivered an event of no sender (%#llx)%llu", word, 0);
        return 0;
    }
    /* One consumer per target: only it writes its column. */
    last = LOAD(&g_post_last[sender][t]);
    if (seq <= last) violation("post event delivered twice or out of order (seq %llu after %llu)", seq, last);
    STORE(&g_post_last[sender][t], seq);
    return 0;
}

static void *post_sender_main(void *arg) {
    unsigned me = (unsigned)(uintptr_t)arg, t;
    uint64_t seq[POST_TARGETS] = {0, 0};
    t_rng = 0x51ed2701ull * (me + 1);
    for (t = 0; t < POST_TARGETS; ++t)
        if (cbreg_post_reserve(g_post_targets[t]) != CBREG_STATUS_OK) violation("post_reserve failed%llu%llu", 0, 0);
    while (!LOAD(&g_stop)) {
        unsigned k = (unsigned)(rnd() % POST_ENTRIES);
        uint64_t id = LOAD(&g_post_id[k]), word;
        cbreg_value args[2];
        size_t n = rnd() % 4 == 0 ? 2 : 1;
        uint32_t flags = rnd() % 8 == 0 ? CBREG_POST_COALESCE : 0;
        cbreg_status s;
        t = k % POST_TARGETS;
        if (id == 0) continue;
        word = (uint64_t)me << POST_SEQ_BITS | ++seq[t];
        memset(args, 0, sizeof args);
        args[0].tag = CBREG_TAG_I64;
        args[0].as.i64 = (int64_t)word;
        args[1].tag = CBREG_TAG_BYTES;
        args[1].len = sizeof word;
        args[1].as.bytes = (const uint8_t *)&word;
        s = cbreg_post(reg_of(g_post_reg), id, args, n, flags);
        if (s == CBREG_STATUS_OK) ADD(&g_post_ok[t], 1);
        else if (s == CBREG_STATUS_FULL) ADD(&g_post_full[t], 1);
        else if (s == CBREG_STATUS_NOT_FOUND) ADD(&g_post_not_found, 1);
        else violation("post gave %llu (id %#llx)", s, id);
    }
    return NULL;
}

static void post_register(unsigned k) {
    uint64_t id = 0;
    cbreg_status s = cbreg_register(reg_of(g_post_reg), post_on_call, (void *)(uintptr_t)k, NULL,
                                    rnd() % 4 == 0 ? CBREG_ONCE : 0, &id);
    if (s != CBREG_STATUS_OK) { violation("post job: register gave %llu%llu", s, 0); return; }
    s = cbreg_entry_set_target(reg_of(g_post_reg), id, g_post_targets[k % POST_TARGETS]);
    if (s != CBREG_STATUS_OK) violation("entry_set_target gave %llu (id %#llx)", s, id);
    STORE(&g_post_id[k], id);
}

static void *post_churner_main(void *arg) {
    (void)arg;
    t_rng = 0xc0ffee;
    while (!LOAD(&g_stop)) {
        unsigned k = (unsigned)(rnd() % POST_ENTRIES), op = (unsigned)(rnd() % 100);
        uint64_t old = LOAD(&g_post_id[k]);
        if (op < 2) {
            cbreg_status s = cbreg_clear(reg_of(g_post_reg), NULL);
            if (s != CBREG_STATUS_OK) violation("post job: clear gave %llu%llu", s, 0);
            for (k = 0; k < POST_ENTRIES; ++k) post_register(k);
        } else {
            if (old != 0) {
                cbreg_status s = cbreg_unregister(reg_of(g_post_reg), old);
                if (!status_in(s, BIT(CBREG_STATUS_OK) | BIT(CBREG_STATUS_NOT_FOUND)))
                    violation("post job: unregister gave %llu (id %#llx)", s, old);
            }
            post_register(k);
        }
        sleep_ms(1);
    }
    return NULL;
}

static void *post_drainer_main(void *arg) {
    (void)arg;
    while (!LOAD(&g_post_drainer_stop)) {
        size_t n = 0;
        if (cbreg_pump_drain(g_post_targets[1], 256, &n) != CBREG_STATUS_OK) violation("pump_drain failed%llu%llu", 0, 0);
        if (n == 0) sleep_ms(1);
    }
    return NULL;
}

static void post_stress_start(void) {
    cbreg_registry r;
    unsigned i;
    if (cbreg_registry_new(&r) != CBREG_STATUS_OK) { violation("post job: registry_new failed%llu%llu", 0, 0); return; }
    g_post_reg = r.handle;
    g_post_targets[0].handle = 0;
    if (cbreg_pump_new(NULL, &g_post_targets[1]) != CBREG_STATUS_OK) { violation("pump_new failed%llu%llu", 0, 0); return; }
    for (i = 0; i < POST_TARGETS; ++i) cbreg_post_stats_get(g_post_targets[i], &g_post_base[i]);
    for (i = 0; i < POST_ENTRIES; ++i) post_register(i);
    for (i = 0; i < POST_SENDERS; ++i) pthread_create(&g_post_threads[i], NULL, post_sender_main, (void *)(uintptr_t)i);
    pthread_create(&g_post_churner, NULL, post_churner_main, NULL);
    pthread_create(&g_post_drainer, NULL, post_drainer_main, NULL);
}

/* After g_stop: the senders and the churner end, everything pending is
 * taken, then each target's counters are checked. */
static void post_stress_finish(void) {
    unsigned i;
    unsigned long posted_total = 0, delivered_total = 0, full_total = 0, told_posted = 0, told_full = 0;
    if (g_post_reg == 0) return;
    for (i = 0; i < POST_SENDERS; ++i) pthread_join(g_post_threads[i], NULL);
    pthread_join(g_post_churner, NULL);
    for (i = 0; i < POST_TARGETS; ++i) {
        cbreg_post_stats st;
        do {
            sleep_ms(1);
            cbreg_post_stats_get(g_post_targets[i], &st);
        } while (st.pending != 0); /* the watchdog ends a hang */
    }
    STORE(&g_post_drainer_stop, 1);
    pthread_join(g_post_drainer, NULL);
    for (i = 0; i < POST_TARGETS; ++i) {
        cbreg_post_stats st, *b = &g_post_base[i];
        unsigned long posted, delivered, full, dropped, coalesced;
        cbreg_post_stats_get(g_post_targets[i], &st);
        posted = st.posted - b->posted;
        delivered = st.delivered - b->delivered;
        full = st.dropped_full - b->dropped_full;
        coalesced = st.coalesced - b->coalesced;
        dropped = full + (st.dropped_stale - b->dropped_stale) + (st.dropped_closed - b->dropped_closed) +
                  (st.dropped_fork - b->dropped_fork);
        if (delivered != g_post_calls[i]) violation("post: %llu counted delivered, %llu callbacks ran", delivered, g_post_calls[i]);
        if (posted != delivered + dropped + coalesced)
            violation("post: posted %llu != delivered + dropped + coalesced (%llu)", posted, delivered + dropped + coalesced);
        posted_total += posted;
        delivered_total += delivered;
        full_total += full;
        told_posted += g_post_ok[i] + g_post_full[i];
        told_full += g_post_full[i];
    }
    if (posted_total != told_posted) violation("post: the targets counted %llu posts, the senders made %llu", posted_total, told_posted);
    if (full_total != told_full) violation("post: %llu counted full, %llu refused as full", full_total, told_full);
    printf("stress: post: posted %lu, delivered %lu, refused as not found %lu\n", posted_total, delivered_total,
           g_post_not_found);
    if (cbreg_pump_free(g_post_targets[1]) != CBREG_STATUS_OK) violation("pump_free failed%llu%llu", 0, 0);
    if (cbreg_registry_free(reg_of(g_post_reg)) != CBREG_STATUS_OK) violation("post job: registry_free failed%llu%llu", 0, 0);
}

/* ---- main ---- */

static double g_start;
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_watchdog(int sig) {
    static const char msg[] = "stress: WATCHDOG: still running long after the deadline (a hang); violations so far counted above\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) _exit(2);
    _exit(2);
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 30;
    int nworkers = argc > 2 ? atoi(argv[2]) : 32;
    pthread_t workers[MAX_WORKERS], reaper, burster, forker, signal_threads[3];
    worker *ws;
    int i, k;
    unsigned long unreleased = 0;

    if (nworkers < 1 || nworkers > MAX_WORKERS || seconds < 1) {
        fprintf(stderr, "usage: stress [seconds] [threads <= %d]\n", MAX_WORKERS);
        return 64;
    }
    signal(SIGALRM, on_watchdog);
    alarm((unsigned)seconds + 60);
    g_start = now_s();
    g_regs[0] = cbreg_default().handle;
    for (k = 1; k < REGISTRIES; ++k) {
        cbreg_registry r;
        if (cbreg_registry_new(&r) != CBREG_STATUS_OK) { fprintf(stderr, "registry_new failed\n"); return 1; }
        g_regs[k] = r.handle;
    }
    ws = calloc((size_t)nworkers, sizeof *ws);
    if (ws == NULL) return 1;
    for (i = 0; i < nworkers; ++i) {
        ws[i].index = i;
        if (pthread_create(&workers[i], NULL, worker_main, &ws[i]) != 0) { fprintf(stderr, "pthread_create failed\n"); return 1; }
    }
    pthread_create(&reaper, NULL, reaper_main, NULL);
    pthread_create(&burster, NULL, burster_main, NULL);
    pthread_create(&forker, NULL, forker_main, NULL);
    post_stress_start();
    signal_stress_start(signal_threads);

    while (now_s() - g_start < seconds) sleep_ms(100);
    STORE(&g_stop, 1);
    for (i = 0; i < nworkers; ++i) pthread_join(workers[i], NULL);
    pthread_join(reaper, NULL);
    pthread_join(burster, NULL);
    pthread_join(forker, NULL);
    post_stress_finish();
    signal_stress_finish(signal_threads);

    /* Tear down: every release must have run exactly once after this. */
    for (k = 1; k < REGISTRIES; ++k) {
        cbreg_status s = cbreg_registry_free(reg_of(g_regs[k]));
        if (s != CBREG_STATUS_OK) violation("final registry_free gave %llu (handle %#llx)", s, g_regs[k]);
    }
    cbreg_clear(cbreg_default(), NULL);
    cbreg_collect(cbreg_default(), NULL);
    {
        cbreg_stats st;
        if (cbreg_stats_get(cbreg_default(), &st) == CBREG_STATUS_OK && st.pending != 0)
            violation("default registry: %llu releases still pending after clear and collect%llu", st.pending, 0);
    }
    for (i = 0; i < nworkers; ++i)
        for (k = 0; k < ENTRIES_PER_THREAD; ++k)
            if (LOAD(&ws[i].entries[k].state) == REGISTERED) {
                unreleased++;
                violation("entry never released (id %#llx, handle %#llx)", ws[i].entries[k].id, ws[i].entries[k].handle);
            }
    if (LOAD(&g_registered) != LOAD(&g_released) + unreleased)
        violation("registered %llu entries, %llu releases ran", LOAD(&g_registered), LOAD(&g_released));

    printf("stress: threads %d (+%lu short-lived), operations %lu, registered %lu, released %lu, forks %lu, seconds %.1f, violations %lu\n",
           nworkers, g_burst_threads, g_ops, g_registered, g_released, g_forks, now_s() - g_start, g_violations);
    free(ws);
    return g_violations ? 1 : 0;
}
