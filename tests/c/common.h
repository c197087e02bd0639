/* Pieces shared by the C test programs. */
#ifndef IPC_OFFLOAD_TEST_COMMON_H
#define IPC_OFFLOAD_TEST_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* A reader's running check of a stream whose byte i is pat(i, seed): how
   many bytes were checked, and whether one was wrong (the first is reported
   on stdout). */
struct stream_check {
    uint32_t seed;
    size_t checked;
    int bad;
};

static inline void stream_verify(struct stream_check *s, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n && !s->bad; i++)
        if (p[i] != pat(s->checked + i, s->seed)) {
            printf("byte %zu is %d, expected %d\n", s->checked + i, p[i], pat(s->checked + i, s->seed));
            s->bad = 1;
        }
    s->checked += n;
}

/* A periodic stream, for tests that need a writer to send from one buffer
   and a reader to check any piece cheaply: byte i is i % 251. Returns len +
   251 bytes of it, so that stream bytes [at, at + n) for n <= len are at
   pattern + at % 251. */
static inline uint8_t *periodic_pattern(size_t len) {
    uint8_t *pattern = mmap(NULL, len + 251, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pattern == MAP_FAILED) { perror("mmap"); exit(2); }
    for (size_t i = 0; i < 251; i++) pattern[i] = (uint8_t)i;
    for (size_t have = 251; have < len + 251; have *= 2) /* copy what is there */
        memcpy(pattern + have, pattern, have < len + 251 - have ? have : len + 251 - have);
    return pattern;
}

/* Prints where a read of `r` bytes, which should hold periodic stream
   bytes [got, got + r), first goes wrong: the offset in the read, what
   the wrong run looks like (zeros, or the stream at another phase: bytes
   lost or repeated) and how long it runs. */
static inline void periodic_mismatch(const uint8_t *buf, size_t r, size_t got) {
    size_t i = 0;
    while (i < r && buf[i] == (uint8_t)((got + i) % 251)) i++;
    if (i == r) return;
    size_t end = i;
    int zeros = 1;
    while (end < r && buf[end] != (uint8_t)((got + end) % 251)) zeros &= buf[end++] == 0;
    int shift = ((int)buf[i] - (int)((got + i) % 251) + 251) % 251;
    printf("wrong bytes after %zu: a read of %zu is wrong from offset %zu (stream byte %zu) for %zu bytes: %s %d\n",
           got, r, i, got + i, end - i, zeros ? "zeros, first" : "stream phase shifted by", zeros ? 0 : shift);
}

/* Reads fd to EOF, 4 MiB at a time, checking that the bytes continue a
   periodic stream (each one more than the last, modulo 251) after byte
   value `last` (-1: from any first byte). Returns the bytes read, or -1
   after printing, prefixed with `who`, where the stream breaks. */
static inline long periodic_rest(int fd, int last, const char *who) {
    uint8_t *buf = mmap(NULL, (size_t)4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) { perror("mmap"); exit(2); }
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf, (size_t)4 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { perror("read"); return -1; }
        if (r == 0) break;
        for (ssize_t i = 0; i < r; i++) {
            if (last >= 0 && buf[i] != (last + 1) % 251) {
                printf("%sthe stream breaks %zu bytes after the exec\n", who, got + (size_t)i);
                return -1;
            }
            last = buf[i];
        }
        got += (size_t)r;
    }
    return (long)got;
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
