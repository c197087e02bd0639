/* The stream of the event-loop test programs (evloop_matrix.c and
   evloop_edges.c): byte o of a stream is byte o % 8 (little-endian) of a
   64-bit xorshift of o / 8, so a writer makes, and a reader checks, any
   piece from its offset alone, and a gap, a repeat or a reordering of any
   length shows at its first byte. Also: the 64-bit FNV-1a hash of what a
   reader got, a reader's running check, and small fd helpers. */
#ifndef IPC_OFFLOAD_TEST_EVLOOP_H
#define IPC_OFFLOAD_TEST_EVLOOP_H
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EV_MIB ((size_t)1 << 20)

/* The word that holds stream bytes [8w, 8w + 8). */
static inline uint64_t ev_word(uint64_t w) {
    uint64_t x = w + 0x9e3779b97f4a7c15ull; /* never 0: xorshift keeps 0 at 0 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x * 0x2545f4914f6cdd1dull;
}

static inline uint8_t ev_byte(uint64_t o) { return (uint8_t)(ev_word(o >> 3) >> (8 * (o & 7))); }

/* buf = stream bytes [at, at + n). */
static inline void ev_fill(uint8_t *buf, size_t n, uint64_t at) {
    size_t i = 0;
    while (i < n && ((at + i) & 7) != 0) { buf[i] = ev_byte(at + i); i++; }
    for (; i + 8 <= n; i += 8) {
        uint64_t w = ev_word((at + i) >> 3);
        for (int k = 0; k < 8; k++) buf[i + (size_t)k] = (uint8_t)(w >> (8 * k));
    }
    for (; i < n; i++) buf[i] = ev_byte(at + i);
}

/* The index in buf of the first byte that is not stream byte at + index,
   or -1 if buf holds stream bytes [at, at + n). */
static inline long ev_check(const uint8_t *buf, size_t n, uint64_t at) {
    size_t i = 0;
    while (i < n && ((at + i) & 7) != 0) {
        if (buf[i] != ev_byte(at + i)) return (long)i;
        i++;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w = ev_word((at + i) >> 3);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t v;
        memcpy(&v, buf + i, 8);
        if (v == w) continue;
#endif
        for (int k = 0; k < 8; k++)
            if (buf[i + (size_t)k] != (uint8_t)(w >> (8 * k))) return (long)(i + (size_t)k);
    }
    for (; i < n; i++)
        if (buf[i] != ev_byte(at + i)) return (long)i;
    return -1;
}

#define EV_FNV_OFFSET 0xcbf29ce484222325ull

static inline uint64_t ev_fnv(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* What a reader got so far: every byte checked as it arrived. */
struct ev_got {
    uint64_t at;   /* bytes read */
    uint64_t hash; /* FNV-1a of them */
};

#define EV_GOT_INIT {0, EV_FNV_OFFSET}

/* On stderr (the tests compare stdout): where the wrong bytes of a read of
   n bytes at stream offset `at`, from byte `bad` on, came from. The first
   whole stream word after them is looked up among the stream's first 1 GiB
   of words; a repeat or a gap shows as a shift. */
static inline void ev_explain(const uint8_t *buf, size_t n, uint64_t at, size_t bad) {
    uint64_t o = (at + bad + 7) & ~7ull; /* the first aligned stream offset */
    fprintf(stderr, "a read of %zu bytes at %llu is wrong from byte %zu\n", n, (unsigned long long)at, bad);
    if (o + 8 > at + n) return;
    uint64_t v;
    memcpy(&v, buf + (o - at), 8);
    for (uint64_t k = 0; k < (1ull << 27); k++)
        if (ev_word(k) == v) {
            fprintf(stderr, "the bytes at %llu are the stream's from %llu (shift %lld)\n", (unsigned long long)o,
                    (unsigned long long)(k * 8), (long long)(k * 8) - (long long)o);
            return;
        }
    fprintf(stderr, "the bytes at %llu are not the stream's (%016llx)\n", (unsigned long long)o,
            (unsigned long long)v);
}

/* Checks n bytes that a read returned, the next of the stream: on the
   first wrong one, prints its stream offset (prefixed with who) and exits
   1. (Without the hash.) */
static inline void ev_verify(struct ev_got *g, const uint8_t *buf, size_t n, const char *who) {
    long bad = ev_check(buf, n, g->at);
    if (bad >= 0) {
        printf("%swrong byte at offset %llu\n", who, (unsigned long long)(g->at + (uint64_t)bad));
        fflush(stdout);
        ev_explain(buf, n, g->at, (size_t)bad);
        exit(1);
    }
    g->at += n;
}

/* ev_verify, and the bytes go into the hash. */
static inline void ev_take(struct ev_got *g, const uint8_t *buf, size_t n, const char *who) {
    ev_verify(g, buf, n, who);
    g->hash = ev_fnv(g->hash, buf, n);
}

static inline uint8_t *ev_map(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}

/* Sets or clears O_NONBLOCK. */
static inline void ev_nonblock(int fd, int on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) != 0) { perror("fcntl"); exit(2); }
}

/* Writes stream bytes [from, to) on a blocking fd in writes of up to wsize
   bytes; returns the offset reached (short of `to` only if a write failed,
   with errno set). */
static inline uint64_t ev_write_stream(int fd, uint64_t from, uint64_t to, size_t wsize) {
    uint8_t *buf = ev_map(wsize);
    uint64_t at = from;
    while (at < to) {
        size_t n = to - at < wsize ? (size_t)(to - at) : wsize;
        ev_fill(buf, n, at);
        for (size_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w == 0) { /* never the kernel's answer to a write of n > 0 bytes */
                fprintf(stderr, "write returned 0 at offset %llu\n", (unsigned long long)(at + off));
                errno = EIO;
            }
            if (w <= 0) {
                int e = errno;
                munmap(buf, wsize);
                errno = e;
                return at + off;
            }
            off += (size_t)w;
        }
        at += n;
    }
    munmap(buf, wsize);
    return at;
}
#endif
