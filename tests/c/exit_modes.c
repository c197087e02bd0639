/*
 * Makes COUNT large copies, then ends the way MODE says, so tests can check
 * the stats file each way leaves behind. Also checks that errno survives the
 * copies, the first of which starts the library's worker pool.
 *
 * usage: exit_modes MODE [COUNT]
 *   MODE: return | exit | _exit | _Exit | sleep (waits to be killed)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODE [COUNT]\n", argv[0]); return 2; }
    int count = argc > 2 ? atoi(argv[2]) : 3;
    size_t n = 4u << 20;
    uint8_t *src = map_or_die(n), *dst = map_or_die(n);
    fill(src, n, 11);
    errno = 4321;
    for (int i = 0; i < count; i++) {
        memcpy(dst, src, n);
        if (errno != 4321) { printf("errno changed to %d by copy %d\n", errno, i); return 1; }
        if (check(dst, n, 11) >= 0) return 1;
    }
    printf("%d copies done, errno kept\n", count);
    fflush(stdout);
    const char *mode = argv[1];
    if (strcmp(mode, "exit") == 0) exit(0);
    if (strcmp(mode, "_exit") == 0) _exit(0);
    if (strcmp(mode, "_Exit") == 0) _Exit(0);
    if (strcmp(mode, "sleep") == 0) for (;;) pause();
    return 0;
}
