/*
 * THREADS threads (default 64) make large copies and overlapping moves at the
 * same time, each checking every byte; one more thread makes small copies
 * throughout. Each big thread also copies from a thread-specific-data
 * destructor, while it is being torn down. Exits 0 when every byte was right.
 *
 * usage: threads [THREADS] [ROUNDS]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "common.h"

static int rounds = 4;
static atomic_int failures, stop_small, teardown_copies;
static pthread_key_t key;

/* Runs as the thread exits, after its other thread-local state is gone. */
static void at_teardown(void *arg) {
    size_t n = 2u << 20;
    uint8_t *src = map_or_die(n), *dst = map_or_die(n);
    uint32_t seed = (uint32_t)(uintptr_t)arg;
    fill(src, n, seed);
    memcpy(dst, src, n);
    if (check(dst, n, seed) >= 0) { fprintf(stderr, "teardown copy wrong\n"); failures++; }
    teardown_copies++;
    munmap(src, n);
    munmap(dst, n);
}

static void *big(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    pthread_setspecific(key, (void *)(uintptr_t)(id + 1));
    for (int r = 0; r < rounds; r++) {
        size_t n = (1u << 20) + id * 65537u + (size_t)r * 4099u;   /* 1 MiB .. ~5 MiB */
        uint8_t *src = map_or_die(n), *dst = map_or_die(n + (1u << 20));
        uint32_t seed = id * 1000 + (unsigned)r;
        fill(src, n, seed);
        memcpy(dst + (id & 7), src, n);
        if (check(dst + (id & 7), n, seed) >= 0) { fprintf(stderr, "thread %u round %d: memcpy wrong\n", id, r); failures++; }
        /* Overlapping move up by 512 KiB: split into waves by the library. */
        fill(dst, n, seed + 1);
        memmove(dst + (512u << 10), dst, n);
        if (check(dst + (512u << 10), n, seed + 1) >= 0) { fprintf(stderr, "thread %u round %d: memmove wrong\n", id, r); failures++; }
        munmap(src, n);
        munmap(dst, n + (1u << 20));
    }
    return NULL;
}

static void *small(void *arg) {
    (void)arg;
    uint8_t a[4096], b[4096];
    fill(a, sizeof a, 7);
    unsigned long i = 0;
    while (!stop_small) {
        size_t n = (i++ * 37) % sizeof a;
        memcpy(b, a, n);
        if (n && check(b, n, 7) >= 0) { fprintf(stderr, "small copy wrong\n"); failures++; }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 64;
    if (argc > 2) rounds = atoi(argv[2]);
    pthread_t t[threads], s;
    pthread_key_create(&key, at_teardown);
    pthread_create(&s, NULL, small, NULL);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, big, (void *)(uintptr_t)i) != 0) { perror("pthread_create"); return 2; }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    stop_small = 1;
    pthread_join(s, NULL);
    printf("%d threads x %d rounds: %d failures, %d teardown copies\n", threads, rounds, failures, teardown_copies);
    return failures || teardown_copies != threads ? 1 : 0;
}
