/*
 * Fork and vfork around large copies.
 *
 * usage: forks fork N [W] the parent starts the copy pool, forks N children
 *                         that copy (each with a fresh pool) and exit; the
 *                         parent copies again afterwards. With W, each child
 *                         also checks that it runs W live copy workers of its
 *                         own (threads named ipc-offload-cp)
 *        forks busy N     a thread copies without pause while the main
 *                         thread forks N children, which copy and _exit:
 *                         no child may deadlock on the parent's state
 *        forks vfork N    N vfork children each make a large copy into
 *                         the parent's memory and _exit; the parent checks
 *
 * Exits 0 when every child exited 0 and every byte was right.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

#define N_BYTES ((size_t)12 << 20)

static int copy_and_check(uint32_t seed) {
    uint8_t *src = map_or_die(N_BYTES), *dst = map_or_die(N_BYTES);
    fill(src, N_BYTES, seed);
    memcpy(dst, src, N_BYTES);
    int ok = check(dst, N_BYTES, seed) < 0;
    munmap(src, N_BYTES);
    munmap(dst, N_BYTES);
    return ok;
}

/* Threads of this process named like the library's copy workers. */
static int live_workers(void) {
    int count = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], name[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(name, sizeof name, f) && strncmp(name, "ipc-offload-cp", 14) == 0) count++;
        fclose(f);
    }
    if (d) closedir(d);
    return count;
}

static int wait_all(int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int status;
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) bad++;
    }
    return bad;
}

/* A vfork child copies into the parent's memory and _exits; returns the
 * child's exit status (or -1). */
static int vfork_copy(uint8_t *dst, const uint8_t *src) {
    pid_t pid = vfork();
    if (pid == 0) {
        memcpy(dst, src, N_BYTES);
        _exit(0);
    }
    if (pid < 0) { perror("vfork"); return -1; }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static atomic_int stop;
static void *copier(void *arg) {
    (void)arg;
    uint32_t seed = 1;
    while (!stop)
        if (!copy_and_check(seed++)) { fprintf(stderr, "copier: wrong bytes\n"); exit(1); }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s fork|busy|vfork N [W]\n", argv[0]); return 2; }
    int n = atoi(argv[2]), bad = 0, workers = argc > 3 ? atoi(argv[3]) : -1;
    if (!copy_and_check(1)) return 1; /* starts the parent's pool */

    if (strcmp(argv[1], "fork") == 0) {
        for (int i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                int ok = copy_and_check(100 + i) && copy_and_check(200 + i);
                if (workers >= 0 && live_workers() != workers) {
                    fprintf(stderr, "child %d: %d live workers, expected %d\n", i, live_workers(), workers);
                    ok = 0;
                }
                exit(ok ? 0 : 1);
            }
            if (pid < 0) { perror("fork"); return 2; }
        }
        bad = wait_all(n);
        if (!copy_and_check(2)) bad++;
    } else if (strcmp(argv[1], "busy") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, copier, NULL);
        for (int i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) _exit(copy_and_check(300 + i) ? 0 : 1);
            if (pid < 0) { perror("fork"); return 2; }
            int status;
            if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) bad++;
        }
        stop = 1;
        pthread_join(t, NULL);
    } else if (strcmp(argv[1], "vfork") == 0) {
        uint8_t *src = map_or_die(N_BYTES), *dst = map_or_die(N_BYTES);
        for (int i = 0; i < n; i++) {
            fill(src, N_BYTES, 400 + i);
            memset(dst, 0, N_BYTES);
            if (vfork_copy(dst, src) != 0) bad++;
            if (check(dst, N_BYTES, 400 + i) >= 0) { fprintf(stderr, "vfork child %d: wrong bytes\n", i); bad++; }
        }
        if (!copy_and_check(3)) bad++;
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    printf("%s x %d: %d bad\n", argv[1], n, bad);
    return bad ? 1 : 0;
}
