/*
 * Unregister storm: bounded latency and bounded memory for batched releases
 * under any number of threads (docs/protocol.md, "Bounds").
 *
 * Every thread holds a thread record (so a heavy barrier is a system call
 * and unregisters leave their releases for batches) and registers and
 * unregisters as fast as it can on one registry. A monitor samples the
 * registry's pending count. At the end the job prints
 *   - the pending high-water mark, against the bound docs/protocol.md
 *     states (2 * (BACKLOG + threads));
 *   - the slowest release (from the start of the unregister to the release)
 *     and the 99th and 99.9th percentiles (power-of-two buckets: each
 *     figure is its bucket's upper edge);
 *   - the slowest single cbreg_unregister call;
 *   - peak RSS, and RSS after the warm-up second and at the end (a backlog's
 *     slots are reused, so it stays flat).
 * It fails (exit 1) if the high-water mark passes the bound, or a release
 * is missing or runs twice; the latencies are figures, not thresholds.
 *
 * Usage: storm [seconds] [threads]   (defaults 8, 4 x the cores)
 */

#define _GNU_SOURCE
#include "cbreg.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

/* The library's BACKLOG (src/registry/reclaim/mod.rs): entries left for
 * batches past which an unregister pays its own barrier. */
enum { BACKLOG = 1024, MAX_THREADS = 1024 };

typedef struct {
    uint64_t unregistered_ns;
    int releases;
} ctx;

static cbreg_registry g_reg;
static int g_stop;
static unsigned long g_registered, g_released, g_twice;
static uint64_t g_slowest_release_ns, g_slowest_unregister_ns, g_pending_high;
/* Releases by latency: bucket k counts those under 2^k microseconds. */
enum { BUCKETS = 40 };
static unsigned long g_latency[BUCKETS];

static void count_latency(uint64_t ns) {
    uint64_t us = ns / 1000;
    int k = 0;
    while (k < BUCKETS - 1 && (1ull << k) <= us) k++;
    ADD(&g_latency[k], 1);
}

/* The upper edge, in ms, of the bucket where the fraction `q` of releases
 * is reached. */
static double percentile_ms(double q) {
    unsigned long total = 0, seen = 0;
    int k;
    for (k = 0; k < BUCKETS; ++k) total += g_latency[k];
    for (k = 0; k < BUCKETS; ++k) {
        seen += g_latency[k];
        if ((double)seen >= q * (double)total) break;
    }
    return (double)(1ull << (k < BUCKETS ? k : BUCKETS - 1)) / 1000.0;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void raise_to(uint64_t *max, uint64_t v) {
    uint64_t seen = LOAD(max);
    while (v > seen && !__atomic_compare_exchange_n(max, &seen, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
}

static uint32_t nop(void *c, const cbreg_value *a, size_t n, cbreg_value *r) {
    (void)c; (void)a; (void)n; (void)r;
    return 0;
}

static void on_release(void *p) {
    ctx *c = p;
    uint64_t waited = now_ns() - LOAD(&c->unregistered_ns);
    raise_to(&g_slowest_release_ns, waited);
    count_latency(waited);
    if (ADD(&c->releases, 1) != 1) ADD(&g_twice, 1);
    ADD(&g_released, 1);
    free(c);
}

static void *storm_thread(void *arg) {
    uint64_t id;
    (void)arg;
    /* A record of its own: from now on heavy barriers are system calls. */
    if (cbreg_register(g_reg, nop, NULL, NULL, 0, &id) != CBREG_STATUS_OK) abort();
    cbreg_invoke(g_reg, id, NULL, 0, NULL);
    cbreg_unregister(g_reg, id);
    while (!LOAD(&g_stop)) {
        ctx *c = calloc(1, sizeof *c);
        uint64_t t;
        if (c == NULL) abort();
        if (cbreg_register(g_reg, nop, c, on_release, 0, &id) != CBREG_STATUS_OK) abort();
        ADD(&g_registered, 1);
        t = now_ns();
        STORE(&c->unregistered_ns, t);
        if (cbreg_unregister(g_reg, id) != CBREG_STATUS_OK) abort();
        raise_to(&g_slowest_unregister_ns, now_ns() - t);
    }
    return NULL;
}

static long rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int seconds = argc > 1 ? atoi(argv[1]) : 8;
    int threads = argc > 2 ? atoi(argv[2]) : (int)(4 * (cores > 0 ? cores : 1));
    pthread_t ts[MAX_THREADS];
    uint64_t start, bound;
    long rss_warm = -1, rss_end;
    struct rusage ru;
    int i, failed = 0;

    if (threads < 1 || threads > MAX_THREADS || seconds < 2) {
        fprintf(stderr, "usage: storm [seconds >= 2] [threads <= %d]\n", MAX_THREADS);
        return 64;
    }
    alarm((unsigned)seconds + 120); /* a hang ends the job */
    if (cbreg_registry_new(&g_reg) != CBREG_STATUS_OK) return 1;
    for (i = 0; i < threads; ++i)
        if (pthread_create(&ts[i], NULL, storm_thread, NULL) != 0) return 1;
    start = now_ns();
    while (now_ns() - start < (uint64_t)seconds * 1000000000u) {
        cbreg_stats st;
        if (cbreg_stats_get(g_reg, &st) == CBREG_STATUS_OK) raise_to(&g_pending_high, st.pending);
        if (rss_warm < 0 && now_ns() - start > 1000000000u) rss_warm = rss_kb();
        usleep(1000);
    }
    STORE(&g_stop, 1);
    for (i = 0; i < threads; ++i) pthread_join(ts[i], NULL);
    rss_end = rss_kb();
    if (cbreg_registry_free(g_reg) != CBREG_STATUS_OK) {
        fprintf(stderr, "storm: registry_free failed\n");
        failed = 1;
    }
    getrusage(RUSAGE_SELF, &ru);
    bound = 2 * ((uint64_t)BACKLOG + (uint64_t)threads);
    printf("storm: threads %d (%ld cores), unregisters %lu, pending high-water %llu (bound %llu), "
           "release p99 under %.2f ms, p99.9 under %.2f ms, slowest %.1f ms, slowest unregister call %.1f ms, peak RSS %.1f MB, "
           "RSS after 1 s %.1f MB, at the end %.1f MB\n",
           threads, cores, g_registered, (unsigned long long)g_pending_high, (unsigned long long)bound,
           percentile_ms(0.99), percentile_ms(0.999), g_slowest_release_ns / 1e6, g_slowest_unregister_ns / 1e6, ru.ru_maxrss / 1024.0,
           rss_warm / 1024.0, rss_end / 1024.0);
    if (g_pending_high > bound) {
        fprintf(stderr, "storm: FAIL: %llu entries pending, past the bound of %llu\n",
                (unsigned long long)g_pending_high, (unsigned long long)bound);
        failed = 1;
    }
    if (g_released != g_registered || g_twice != 0) {
        fprintf(stderr, "storm: FAIL: %lu registered, %lu releases ran, %lu twice\n", g_registered, g_released, g_twice);
        failed = 1;
    }
    return failed;
}
