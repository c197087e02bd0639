/*
 * memcpy, memmove and mempcpy across every size class, alignment and overlap,
 * checked byte for byte against closed-form expectations (no reference copy:
 * a pattern function says what every byte must be).
 *
 * usage: memcpy_matrix THRESHOLD [huge]
 *   THRESHOLD  the policy's min_bytes: sizes around it are tested
 *   huge       also copy and move 1 GiB
 *
 * Prints one line per family with the number of cases and an FNV-1a hash of
 * every destination byte checked, so that runs with and without the library
 * can be compared; exits 1 on the first wrong byte.
 *
 * Build with -fno-builtin so every copy is a call through the PLT.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t hash = 1469598103934665603ULL;
static unsigned long cases;

static inline uint8_t pat(size_t i, uint32_t seed) {
    uint32_t x = (uint32_t)i * 2654435761u + seed;
    return (uint8_t)(x ^ (x >> 11) ^ (x >> 23));
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = pat(i, seed);
}

static void fail(const char *what, size_t n, size_t at, int got, int want) {
    printf("FAIL %s n=%zu: byte %zu is %d, expected %d\n", what, n, at, got, want);
    fflush(stdout);
    exit(1);
}

/* Checks p[0..n) == pat(first + i) and folds it into the hash. */
static void expect(const char *what, size_t n, const uint8_t *p, size_t len, size_t first, uint32_t seed) {
    for (size_t i = 0; i < len; i++) {
        uint8_t want = pat(first + i, seed);
        if (p[i] != want) fail(what, n, i, p[i], want);
        hash = (hash ^ p[i]) * 1099511628211ULL;
    }
}

static void expect_byte(const char *what, size_t n, const uint8_t *p, size_t len, uint8_t value) {
    for (size_t i = 0; i < len; i++)
        if (p[i] != value) fail(what, n, i, p[i], value);
}

static uint8_t *map(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}

enum fn { MEMCPY, MEMMOVE, MEMPCPY };
static const char *names[] = {"memcpy", "memmove", "mempcpy"};

/* A disjoint copy of n bytes from src+sa to dst+da, with guard bytes. */
static void disjoint(enum fn f, uint8_t *src, uint8_t *dst, size_t n, size_t sa, size_t da, uint32_t seed) {
    const size_t guard = 64;
    fill(src + sa, n, seed);
    memset(dst + da - guard, 0xA5, n + 2 * guard);
    void *ret;
    switch (f) {
    case MEMCPY: ret = memcpy(dst + da, src + sa, n); break;
    case MEMMOVE: ret = memmove(dst + da, src + sa, n); break;
    default: ret = mempcpy(dst + da, src + sa, n); break;
    }
    void *want = f == MEMPCPY ? (void *)(dst + da + n) : (void *)(dst + da);
    if (ret != want) { printf("FAIL %s n=%zu: returned %p, expected %p\n", names[f], n, ret, want); exit(1); }
    expect(names[f], n, dst + da, n, 0, seed);
    expect_byte("guard before", n, dst + da - guard, guard, 0xA5);
    expect_byte("guard after", n, dst + da + n, guard, 0xA5);
    cases++;
}

/* memmove(buf + to, buf + from, n) inside one buffer patterned from 0. */
static void overlapping(uint8_t *buf, size_t n, size_t from, size_t to, uint32_t seed) {
    size_t total = n + (from > to ? from : to);
    fill(buf, total, seed);
    void *ret = memmove(buf + to, buf + from, n);
    if (ret != buf + to) { printf("FAIL memmove overlap returned wrong pointer\n"); exit(1); }
    expect("memmove-overlap", n, buf + to, n, from, seed);
    /* Bytes outside the destination are untouched. */
    if (to > 0) expect("memmove-overlap head", n, buf, to, 0, seed);
    if (to + n < total) expect("memmove-overlap tail", n, buf + to + n, total - to - n, to + n, seed);
    cases++;
}

/* memcpy with overlapping regions: old binaries (memcpy@GLIBC_2.2.5) rely on it. */
static void overlapping_memcpy(uint8_t *buf, size_t n, size_t from, size_t to, uint32_t seed) {
    size_t total = n + (from > to ? from : to);
    fill(buf, total, seed);
    memcpy(buf + to, buf + from, n);
    expect("memcpy-overlap", n, buf + to, n, from, seed);
    cases++;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s THRESHOLD [huge]\n", argv[0]); return 2; }
    size_t t = strtoull(argv[1], NULL, 0);
    int huge = argc > 2 && strcmp(argv[2], "huge") == 0;

    size_t sizes[] = {0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 511,
                      1000, 4095, 4096, 4097, 65535, 65536, 65537, 100000, 262143, 262144, 262145,
                      t - 1, t, t + 1, 2 * t + 7, 1 << 20, (1 << 20) + 13, 3 << 20, (8 << 20) + 1,
                      16 << 20, (32 << 20) + 5};
    size_t nsizes = sizeof sizes / sizeof sizes[0];
    size_t max = 0;
    for (size_t i = 0; i < nsizes; i++) if (sizes[i] > max) max = sizes[i];
    size_t room = max + 8192;
    uint8_t *src = map(room), *dst = map(room), *buf = map(2 * room);

    for (int f = MEMCPY; f <= MEMPCPY; f++) {
        for (size_t i = 0; i < nsizes; i++) {
            size_t n = sizes[i];
            /* Every alignment pair for small and medium sizes, a few for large. */
            size_t step = n <= (1 << 20) ? 1 : 5;
            for (size_t sa = 0; sa < 8; sa += step)
                for (size_t da = 64; da < 72; da += step)
                    disjoint(f, src, dst, n, sa, da, (uint32_t)(n * 31 + sa * 7 + da + f));
            disjoint(f, src, dst, n, 4095, 64 + 4093, (uint32_t)n);
        }
    }
    printf("disjoint: %lu cases, hash %016llx\n", cases, (unsigned long long)hash);

    cases = 0;
    hash = 1469598103934665603ULL;
    for (size_t i = 0; i < nsizes; i++) {
        size_t n = sizes[i];
        if (n < 2) continue;
        /* Close overlaps (libc's memmove) and far ones (split into waves). */
        size_t distances[] = {1, 63, 4096, n / 2, n - 1, 256 << 10, (256 << 10) + 4097, 1 << 20};
        for (size_t d = 0; d < sizeof distances / sizeof distances[0]; d++) {
            size_t dist = distances[d];
            if (dist == 0 || dist >= n) continue;
            overlapping(buf, n, dist, 0, (uint32_t)(n + dist));   /* move down */
            overlapping(buf, n, 0, dist, (uint32_t)(n ^ dist));   /* move up */
            overlapping(buf, n, dist + 3, 1, (uint32_t)dist);     /* unaligned */
            overlapping_memcpy(buf, n, 0, dist, (uint32_t)(dist * 3));
            overlapping_memcpy(buf, n, dist, 0, (uint32_t)(dist * 5));
        }
    }
    printf("overlapping: %lu cases, hash %016llx\n", cases, (unsigned long long)hash);

    if (huge) {
        cases = 0;
        hash = 1469598103934665603ULL;
        size_t n = (size_t)1 << 30;
        uint8_t *a = map(n + 4096), *b = map(n + (3u << 20));
        disjoint(MEMCPY, a, b, n, 1, 64, 1234);
        disjoint(MEMPCPY, a, b, n, 0, 4096 - 3, 99);
        overlapping(b, n, 3u << 20, 0, 4321);
        overlapping(b, n, 0, 3u << 20, 8765);
        printf("huge: %lu cases, hash %016llx\n", cases, (unsigned long long)hash);
    }
    return 0;
}
