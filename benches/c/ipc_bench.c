/*
 * IPC workloads between two processes over a Unix stream socketpair or a
 * pipe, for ipc-bench (run with and without the library, alternately).
 * Prints one number on stdout.
 *
 * usage: ipc_bench stream TOTAL WRITE READ   -> GB/s, writer child to reader parent
 *        ipc_bench reqresp SIZE ROUNDS       -> median round trip in µs: the parent
 *                                               sends SIZE bytes, the child answers
 *                                               SIZE bytes, both read with MSG_WAITALL
 *        ipc_bench pingpong ROUNDS SIZE      -> ns per round trip of SIZE-byte messages
 *        ipc_bench pipe TOTAL WRITE READ     -> GB/s over a pipe, writer child to reader
 *                                               parent (the go signal on a second pipe)
 *        ipc_bench pipe-cpu TOTAL WRITE READ -> the same transfer's CPU seconds (user +
 *                                               sys, both processes) per GiB: the
 *                                               parent's getrusage(RUSAGE_SELF) from the
 *                                               go signal to the child's reaping, plus
 *                                               RUSAGE_CHILDREN (the writer's whole life)
 *
 * Buffers are allocated and touched before the clock starts; every process
 * sends from and receives into the same buffers each time.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint8_t *buffer(size_t n, int byte) {
    uint8_t *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    memset(p, byte, n);
    return p;
}

static void send_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) { perror("write"); exit(1); }
        p += w;
        n -= (size_t)w;
    }
}

static void recv_all(int fd, uint8_t *p, size_t n) {
    while (n) {
        ssize_t r = recv(fd, p, n, MSG_WAITALL);
        if (r <= 0) { perror("recv"); exit(1); }
        p += r;
        n -= (size_t)r;
    }
}

static double cpu_seconds(int who) {
    struct rusage u;
    if (getrusage(who, &u) != 0) { perror("getrusage"); exit(2); }
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

/* A writer child sends TOTAL bytes in WRITE-byte writes through a pipe, once
 * the parent's go byte arrives on a second pipe; the parent reads them with
 * READ-byte reads. Prints GB/s, or with `report_cpu` CPU seconds per GiB. */
static int pipe_stream(size_t total, size_t wsize, size_t rsize, int report_cpu) {
    int data[2], go[2];
    if (pipe(data) != 0 || pipe(go) != 0) { perror("pipe"); return 2; }
    uint8_t byte = 1;
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        close(data[0]);
        close(go[1]);
        uint8_t *buf = buffer(wsize, 7);
        if (read(go[0], &byte, 1) != 1) { perror("read go"); _exit(1); }
        for (size_t sent = 0; sent < total;) {
            size_t n = total - sent < wsize ? total - sent : wsize;
            send_all(data[1], buf, n);
            sent += n;
        }
        _exit(0);
    }
    close(data[1]);
    close(go[0]);
    uint8_t *buf = buffer(rsize, 0);
    double cpu0 = cpu_seconds(RUSAGE_SELF);
    double t0 = now();
    send_all(go[1], &byte, 1);
    size_t got = 0, last = 0;
    while (got < total) {
        ssize_t r = read(data[0], buf, rsize);
        if (r <= 0) { perror(r < 0 ? "read" : "read: early end of file"); return 1; }
        got += (size_t)r;
        last = (size_t)r;
    }
    double dt = now() - t0;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ipc_bench pipe: the writer failed (status %#x)\n", status);
        return 1;
    }
    double cpu = cpu_seconds(RUSAGE_SELF) - cpu0 + cpu_seconds(RUSAGE_CHILDREN);
    for (size_t i = 0; i < last; i++) /* the last read, after the clock */
        if (buf[i] != 7) { fprintf(stderr, "ipc_bench pipe: byte %zu of the last read is %d, not 7\n", i, buf[i]); return 1; }
    if (report_cpu)
        printf("%.4f\n", cpu / ((double)total / (double)(1u << 30)));
    else
        printf("%.4f\n", (double)total / dt / 1e9);
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: see the comment in ipc_bench.c\n"); return 2; }
    if ((strcmp(argv[1], "pipe") == 0 || strcmp(argv[1], "pipe-cpu") == 0) && argc == 5)
        return pipe_stream(strtoull(argv[2], 0, 0), strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0),
                           strcmp(argv[1], "pipe-cpu") == 0);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) { perror("socketpair"); return 2; }
    if (strcmp(argv[1], "stream") == 0 && argc == 5) {
        size_t total = strtoull(argv[2], 0, 0), wsize = strtoull(argv[3], 0, 0), rsize = strtoull(argv[4], 0, 0);
        uint8_t go = 1;
        pid_t pid = fork();
        if (pid == 0) {
            uint8_t *buf = buffer(wsize, 7);
            recv_all(sv[1], &go, 1);
            for (size_t sent = 0; sent < total;) {
                size_t n = total - sent < wsize ? total - sent : wsize;
                send_all(sv[1], buf, n);
                sent += n;
            }
            _exit(0);
        }
        uint8_t *buf = buffer(rsize, 0);
        double t0 = now();
        send_all(sv[0], &go, 1);
        size_t got = 0;
        while (got < total) {
            ssize_t r = read(sv[0], buf, rsize);
            if (r <= 0) { perror("read"); return 1; }
            got += (size_t)r;
        }
        double dt = now() - t0;
        waitpid(pid, NULL, 0);
        printf("%.4f\n", (double)total / dt / 1e9);
        return 0;
    }
    if (strcmp(argv[1], "reqresp") == 0) {
        size_t size = strtoull(argv[2], 0, 0);
        int rounds = atoi(argv[3]);
        pid_t pid = fork();
        uint8_t *buf = buffer(size, pid == 0 ? 2 : 1);
        if (pid == 0) {
            for (int i = 0; i < rounds + 1; i++) {
                recv_all(sv[1], buf, size);
                send_all(sv[1], buf, size);
            }
            _exit(0);
        }
        double *rtt = calloc((size_t)rounds, sizeof *rtt);
        send_all(sv[0], buf, size); /* warm-up round */
        recv_all(sv[0], buf, size);
        for (int i = 0; i < rounds; i++) {
            double t0 = now();
            send_all(sv[0], buf, size);
            recv_all(sv[0], buf, size);
            rtt[i] = now() - t0;
        }
        waitpid(pid, NULL, 0);
        qsort(rtt, (size_t)rounds, sizeof *rtt, cmp);
        printf("%.1f\n", rtt[rounds / 2] * 1e6);
        return 0;
    }
    if (strcmp(argv[1], "pingpong") == 0) {
        int rounds = atoi(argv[2]);
        size_t size = strtoull(argv[3], 0, 0);
        uint8_t buf[4096];
        memset(buf, 1, sizeof buf);
        if (size > sizeof buf) return 2;
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0; i < rounds; i++) {
                recv_all(sv[1], buf, size);
                send_all(sv[1], buf, size);
            }
            _exit(0);
        }
        double t0 = now();
        for (int i = 0; i < rounds; i++) {
            send_all(sv[0], buf, size);
            recv_all(sv[0], buf, size);
        }
        double dt = now() - t0;
        waitpid(pid, NULL, 0);
        printf("%.1f\n", dt / rounds * 1e9);
        return 0;
    }
    fprintf(stderr, "unknown workload %s\n", argv[1]);
    return 2;
}
