/*
 * What setting up a ring costs, as the library does it for each connection
 * and direction: the reader creates a memfd of the ring's size and maps it
 * MAP_POPULATE (the kernel allocates and zeroes every page), the writer maps
 * it MAP_POPULATE too. Not part of the library or the suite; the figures
 * are quoted in docs/guide/modes.md ("Choosing a mode").
 *
 * usage: ring_setup MIB [ROUNDS]   -> one line per round, µs of each step
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: ring_setup MIB [ROUNDS]\n"); return 2; }
    size_t bytes = strtoull(argv[1], 0, 0) << 20;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (bytes == 0 || rounds < 1) { fprintf(stderr, "need MIB >= 1 and ROUNDS >= 1\n"); return 2; }
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        int fd = memfd_create("ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0) { perror("memfd"); return 1; }
        void *reader = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        double t1 = now();
        void *writer = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        double t2 = now();
        if (reader == MAP_FAILED || writer == MAP_FAILED) { perror("mmap"); return 1; }
        printf("%zu MiB: reader creates and populates %.0f us, writer maps %.0f us\n", bytes >> 20, (t1 - t0) * 1e6,
               (t2 - t1) * 1e6);
        munmap(reader, bytes);
        munmap(writer, bytes);
        close(fd);
    }
    return 0;
}
