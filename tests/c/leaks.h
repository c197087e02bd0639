/* What a process holds, from /proc/self: open fds, mappings of the
   library's ring memfds, threads. A long-lived test process takes these
   before and after its transfers: what the library made for a transfer
   must be gone once the transfer's fds are closed. */
#ifndef IPC_OFFLOAD_TEST_LEAKS_H
#define IPC_OFFLOAD_TEST_LEAKS_H
#include <dirent.h>
#include <stdio.h>
#include <string.h>

/* Entries of a /proc directory, less "." and ".." (and, for fd, the
   directory's own fd). -1 if unreadable. */
static inline long proc_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* opendir's own fd */
}

/* Lines of /proc/self/maps that contain `what`. */
static inline long maps_with(const char *what) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[4096];
    long n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, what)) n++;
    fclose(f);
    return n;
}

struct holdings {
    long fds, rings, memfds, threads;
};

/* The library's rings are memfds named "ipc-offload-ring"
   (ring/src/lib.rs MEMFD_NAME): "/memfd:ipc-offload-ring (deleted)". */
static inline struct holdings holdings_now(void) {
    struct holdings h = {proc_entries("/proc/self/fd"), maps_with("/memfd:ipc-offload-ring"), maps_with("/memfd:"),
                         proc_entries("/proc/self/task")};
    return h;
}

/* Prints "LABEL: fds A -> B, ring maps ..., threads ..." on stdout and
   returns whether `after` holds no more than `before`. */
static inline int holdings_same(const char *label, struct holdings before, struct holdings after) {
    int same = after.fds == before.fds && after.rings == before.rings && after.memfds == before.memfds &&
               after.threads == before.threads;
    printf("%s: fds %ld -> %ld, ring maps %ld -> %ld, memfd maps %ld -> %ld, threads %ld -> %ld: %s\n", label,
           before.fds, after.fds, before.rings, after.rings, before.memfds, after.memfds, before.threads,
           after.threads, same ? "no leak" : "LEAK");
    fflush(stdout);
    return same;
}
#endif
