/*
 * One copy per size given, with the function named, each checked byte for
 * byte: for tests of the threshold boundary.
 *
 * usage: sizes memcpy|memmove|mempcpy N...
 */
#define _GNU_SOURCE
#include <string.h>
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s memcpy|memmove|mempcpy N...\n", argv[0]); return 2; }
    for (int i = 2; i < argc; i++) {
        size_t n = strtoull(argv[i], NULL, 0);
        uint8_t *src = map_or_die(n + 1), *dst = map_or_die(n + 1);
        fill(src, n, (uint32_t)n);
        void *ret, *want = dst;
        if (strcmp(argv[1], "memmove") == 0) ret = memmove(dst, src, n);
        else if (strcmp(argv[1], "mempcpy") == 0) { ret = mempcpy(dst, src, n); want = dst + n; }
        else ret = memcpy(dst, src, n);
        if (ret != want || check(dst, n, (uint32_t)n) >= 0) { printf("%s of %zu bytes wrong\n", argv[1], n); return 1; }
        munmap(src, n + 1);
        munmap(dst, n + 1);
    }
    printf("%d copies ok\n", argc - 2);
    return 0;
}
