/*
 * Many connections held open at once, each used in turn: PAIRS Unix
 * socket pairs or pipes, all created first (optionally moved to fd numbers
 * from FIRST_FD up), then a writer child writes BYTES to each in turn (1
 * MiB blocking writes, connection i carrying pat(_, i)) while this process
 * reads each in turn (1 MiB blocking reads, every byte checked). For each
 * connection it measures what its reads took through the kernel
 * (/proc/self/io rchar); a connection whose reads took less than half of
 * BYTES through the kernel took the fast path. Every fd stays open until
 * the end, so the process holds PAIRS reader channels at once.
 *
 * With PAUSE_MS, the reader pauses that long between two connections (an
 * idle connection's ring may then go to the next one).
 *
 * Prints "pairs N fast F" and "transfer ok"; "SKIPPED: reason" (exit 0)
 * when the fd limit cannot be raised enough for FIRST_FD (0: no move).
 *
 * usage: many_pairs unix|pipe PAIRS BYTES [FIRST_FD [PAUSE_MS]]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include "common.h"

#define MIB ((size_t)1 << 20)

static int io_fd = -1;

static long rchar(void) {
    char text[512];
    ssize_t n = pread(io_fd, text, sizeof text - 1, 0);
    if (n <= 0) return -1;
    text[n] = 0;
    const char *at = strstr(text, "rchar: ");
    return at ? atol(at + 7) : -1;
}

/* Moves fd to the lowest free number at or above `at`. */
static int move_fd(int fd, int at) {
    int moved = fcntl(fd, F_DUPFD, at);
    if (moved < 0) { perror("F_DUPFD"); exit(2); }
    close(fd);
    return moved;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: many_pairs unix|pipe PAIRS BYTES [FIRST_FD [PAUSE_MS]]\n");
        return 2;
    }
    int is_unix = strcmp(argv[1], "unix") == 0;
    int pairs = atoi(argv[2]);
    size_t bytes = strtoull(argv[3], NULL, 0);
    int first_fd = argc > 4 ? atoi(argv[4]) : 0;
    long pause_ms = argc > 5 ? atol(argv[5]) : 0;

    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    rlim_t need = (rlim_t)(first_fd > 0 ? first_fd : 0) + (rlim_t)pairs * 4 + 256;
    if (lim.rlim_cur < need) {
        struct rlimit want = {need, lim.rlim_max > need ? lim.rlim_max : need};
        if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
            printf("SKIPPED: RLIMIT_NOFILE is %lu (hard %lu), %lu needed, and raising it failed: %s\n",
                   (unsigned long)lim.rlim_cur, (unsigned long)lim.rlim_max, (unsigned long)need,
                   strerror(errno));
            return 0;
        }
    }
    io_fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC);

    int (*ends)[2] = calloc((size_t)pairs, sizeof *ends); /* [i][0] read, [i][1] write */
    for (int i = 0; i < pairs; i++) {
        int fds[2];
        int r = is_unix ? socketpair(AF_UNIX, SOCK_STREAM, 0, fds) : pipe(fds);
        if (r != 0) { perror("socketpair/pipe"); return 2; }
        ends[i][0] = fds[0];
        ends[i][1] = fds[1];
        if (first_fd > 0) {
            ends[i][0] = move_fd(ends[i][0], first_fd);
            ends[i][1] = move_fd(ends[i][1], first_fd);
        }
    }
    if (first_fd > 0) printf("lowest connection fd %d\n", ends[0][0] < ends[0][1] ? ends[0][0] : ends[0][1]);

    uint8_t *buf = map_or_die(MIB);
    pid_t writer = fork();
    if (writer < 0) { perror("fork"); return 2; }
    if (writer == 0) {
        for (int i = 0; i < pairs; i++) close(ends[i][0]);
        for (int i = 0; i < pairs; i++) {
            for (size_t off = 0; off < bytes;) {
                size_t n = bytes - off < MIB ? bytes - off : MIB;
                for (size_t k = 0; k < n; k++) buf[k] = pat(off + k, (uint32_t)i);
                ssize_t w = write(ends[i][1], buf, n);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) { perror("write"); _exit(3); }
                off += (size_t)w;
            }
        }
        /* Every fd open until the reader has read everything (SIGTERM). */
        for (;;) pause();
    }
    for (int i = 0; i < pairs; i++) close(ends[i][1]);

    int fast = 0, bad = 0;
    for (int i = 0; i < pairs && !bad; i++) {
        if (i > 0 && pause_ms > 0) {
            struct timespec pause = {pause_ms / 1000, (pause_ms % 1000) * 1000000};
            nanosleep(&pause, NULL);
        }
        struct stream_check s = {(uint32_t)i, 0, 0};
        long before = rchar();
        while (s.checked < bytes && !s.bad) {
            size_t want = bytes - s.checked < MIB ? bytes - s.checked : MIB;
            ssize_t r = read(ends[i][0], buf, want);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                printf("connection %d: read returned %zd (%s) at %zu\n", i, r, r ? strerror(errno) : "EOF", s.checked);
                bad = 1;
                break;
            }
            stream_verify(&s, buf, (size_t)r);
        }
        bad |= s.bad;
        if ((size_t)(rchar() - before) < bytes / 2) fast++;
    }
    kill(writer, SIGTERM);
    int status;
    waitpid(writer, &status, 0);
    printf("pairs %d fast %d\n", pairs, fast);
    if (bad) return 1;
    printf("transfer ok\n");
    return 0;
}
