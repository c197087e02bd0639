/*
 * What setting up a ring costs, as the library does it for each connection
 * and direction: the reader creates a memfd of the ring's size, writes its
 * header page, and maps it; the writer maps it too. Two ways, in each round:
 *   populated   both map it MAP_POPULATE (the kernel allocates and zeroes
 *               every page up front): what the library did before
 *   on demand   plain mappings, the header page written (what the library
 *               does): a page is allocated by its first use; then the
 *               writer writes every page once, as a first pass of a stream
 *               through the ring would, to show where the cost went
 * Not part of the library or the suite; the figures are quoted in
 * docs/guide/modes.md ("Choosing a mode") and docs/ipc-protocol.md ("The
 * ring").
 *
 * usage: ring_setup MIB [ROUNDS]   -> one line per round, µs of each step
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Sets up one ring: us[0] the reader's µs, us[1] the writer's, us[2] the
 * writer's first write of every buffer page. */
static int setup(size_t bytes, int populate, double us[3]) {
    int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
    double t0 = now();
    int fd = memfd_create("ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        perror("memfd");
        return -1;
    }
    char *reader = mmap(NULL, bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (reader == MAP_FAILED) { perror("mmap"); return -1; }
    memset(reader, 0, 4096); /* the header */
    double t1 = now();
    char *writer = mmap(NULL, bytes, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (writer == MAP_FAILED) { perror("mmap"); return -1; }
    double t2 = now();
    for (size_t off = 8192; off < bytes; off += 4096) writer[off] = 1;
    double t3 = now();
    us[0] = (t1 - t0) * 1e6;
    us[1] = (t2 - t1) * 1e6;
    us[2] = (t3 - t2) * 1e6;
    munmap(reader, bytes);
    munmap(writer, bytes);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: ring_setup MIB [ROUNDS]\n"); return 2; }
    size_t bytes = strtoull(argv[1], 0, 0) << 20;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (bytes == 0 || rounds < 1) { fprintf(stderr, "need MIB >= 1 and ROUNDS >= 1\n"); return 2; }
    for (int r = 0; r < rounds; r++) {
        double p[3], d[3];
        if (setup(bytes, 1, p) != 0 || setup(bytes, 0, d) != 0) return 1;
        printf("%zu MiB: populated: reader %.0f us, writer %.0f us (first pass %.0f us); "
               "on demand: reader %.0f us, writer %.0f us, set-up %.0f us (first pass %.0f us)\n",
               bytes >> 20, p[0], p[1], p[2], d[0], d[1], d[0] + d[1], d[2]);
    }
    return 0;
}
