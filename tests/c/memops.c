/*
 * Large memset and memcmp/bcmp calls, checked: for the memset and memcmp
 * classes (tests/dsa.rs runs it with and without the library; the output
 * must not differ).
 *
 * usage: memops MIB
 * Prints one line per call: what was asked and what came back (memcmp's
 * sign as <0, 0 or >0, bcmp's as equal/different), then "ok" when every
 * byte of every memset was right.
 */
#define _GNU_SOURCE
#include <string.h>
#include <strings.h>
#include "common.h"

static const char *sign(int r) { return r < 0 ? "<0" : r > 0 ? ">0" : "0"; }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MIB\n", argv[0]); return 2; }
    size_t n = (size_t)atoi(argv[1]) << 20;
    uint8_t *a = map_or_die(n + 64), *b = map_or_die(n + 64);
    int ok = 1;
    size_t sizes[] = {n, n / 2 + 4093, (3u << 20) + 1};
    for (int k = 0; k < 3; k++) {
        size_t len = sizes[k];
        int c = 0x40 + k;
        memset(a + k, c, len);
        for (size_t i = 0; i < len; i++) if (a[k + i] != c) { printf("memset %zu: byte %zu wrong\n", len, i); ok = 0; break; }
        printf("memset %zu bytes to %#x: done\n", len, c);
    }
    memset(a, 0x33, n);
    memset(b, 0x33, n);
    printf("memcmp equal: %s, bcmp: %s\n", sign(memcmp(a, b, n)), bcmp(a, b, n) ? "different" : "equal");
    size_t at[] = {0, n - 1, n / 3, (1u << 20) + 7};
    for (int k = 0; k < 4; k++) {
        b[at[k]] = (uint8_t)(k % 2 ? 0x10 : 0xf0);
        printf("memcmp, first difference at %zu: %s, bcmp: %s\n", at[k], sign(memcmp(a, b, n)), bcmp(a, b, n) ? "different" : "equal");
        printf("  reversed: %s\n", sign(memcmp(b, a, n)));
        b[at[k]] = 0x33;
    }
    printf("%s\n", ok ? "ok" : "BAD");
    return ok ? 0 : 1;
}
