/*
 * Prints a line, makes one large copy (so the hooks are exercised), prints
 * LD_PRELOAD or the number of threads when asked, and exits with the status
 * given.
 *
 * usage: echo_exit STATUS [preload|threads]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <string.h>
#include "common.h"

int main(int argc, char **argv) {
    int status = argc > 1 ? atoi(argv[1]) : 0;
    size_t n = 2u << 20;
    uint8_t *src = map_or_die(n), *dst = map_or_die(n);
    fill(src, n, 3);
    memcpy(dst, src, n);
    printf("hello from the program: %s\n", check(dst, n, 3) < 0 ? "bytes ok" : "BYTES WRONG");
    if (argc > 2 && strcmp(argv[2], "preload") == 0) {
        const char *p = getenv("LD_PRELOAD");
        printf("LD_PRELOAD=%s\n", p ? p : "(unset)");
    }
    if (argc > 2 && strcmp(argv[2], "threads") == 0) {
        int threads = 0;
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;
        while (d && (e = readdir(d))) threads += e->d_name[0] != '.';
        if (d) closedir(d);
        printf("threads=%d\n", threads);
    }
    return status;
}
