/*
 * The victim of tests/hostile.rs: an ordinary reader or writer on an
 * inherited socket or pipe end, run under the library, whose peer (the
 * test) speaks the shared-memory protocol with garbage.
 *
 * usage: hostile_victim read FD LEN OUT
 *   reads FD to EOF, LEN bytes per read(), appending what each read returns
 *   to file OUT. The buffer lies between two PROT_NONE guard pages (a copy
 *   past either end faults), and every byte of it is set to a canary before
 *   each read: after a read of r bytes, bytes [r, LEN) must still hold it.
 *   Prints "read BYTES READS end=eof|errno=E fds=A->B" (open fds at the
 *   start and at the end); exits 3 if a canary changed.
 * usage: hostile_victim write FD LEN SEED [CHUNK [block|nonblock]]
 *   writes LEN bytes of pat(i, SEED) to FD (write() until all are sent or
 *   it fails, at most CHUNK bytes per call when CHUNK is given and not 0),
 *   closes FD; "nonblock" sets O_NONBLOCK on FD first and waits in poll()
 *   for POLLOUT after each EAGAIN. Prints "wrote BYTES end=ok|errno=E
 *   calls=N ms=T fds=A->B" (write() calls, and how long the writes took);
 *   exits 3 if the source buffer changed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include "common.h"

#define CANARY 0xa5
#define PAGE 4096

/* Open fds when main starts (the library's constructor has run). */
static int fds_at_start;

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n - 1; /* the directory's own fd */
}

/* LEN bytes between two inaccessible pages. */
static uint8_t *guarded(size_t len) {
    size_t inner = (len + PAGE - 1) / PAGE * PAGE;
    uint8_t *p = mmap(NULL, inner + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + PAGE, inner, PROT_READ | PROT_WRITE) != 0) { perror("mmap"); exit(2); }
    /* The buffer ends at the upper guard page exactly. */
    return p + PAGE + (inner - len);
}

static int do_read(int fd, size_t len, const char *out) {
    FILE *f = fopen(out, "wb");
    if (!f) { perror(out); return 2; }
    uint8_t *buf = guarded(len);
    size_t total = 0, reads = 0;
    int err = 0;
    for (;;) {
        memset(buf, CANARY, len);
        ssize_t r = read(fd, buf, len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { err = errno; break; }
        if (r == 0) break;
        if ((size_t)r > len) { printf("read returned %zd for %zu\n", r, len); return 3; }
        for (size_t i = (size_t)r; i < len; i++)
            if (buf[i] != CANARY) {
                printf("read of %zd bytes changed byte %zu of the buffer\n", r, i);
                return 3;
            }
        if (fwrite(buf, 1, (size_t)r, f) != (size_t)r) { perror("fwrite"); return 2; }
        total += (size_t)r;
        reads++;
    }
    fclose(f);
    close(fd);
    if (err) printf("read %zu %zu end=errno=%d fds=%d->%d\n", total, reads, err, fds_at_start, open_fds());
    else printf("read %zu %zu end=eof fds=%d->%d\n", total, reads, fds_at_start, open_fds());
    return 0;
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static int do_write(int fd, size_t len, uint32_t seed, size_t chunk, int nonblocking) {
    signal(SIGPIPE, SIG_IGN);
    uint8_t *src = guarded(len);
    fill(src, len, seed);
    if (nonblocking && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) { perror("fcntl"); return 2; }
    size_t sent = 0, calls = 0;
    int err = 0;
    long start = now_ms();
    while (sent < len) {
        size_t n = len - sent;
        if (chunk && n > chunk) n = chunk;
        ssize_t r = write(fd, src + sent, n);
        calls++;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN && nonblocking) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            poll(&p, 1, -1);
            continue;
        }
        if (r <= 0) { err = r < 0 ? errno : -1; break; }
        if ((size_t)r > n) { printf("write returned %zd for %zu\n", r, n); return 3; }
        sent += (size_t)r;
    }
    long ms = now_ms() - start;
    close(fd);
    long bad = check(src, len, seed);
    if (bad >= 0) { printf("the source changed at byte %ld\n", bad); return 3; }
    if (err) printf("wrote %zu end=errno=%d calls=%zu ms=%ld fds=%d->%d\n", sent, err, calls, ms, fds_at_start, open_fds());
    else printf("wrote %zu end=ok calls=%zu ms=%ld fds=%d->%d\n", sent, calls, ms, fds_at_start, open_fds());
    return 0;
}

int main(int argc, char **argv) {
    fds_at_start = open_fds();
    if (argc == 5 && strcmp(argv[1], "read") == 0)
        return do_read(atoi(argv[2]), strtoul(argv[3], NULL, 0), argv[4]);
    if (argc >= 5 && argc <= 7 && strcmp(argv[1], "write") == 0)
        return do_write(atoi(argv[2]), strtoul(argv[3], NULL, 0), (uint32_t)strtoul(argv[4], NULL, 0),
                        argc >= 6 ? strtoul(argv[5], NULL, 0) : 0, argc == 7 && strcmp(argv[6], "nonblock") == 0);
    fprintf(stderr, "usage: hostile_victim read FD LEN OUT | write FD LEN SEED [CHUNK [block|nonblock]]\n");
    return 2;
}
