/* Pieces shared by the C test programs. */
#ifndef IPC_OFFLOAD_TEST_COMMON_H
#define IPC_OFFLOAD_TEST_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

static inline uint8_t pat(size_t i, uint32_t seed) {
    uint32_t x = (uint32_t)i * 2654435761u + seed;
    return (uint8_t)(x ^ (x >> 11) ^ (x >> 23));
}

static inline void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = pat(i, seed);
}

/* Index of the first byte that differs from the pattern, or -1. */
static inline long check(const uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != pat(i, seed)) return (long)i;
    return -1;
}

static inline uint8_t *map_or_die(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}

/* Bytes this process has passed to write-like system calls so far
   (/proc/self/io wchar): payload that went through shared memory is not
   in it. -1 if unreadable. */
static inline long wchar(void) {
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %ld", &v) == 1) break;
    if (f) fclose(f);
    return v;
}
#endif
