/* The reclaimer never keeps a process alive: a program whose main thread
 * ends with pthread_exit() after the reclaimer thread started still exits,
 * once its other threads have ended. The program runs in a child process;
 * this parent fails it if it is still running after TIMEOUT_S seconds.
 *
 *   make reclaimer-exit-test */
#define _GNU_SOURCE
#include "cbreg.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { TIMEOUT_S = 30 };

static void *mark_real_time(void *arg) {
    (void)arg;
    /* Starts the reclaimer (the first real-time mark does). */
    if (cbreg_thread_set_realtime(true) != CBREG_STATUS_OK) _exit(3);
    return NULL;
}

static uint32_t nop(void *c, const cbreg_value *a, size_t n, cbreg_value *r) {
    (void)c; (void)a; (void)n; (void)r;
    return 0;
}

static void *worker(void *arg) {
    uint64_t id;
    (void)arg;
    /* A thread that outlives main for a while: the process must wait for
     * it, and then end. */
    if (cbreg_register(cbreg_default(), nop, NULL, NULL, 0, &id) != CBREG_STATUS_OK) _exit(4);
    usleep(200 * 1000);
    if (cbreg_invoke(cbreg_default(), id, NULL, 0, NULL) != CBREG_STATUS_OK) _exit(5);
    return NULL;
}

static void program(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, mark_real_time, NULL) != 0 || pthread_join(t, NULL) != 0) _exit(2);
    if (pthread_create(&t, NULL, worker, NULL) != 0) _exit(2);
    pthread_exit(NULL);
}

int main(void) {
    struct timespec start, now;
    int wstatus = 0;
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) program();
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        pid_t done = waitpid(pid, &wstatus, WNOHANG);
        if (done == pid) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > TIMEOUT_S) {
            fprintf(stderr, "main_thread_exit: HANG: the program whose main thread called pthread_exit() "
                            "was still running after %d s (the reclaimer kept it alive)\n", TIMEOUT_S);
            kill(pid, SIGKILL);
            waitpid(pid, &wstatus, 0);
            return 1;
        }
        usleep(20 * 1000);
    }
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "main_thread_exit: the program failed (wait status %#x)\n", (unsigned)wstatus);
        return 1;
    }
    printf("main_thread_exit: the program ended after its main thread's pthread_exit()\n");
    return 0;
}
