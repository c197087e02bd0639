/*
 * Built with -O2 -D_FORTIFY_SOURCE=2: copies into objects whose size the
 * compiler knows, with lengths it does not, compile to __memcpy_chk,
 * __memmove_chk and __mempcpy_chk.
 *
 * usage: fortify ok N        copy/move N bytes (N <= 8 MiB) and check them
 *        fortify overflow N  memcpy N bytes into an 8 MiB object: must abort
 *        fortify moveover N  memmove N bytes into an 8 MiB object: must abort
 *        fortify pcpyover N  mempcpy N bytes into an 8 MiB object: must abort
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OBJ (8u << 20)
static struct { unsigned char data[OBJ]; } a, b;
static unsigned char spill[2 * OBJ]; /* room for an overflowing copy to read from */

static unsigned char pat(size_t i) { return (unsigned char)(i * 131 + (i >> 9)); }

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s ok|overflow|moveover|pcpyover N\n", argv[0]); return 2; }
    size_t n = strtoull(argv[2], NULL, 0);
    for (size_t i = 0; i < OBJ; i++) b.data[i] = pat(i);
    if (strcmp(argv[1], "overflow") == 0) {
        memcpy(a.data, spill, n);        /* __memcpy_chk(a.data, spill, n, OBJ) */
        puts("not reached");
        return 0;
    }
    if (strcmp(argv[1], "moveover") == 0) {
        memmove(a.data, spill, n);       /* __memmove_chk */
        puts("not reached");
        return 0;
    }
    if (strcmp(argv[1], "pcpyover") == 0) {
        mempcpy(a.data, spill, n);       /* __mempcpy_chk */
        puts("not reached");
        return 0;
    }
    if (n < 8 || n > OBJ) { fprintf(stderr, "N must be from 8 to %u\n", OBJ); return 2; }
    /* Hide the sizes from the optimiser: knowing their range, GCC would
     * prove some copies in bounds and call the unchecked functions. */
    volatile size_t opaque_n = n, opaque_m = n - 1, opaque_p = n - 5;
    size_t m = opaque_m, p = opaque_p;
    n = opaque_n;
    memcpy(a.data, b.data, n);           /* __memcpy_chk */
    for (size_t i = 0; i < n; i++) if (a.data[i] != pat(i)) { printf("memcpy byte %zu wrong\n", i); return 1; }
    memmove(a.data + 1, a.data, m);      /* __memmove_chk, overlapping */
    for (size_t i = 1; i < n; i++) if (a.data[i] != pat(i - 1)) { printf("memmove byte %zu wrong\n", i); return 1; }
    unsigned char *end = mempcpy(a.data, b.data + 5, p); /* __mempcpy_chk */
    if (end != a.data + n - 5) { puts("mempcpy returned the wrong end"); return 1; }
    for (size_t i = 0; i < n - 5; i++) if (a.data[i] != pat(i + 5)) { printf("mempcpy byte %zu wrong\n", i); return 1; }
    printf("fortified copies of %zu bytes ok\n", n);
    return 0;
}
