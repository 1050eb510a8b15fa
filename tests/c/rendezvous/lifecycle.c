/* One owner per process image, across fork, the exit of the process that
 * made the first decision, privilege drops and real-time first calls.
 *
 * The plugins (plugin.c, built three times: three copies of cbreg, each
 * loaded with RTLD_LOCAL) are the copies; this host links no cbreg of its
 * own. Each case runs in a process of its own under a time limit, so a hang
 * is reported as one and a crash as the signal that ended it.
 *
 *   lifecycle A B C CASE
 *
 *   forked_child_first_user_leaves_no_owner_to_the_parent
 *       a forked child is the first to use cbreg (through a copy it loads
 *       after the fork, and through one both share) and ends with _exit;
 *       the parent's copies then agree among themselves, with no trace of
 *       the child's choice
 *   child_copy_outlives_the_parent
 *       the parent decides, forks and exits; a copy the surviving child
 *       loads afterwards reaches the parent's registries (the same ids)
 *   child_that_drops_privileges_shares_the_owner
 *       as above, but the child first switches to the user nobody (only
 *       when run as root; otherwise the case says it was skipped)
 *   fork_during_a_first_call_leaves_a_usable_child
 *       many times: once the process's registries exist (made through one
 *       copy), one thread makes another copy's first call while another
 *       thread forks; the child uses both copies, and exits
 *   realtime_first_invoke_allocates_nothing
 *       a copy's first call is an invoke on a fresh thread: no allocation
 *       (libc's own included), no dlopen, shm_open, memfd_create or mmap
 */
#define _GNU_SOURCE
#include "cbreg.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIME_LIMIT_S 120
#define FORK_ROUNDS 60
#define ROUND_LIMIT_S 30

/* ---- counting what the counted thread does ---- */

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static __thread int t_counting;
static unsigned long g_allocations, g_heavy_calls;

static void counted(unsigned long *what) {
    if (t_counting) __atomic_add_fetch(what, 1, __ATOMIC_SEQ_CST);
}

void *malloc(size_t size) { counted(&g_allocations); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { counted(&g_allocations); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { counted(&g_allocations); return __libc_realloc(p, size); }
void *memalign(size_t alignment, size_t size) { counted(&g_allocations); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { counted(&g_allocations); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    void *p;
    counted(&g_allocations);
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    p = __libc_memalign(alignment, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

/* Calls that take the loader lock or enter the kernel to find the owner.
 * The host is linked with -rdynamic, so the plugins' calls come here. */
void *dlopen(const char *file, int mode) {
    static void *(*real)(const char *, int);
    counted(&g_heavy_calls);
    if (!real) real = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    return real(file, mode);
}
int shm_open(const char *name, int flags, mode_t mode) {
    static int (*real)(const char *, int, mode_t);
    counted(&g_heavy_calls);
    if (!real) real = (int (*)(const char *, int, mode_t))dlsym(RTLD_NEXT, "shm_open");
    return real(name, flags, mode);
}
int memfd_create(const char *name, unsigned int flags) {
    static int (*real)(const char *, unsigned int);
    counted(&g_heavy_calls);
    if (!real) real = (int (*)(const char *, unsigned int))dlsym(RTLD_NEXT, "memfd_create");
    return real(name, flags);
}
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    static void *(*real)(void *, size_t, int, int, int, off_t);
    counted(&g_heavy_calls);
    if (!real) real = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
    return real(addr, len, prot, flags, fd, off);
}

/* ---- the copies ---- */

typedef struct plugin {
    uint64_t (*reg)(int *);
    cbreg_status (*invoke)(uint64_t);
    cbreg_status (*unregister)(uint64_t);
} plugin;

static const char *g_paths[3];

static int load(int which, plugin *p) {
    void *h = dlopen(g_paths[which], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", g_paths[which], dlerror());
        return 0;
    }
    *(void **)&p->reg = dlsym(h, "plugin_register");
    *(void **)&p->invoke = dlsym(h, "plugin_invoke");
    *(void **)&p->unregister = dlsym(h, "plugin_unregister");
    return p->reg && p->invoke && p->unregister;
}

static int g_failures;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                            \
        }                                                                            \
    } while (0)

/* An entry made through `maker` runs through `other` and is gone for both
 * once `other` unregisters it: the two copies share one registry. */
static void check_shared(plugin *maker, plugin *other) {
    int counter = 0;
    uint64_t id = maker->reg(&counter);
    CHECK(id != 0);
    CHECK(other->invoke(id) == CBREG_STATUS_OK);
    CHECK(maker->invoke(id) == CBREG_STATUS_OK);
    CHECK(counter == 2);
    CHECK(other->unregister(id) == CBREG_STATUS_OK);
    CHECK(maker->invoke(id) == CBREG_STATUS_NOT_FOUND);
}

/* ---- the cases ---- */

static int forked_child_first_user_leaves_no_owner_to_the_parent(void) {
    plugin a, b, c;
    pid_t child;
    int status;
    if (!load(0, &a) || !load(1, &b)) return 2;
    child = fork();
    if (child == 0) {
        int counter = 0;
        /* A copy the parent never loads, then one the parent has too. */
        if (!load(2, &c)) _exit(2);
        _exit(c.reg(&counter) != 0 && b.reg(&counter) != 0 ? 0 : 1);
    }
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "the child failed on its own side\n");
        return 1;
    }
    check_shared(&a, &b);
    check_shared(&b, &a);
    return g_failures != 0;
}

/* The parent decides and registers, forks, then exits (running its atexit
 * handlers); the child waits until it has, then loads another copy. */
static int child_copy_outlives_the_parent_as(int drop_privileges) {
    plugin a, b;
    int counter = 0, report[2], gone[2];
    uint64_t id;
    pid_t parent;
    char verdict = 'x';
    if (pipe(report) != 0 || pipe(gone) != 0) return 2;
    parent = fork();
    if (parent == 0) {
        pid_t child;
        close(report[0]);
        if (!load(0, &a)) _exit(2);
        id = a.reg(&counter);
        if (id == 0) _exit(2);
        child = fork();
        if (child == 0) {
            char byte;
            close(gone[1]);
            /* EOF once the parent has exited (its atexit handlers ran). */
            while (read(gone[0], &byte, 1) > 0) {
            }
            if (drop_privileges) {
                struct passwd *nobody = getpwnam("nobody");
                if (!nobody || setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0) {
                    verdict = 's';
                    (void)!write(report[1], &verdict, 1);
                    _exit(0);
                }
            }
            if (!load(1, &b)) {
                verdict = 'l';
            } else {
                cbreg_status st = b.invoke(id);
                verdict = st == CBREG_STATUS_OK && counter == 1 ? 'y' : 'n';
                if (verdict == 'n') fprintf(stderr, "the later copy's invoke of the parent's id: %d\n", (int)st);
            }
            (void)!write(report[1], &verdict, 1);
            _exit(0);
        }
        close(gone[0]);
        exit(0); /* runs atexit handlers, then closes `gone` */
    }
    close(report[1]);
    close(gone[0]);
    close(gone[1]);
    waitpid(parent, NULL, 0);
    if (read(report[0], &verdict, 1) != 1) verdict = '?';
    switch (verdict) {
    case 'y': return 0;
    case 's': printf("(could not switch to nobody: skipped)\n"); return 0;
    case 'n': fprintf(stderr, "the later copy in the child became a second owner\n"); return 1;
    default: fprintf(stderr, "the child reported '%c'\n", verdict); return 1;
    }
}

static int child_copy_outlives_the_parent(void) { return child_copy_outlives_the_parent_as(0); }

static int child_that_drops_privileges_shares_the_owner(void) {
    if (getuid() != 0) {
        printf("(not root: skipped)\n");
        return 0;
    }
    return child_copy_outlives_the_parent_as(1);
}

static plugin g_first;
static volatile int g_started;
static void *first_call(void *unused) {
    int counter = 0;
    (void)unused;
    __atomic_store_n(&g_started, 1, __ATOMIC_SEQ_CST);
    if (g_first.reg(&counter) == 0) fprintf(stderr, "the first call failed\n");
    return NULL;
}

static char g_round_message[64];
static void round_timed_out(int sig) {
    (void)sig;
    (void)!write(2, g_round_message, strlen(g_round_message));
    _exit(1);
}

static int fork_during_a_first_call_leaves_a_usable_child(void) {
    int round;
    signal(SIGALRM, round_timed_out);
    for (round = 0; round < FORK_ROUNDS; ++round) {
        pid_t p;
        int status;
        /* A limit per round, so a slow machine is never taken for a hang. */
        snprintf(g_round_message, sizeof g_round_message, "round %d still running after %d s\n", round,
                 ROUND_LIMIT_S);
        alarm(ROUND_LIMIT_S);
        p = fork();
        if (p == 0) {
            pthread_t t;
            pid_t child;
            plugin a;
            int made = 0;
            if (!load(0, &a) || !load(1, &g_first)) _exit(2);
            if (a.reg(&made) == 0) _exit(2);
            if (pthread_create(&t, NULL, first_call, NULL) != 0) _exit(2);
            while (!__atomic_load_n(&g_started, __ATOMIC_SEQ_CST)) {
            }
            child = fork();
            if (child == 0) {
                int counter = 0;
                uint64_t id = g_first.reg(&counter);
                _exit(id != 0 && a.invoke(id) == CBREG_STATUS_OK && counter == 1 ? 0 : 1);
            }
            pthread_join(t, NULL);
            if (child < 0 || waitpid(child, &status, 0) != child) _exit(2);
            _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 3);
        }
        if (p < 0 || waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "round %d: the forked child failed\n", round);
            return 1;
        }
    }
    return 0;
}

static plugin g_late;
static uint64_t g_id;
static unsigned long g_first_allocations, g_first_heavy;
static cbreg_status g_first_status;

static void *realtime_thread(void *unused) {
    unsigned long allocs = __atomic_load_n(&g_allocations, __ATOMIC_SEQ_CST);
    unsigned long heavy = __atomic_load_n(&g_heavy_calls, __ATOMIC_SEQ_CST);
    (void)unused;
    t_counting = 1;
    g_first_status = g_late.invoke(g_id);
    t_counting = 0;
    g_first_allocations = __atomic_load_n(&g_allocations, __ATOMIC_SEQ_CST) - allocs;
    g_first_heavy = __atomic_load_n(&g_heavy_calls, __ATOMIC_SEQ_CST) - heavy;
    return NULL;
}

static int realtime_first_invoke_allocates_nothing(void) {
    plugin a;
    pthread_t t;
    int counter = 0;
    void *(*volatile alloc)(size_t) = malloc;
    unsigned long before = g_allocations;
    /* Control: the counter sees an allocation. */
    t_counting = 1;
    free(alloc(24));
    t_counting = 0;
    CHECK(g_allocations - before >= 1);
    if (!load(0, &a) || !load(1, &g_late)) return 2;
    g_id = a.reg(&counter);
    CHECK(g_id != 0);
    CHECK(a.invoke(g_id) == CBREG_STATUS_OK); /* the owner's own first calls are done */
    if (pthread_create(&t, NULL, realtime_thread, NULL) != 0 || pthread_join(t, NULL) != 0) return 2;
    printf("first call of a copy, an invoke on a new thread: %lu allocations, %lu loader/kernel look-ups\n",
           g_first_allocations, g_first_heavy);
    CHECK(g_first_status == CBREG_STATUS_OK);
    CHECK(counter == 2);
    CHECK(g_first_allocations == 0);
    CHECK(g_first_heavy == 0);
    return g_failures != 0;
}

static const struct {
    const char *name;
    int (*run)(void);
} CASES[] = {
    {"forked_child_first_user_leaves_no_owner_to_the_parent", forked_child_first_user_leaves_no_owner_to_the_parent},
    {"child_copy_outlives_the_parent", child_copy_outlives_the_parent},
    {"child_that_drops_privileges_shares_the_owner", child_that_drops_privileges_shares_the_owner},
    {"fork_during_a_first_call_leaves_a_usable_child", fork_during_a_first_call_leaves_a_usable_child},
    {"realtime_first_invoke_allocates_nothing", realtime_first_invoke_allocates_nothing},
};

int main(int argc, char **argv) {
    size_t i;
    pid_t p;
    int status;
    if (argc != 5) {
        fprintf(stderr, "usage: lifecycle PLUGIN_A PLUGIN_B PLUGIN_C CASE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    g_paths[0] = argv[1];
    g_paths[1] = argv[2];
    g_paths[2] = argv[3];
    for (i = 0; i < sizeof CASES / sizeof CASES[0]; ++i) {
        if (strcmp(CASES[i].name, argv[4]) != 0) continue;
        /* In a process of its own, so that a hang or a crash is this
         * case's verdict and nothing the case leaves reaches another. */
        p = fork();
        if (p == 0) {
            setpgid(0, 0);
            alarm(TIME_LIMIT_S);
            _exit(CASES[i].run());
        }
        if (p < 0 || waitpid(p, &status, 0) != p) return 2;
        kill(-p, SIGKILL); /* whatever the case left running (a hung child) */
        if (WIFSIGNALED(status)) {
            printf("%s: FAILED (%s)\n", argv[4],
                   WTERMSIG(status) == SIGALRM ? "still running after the time limit" : strsignal(WTERMSIG(status)));
            return 1;
        }
        printf("%s: %s\n", argv[4], WEXITSTATUS(status) == 0 ? "passed" : "FAILED");
        return WEXITSTATUS(status);
    }
    fprintf(stderr, "no case named %s\n", argv[4]);
    return 2;
}
