/* Regression: an invoke from a pthread key destructor that runs after cbreg's
 * own thread-exit destructor must not use the record it returned to the pool
 * (the release would then run while the callback is still inside). */
#include "cbreg.h"
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
typedef struct { int entered, go, inside, releases, release_while_inside; } gate;
static void ms(long m) { struct timespec t = {0, m * 1000000L}; nanosleep(&t, NULL); }
static uint32_t gated(void *c, const cbreg_value *a, size_t n, cbreg_value *r) {
    gate *g = c; (void)a; (void)n; (void)r;
    STORE(&g->inside, 1); STORE(&g->entered, 1);
    while (!LOAD(&g->go)) ms(1);
    STORE(&g->inside, 0);
    return 0;
}
static void rel(void *c) { gate *g = c; if (LOAD(&g->inside)) g->release_while_inside++; g->releases++; }
static cbreg_registry reg; static uint64_t ida, idb; static gate ga, gb;
static pthread_key_t key;
static void dtor(void *v) {
    if (v == (void *)1) { pthread_setspecific(key, (void *)2); return; } /* run again next round */
    cbreg_invoke(reg, ida, NULL, 0, NULL);
}
static uint32_t nop(void *c, const cbreg_value *a, size_t n, cbreg_value *r) { (void)c; (void)a; (void)n; (void)r; return 0; }
static void *thread_a(void *x) { uint64_t id; (void)x;
    cbreg_register(reg, nop, NULL, NULL, 0, &id); cbreg_invoke(reg, id, NULL, 0, NULL);
    pthread_setspecific(key, (void *)1); return NULL; }
static void *thread_b(void *x) { (void)x; cbreg_invoke(reg, idb, NULL, 0, NULL); return NULL; }
int main(void) {
    pthread_t a, b; uint64_t id;
    reg = cbreg_default();
    cbreg_register(reg, nop, NULL, NULL, 0, &id); cbreg_invoke(reg, id, NULL, 0, NULL); /* pool + cbreg key */
    pthread_key_create(&key, dtor);
    cbreg_register(reg, gated, &ga, rel, 0, &ida);
    cbreg_register(reg, gated, &gb, rel, 0, &idb);
    pthread_create(&a, NULL, thread_a, NULL);
    while (!LOAD(&ga.entered)) ms(1);         /* A is inside, from its exit destructor */
    pthread_create(&b, NULL, thread_b, NULL);
    while (!LOAD(&gb.entered)) ms(1);         /* B claimed a record and is inside */
    cbreg_unregister(reg, ida);               /* must defer: A is still inside */
    printf("A inside=%d releases=%d release_while_inside=%d\n", LOAD(&ga.inside), ga.releases, ga.release_while_inside);
    STORE(&ga.go, 1); STORE(&gb.go, 1);
    pthread_join(a, NULL); pthread_join(b, NULL);
    return ga.release_while_inside ? 1 : 0;
}
