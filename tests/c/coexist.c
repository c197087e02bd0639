/*
 * What the coexistence tests run under our library and another preload:
 * copies of every size, a pipe transfer between two processes, and a note
 * of which object provides malloc.
 *
 * usage: coexist copies   (small and large memcpy and memmove, checked)
 *        coexist pipe TOTAL   (a child writes TOTAL bytes 1 MiB at a time,
 *                              the parent reads and checks them)
 * Prints "copies ok", "pipe TOTAL bytes ok" and "malloc from LIB".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/wait.h>
#include "common.h"

static const uint32_t SEED = 0xc0e;

static int copies(void) {
    size_t big = 8u << 20;
    uint8_t *src = map_or_die(big + 4096), *dst = map_or_die(big + 4096);
    fill(src, big, SEED);
    for (int i = 0; i < 4; i++) {
        memset(dst, 0, big);
        memcpy(dst, src, big);
        if (check(dst, big, SEED) >= 0) { printf("large memcpy %d differs\n", i); return 1; }
    }
    for (size_t n = 1; n <= 4096; n *= 2) {
        memset(dst, 0, n);
        memcpy(dst, src, n);
        if (check(dst, n, SEED) >= 0) { printf("memcpy of %zu differs\n", n); return 1; }
    }
    /* Overlapping moves, large and small: src starts at 0, dst 4096 later. */
    for (size_t n = 64; n <= big; n *= 8) {
        fill(src, n + 4096, SEED);
        memmove(src + 4096, src, n);
        if (check(src + 4096, n, SEED) >= 0) { printf("memmove of %zu differs\n", n); return 1; }
    }
    char *heap = malloc(big); /* through whichever malloc is first */
    if (!heap) return 1;
    memcpy(heap, dst, big);
    if (check((uint8_t *)heap, big, SEED) >= 0) { printf("heap copy differs\n"); return 1; }
    free(heap);
    printf("copies ok\n");
    return 0;
}

static int pipe_transfer(size_t total) {
    int p[2];
    if (pipe(p)) { perror("pipe"); return 1; }
    size_t piece = 1u << 20;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        uint8_t *buf = map_or_die(piece);
        for (size_t sent = 0; sent < total; sent += piece) {
            for (size_t i = 0; i < piece; i++) buf[i] = pat(sent + i, SEED);
            for (size_t off = 0; off < piece;) {
                ssize_t w = write(p[1], buf + off, piece - off);
                if (w <= 0) { perror("write"); _exit(1); }
                off += (size_t)w;
            }
        }
        exit(0); /* not _exit: a shim's destructor reports the writer's calls */
    }
    close(p[1]);
    uint8_t *buf = map_or_die(piece);
    struct stream_check s = {SEED, 0, 0};
    for (;;) {
        ssize_t r = read(p[0], buf, piece);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        stream_verify(&s, buf, (size_t)r);
    }
    int st;
    waitpid(pid, &st, 0);
    if (s.bad || s.checked != total || !WIFEXITED(st) || WEXITSTATUS(st)) {
        printf("pipe: %zu of %zu bytes, bad %d, writer status %#x\n", s.checked, total, s.bad, st);
        return 1;
    }
    printf("pipe %zu bytes ok\n", total);
    return 0;
}

int main(int argc, char **argv) {
    int rc = 2;
    if (argc == 2 && strcmp(argv[1], "copies") == 0) rc = copies();
    else if (argc == 3 && strcmp(argv[1], "pipe") == 0) rc = pipe_transfer(strtoull(argv[2], 0, 0));
    else fprintf(stderr, "usage: see the comment at the top of coexist.c\n");
    Dl_info info = {0};
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    printf("malloc from %s\n", m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "?");
    return rc;
}
