/*
 * Linked against memcpy@GLIBC_2.2.5, the version that glibc made an alias of
 * memmove: old binaries copy overlapping regions with memcpy and expect it to
 * work. Checks such copies, large and small, in both directions, and that
 * errno survives a large copy.
 *
 * usage: legacy_memcpy
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include "common.h"

__asm__(".symver memcpy, memcpy@GLIBC_2.2.5");

int main(void) {
    size_t n = 6u << 20, dist = 1u << 20;
    uint8_t *buf = map_or_die(n + dist);
    int bad = 0;
    for (int up = 0; up < 2; up++) {
        for (size_t d = dist; d >= 64; d /= 64) {
            fill(buf, n + d, (uint32_t)d);
            if (up) memcpy(buf + d, buf, n); else memcpy(buf, buf + d, n);
            uint8_t *got = up ? buf + d : buf;
            for (size_t i = 0; i < n; i++)
                if (got[i] != pat(i + (up ? 0 : d), (uint32_t)d)) { printf("overlap up=%d d=%zu: byte %zu wrong\n", up, d, i); bad++; break; }
        }
    }
    errno = 1234;
    memcpy(buf, buf + dist, n);
    if (errno != 1234) { printf("errno changed to %d\n", errno); bad++; }
    printf("legacy memcpy: %d bad\n", bad);
    return bad != 0;
}
