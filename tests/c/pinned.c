/*
 * The thread that makes the first large copy has pinned itself to one CPU:
 * the library's workers must still run on every CPU the process may use.
 * Prints the allowed-CPU list of the main thread and of each copy worker.
 *
 * usage: pinned
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sched.h>
#include <string.h>
#include "common.h"

static void show(const char *task) {
    char path[256], line[512], name[64] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/status", task);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Name:", 5) == 0) sscanf(line + 5, "%63s", name);
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0 && strcmp(name, "ipc-offload-cp") == 0)
            printf("worker %s", line + 18 + strspn(line + 18, " \t"));
    }
    fclose(f);
}

int main(void) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) { perror("sched_setaffinity"); return 2; }
    size_t n = 8u << 20;
    uint8_t *src = map_or_die(n), *dst = map_or_die(n);
    fill(src, n, 1);
    memcpy(dst, src, n);
    if (check(dst, n, 1) >= 0) return 1;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') show(e->d_name);
    if (d) closedir(d);
    return 0;
}
