/*
 * IPC workloads between two processes over a Unix stream socketpair or a
 * pipe, for ipc-bench and bench-suite (run with and without the library,
 * alternately). Prints one line on stdout. The socket workloads reqresp and
 * pingpong take an optional last argument TRANSPORT: unix (the default),
 * tcp4 or tcp6 (a TCP connection over 127.0.0.1 or ::1:
 * tests/c/stream_pair.h); xfer names it instead of unix.
 *
 * usage: ipc_bench stream TOTAL WRITE READ   -> GB/s, writer child to reader parent
 *        ipc_bench stream-cpu TOTAL WRITE READ -> the same transfer's CPU seconds per GiB
 *                                               (see pipe-cpu)
 *        ipc_bench reqresp SIZE ROUNDS       -> median round trip in µs: the parent
 *                                               sends SIZE bytes, the child answers
 *                                               SIZE bytes, both read with MSG_WAITALL
 *        ipc_bench pipe-reqresp SIZE ROUNDS  -> the same over two pipes (one each way),
 *                                               read in a loop of read(2) calls
 *        ipc_bench pingpong ROUNDS SIZE      -> ns per round trip of SIZE-byte messages
 *        ipc_bench conns COUNT SIZE          -> requests/s with a new connection per
 *                                               request: the parent connects to the
 *                                               child's listening socket (an abstract
 *                                               Unix address; TRANSPORT tcp4: 127.0.0.1),
 *                                               sends SIZE bytes, reads SIZE back
 *                                               (MSG_WAITALL), closes; COUNT times
 *        ipc_bench pipe TOTAL WRITE READ     -> GB/s over a pipe, writer child to reader
 *                                               parent
 *        ipc_bench pipe-cpu TOTAL WRITE READ -> the same transfer's CPU seconds (user +
 *                                               sys, both processes) per GiB: the
 *                                               parent's getrusage(RUSAGE_SELF) from the
 *                                               go signal to the child's reaping, plus
 *                                               RUSAGE_CHILDREN (the writer's whole life)
 *        ipc_bench xfer unix|tcp4|tcp6|pipe TOTAL WRITE READ
 *                                            -> one transfer of stream or pipe, all its
 *                                               figures: "GBPS CPU_S_PER_GIB T0 T1", T0
 *                                               and T1 the CLOCK_MONOTONIC seconds (one
 *                                               clock for every process of the machine)
 *                                               of the go signal and of the last read
 *
 * The streams (stream, stream-cpu, pipe, pipe-cpu, xfer) take an optional
 * last argument CONSUME: the reader adds up every byte of each read that
 * many times before its next read, as a consumer that parses its input
 * does (0, the default: it only checks the last read). With a consumer
 * slower than the copies, the writer waits for it, and how it waits shows
 * in the CPU figures.
 *
 * In the streams the go signal travels on a pipe of its own. Buffers are
 * allocated and touched before the clock starts; every process sends from
 * and receives into the same buffers each time.
 */
#define _GNU_SOURCE
#include "stream_pair.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
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

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void read_all(int fd, uint8_t *p, size_t n) {
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0) { perror(r < 0 ? "read" : "read: early end of file"); exit(1); }
        p += r;
        n -= (size_t)r;
    }
}

/* Adds up the N bytes at P, PASSES times: the consumer's work. */
static uint64_t consume(const uint8_t *p, size_t n, unsigned passes) {
    uint64_t sum = 0;
    for (unsigned k = 0; k < passes; k++)
        for (size_t i = 0; i < n; i++)
            sum += p[i];
    return sum;
}

/* What one transfer measured. */
struct transfer {
    double gbps, cpu_per_gib, t0, t1;
};

/* A writer child sends TOTAL bytes in WRITE-byte writes through a pipe
 * (`use_socket` 0) or a socketpair, once the parent's go byte arrives on a
 * pipe of its own; the parent reads them with READ-byte reads. Returns 0
 * and fills `out`, or the exit status to return. The reader consumes each
 * read `passes` times (see CONSUME above). */
static int transfer(const char *transport, size_t total, size_t wsize, size_t rsize, unsigned passes,
                    struct transfer *out) {
    int data[2], go[2];
    int use_socket = strcmp(transport, "pipe") != 0;
    if (use_socket ? stream_pair(transport, data) != 0 : pipe(data) != 0) {
        perror(transport);
        return 2;
    }
    if (pipe(go) != 0) { perror("pipe"); return 2; }
    /* A pipe reads at [0] and writes at [1]; a socketpair either way. */
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
    uint64_t sum = 0;
    while (got < total) {
        ssize_t r = read(data[0], buf, rsize);
        if (r <= 0) { perror(r < 0 ? "read" : "read: early end of file"); return 1; }
        got += (size_t)r;
        last = (size_t)r;
        sum += consume(buf, (size_t)r, passes);
    }
    double t1 = now();
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "ipc_bench: the writer failed (status %#x)\n", status);
        return 1;
    }
    double cpu = cpu_seconds(RUSAGE_SELF) - cpu0 + cpu_seconds(RUSAGE_CHILDREN);
    if (sum != (uint64_t)passes * 7 * total) {
        fprintf(stderr, "ipc_bench: the consumer's sum is %llu, not %llu\n", (unsigned long long)sum,
                (unsigned long long)passes * 7 * total);
        return 1;
    }
    for (size_t i = 0; i < last; i++) /* the last read, after the clock */
        if (buf[i] != 7) { fprintf(stderr, "ipc_bench: byte %zu of the last read is %d, not 7\n", i, buf[i]); return 1; }
    out->gbps = (double)total / (t1 - t0) / 1e9;
    out->cpu_per_gib = cpu / ((double)total / (double)(1u << 30));
    out->t0 = t0;
    out->t1 = t1;
    return 0;
}

/* The parent sends SIZE bytes and the child answers SIZE bytes, ROUNDS
 * times after a warm-up round, over a socketpair (received with
 * MSG_WAITALL) or over two pipes (read in a loop). Prints the median round
 * trip in µs. */
static int reqresp(const char *transport, size_t size, int rounds) {
    int fwd[2], back[2]; /* parent -> child, child -> parent */
    int use_socket = strcmp(transport, "pipe") != 0;
    if (use_socket) {
        if (stream_pair(transport, fwd) != 0) { perror(transport); return 2; }
        back[0] = fwd[0]; /* the parent reads its own end */
        back[1] = fwd[1]; /* the child writes its own end */
    } else if (pipe(fwd) != 0 || pipe(back) != 0) {
        perror("pipe");
        return 2;
    }
    /* With a socketpair the parent uses fwd[0] both ways, the child fwd[1]. */
    int parent_out = use_socket ? fwd[0] : fwd[1], parent_in = back[0];
    int child_in = use_socket ? fwd[1] : fwd[0], child_out = back[1];
    void (*get)(int, uint8_t *, size_t) = use_socket ? recv_all : read_all;
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    uint8_t *buf = buffer(size, pid == 0 ? 2 : 1);
    if (pid == 0) {
        for (int i = 0; i < rounds + 1; i++) {
            get(child_in, buf, size);
            send_all(child_out, buf, size);
        }
        _exit(0);
    }
    double *rtt = calloc((size_t)rounds, sizeof *rtt);
    send_all(parent_out, buf, size); /* warm-up round */
    get(parent_in, buf, size);
    for (int i = 0; i < rounds; i++) {
        double t0 = now();
        send_all(parent_out, buf, size);
        get(parent_in, buf, size);
        rtt[i] = now() - t0;
    }
    waitpid(pid, NULL, 0);
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp);
    printf("%.1f\n", rtt[rounds / 2] * 1e6);
    return 0;
}

/* A listening socket for `conns` (unix: an abstract address named after
 * the pid; tcp4: 127.0.0.1, an ephemeral port), its address in *ss. */
static int listener(const char *transport, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof *ss);
    int tcp = strcmp(transport, "tcp4") == 0;
    if (tcp) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *sin;
    } else {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        sun->sun_family = AF_UNIX;
        int n = snprintf(sun->sun_path + 1, sizeof sun->sun_path - 1, "ipc-bench-conns-%d", (int)getpid());
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    }
    int l = socket(tcp ? AF_INET : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)ss, *len) != 0 || listen(l, 64) != 0 ||
        getsockname(l, (struct sockaddr *)ss, len) != 0) {
        perror("listener");
        return -1;
    }
    return l;
}

/* A new connection per request: SIZE bytes each way, COUNT times after
 * one warm-up connection. Prints requests per second. */
static int conns(const char *transport, int count, size_t size) {
    struct sockaddr_storage ss;
    socklen_t len;
    int l = listener(transport, &ss, &len);
    if (l < 0) return 2;
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    uint8_t *buf = buffer(size, pid == 0 ? 2 : 1);
    if (pid == 0) {
        for (int i = 0; i < count + 1; i++) {
            int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
            if (a < 0) { perror("accept"); _exit(2); }
            recv_all(a, buf, size);
            send_all(a, buf, size);
            close(a);
        }
        _exit(0);
    }
    close(l);
    double t0 = 0;
    for (int i = 0; i < count + 1; i++) {
        if (i == 1) t0 = now();
        int c = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&ss, len) != 0) { perror("connect"); return 2; }
        send_all(c, buf, size);
        recv_all(c, buf, size);
        close(c);
    }
    double dt = now() - t0;
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { fprintf(stderr, "conns: the server failed\n"); return 2; }
    printf("%.1f\n", count / dt);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: see the comment in ipc_bench.c\n"); return 2; }
    const char *w = argv[1];
    int is_xfer = strcmp(w, "xfer") == 0;
    if (is_xfer && (argc == 6 || argc == 7) && (is_stream_transport(argv[2]) || strcmp(argv[2], "pipe") == 0)) {
        struct transfer t;
        unsigned passes = argc == 7 ? (unsigned)strtoul(argv[6], 0, 0) : 0;
        int rc = transfer(argv[2], strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0),
                          strtoull(argv[5], 0, 0), passes, &t);
        if (rc == 0) printf("%.4f %.4f %.6f %.6f\n", t.gbps, t.cpu_per_gib, t.t0, t.t1);
        return rc;
    }
    int stream = strcmp(w, "stream") == 0, stream_cpu = strcmp(w, "stream-cpu") == 0;
    int pipe_gbps = strcmp(w, "pipe") == 0, pipe_cpu = strcmp(w, "pipe-cpu") == 0;
    if ((stream || stream_cpu || pipe_gbps || pipe_cpu) && (argc == 5 || argc == 6)) {
        struct transfer t;
        unsigned passes = argc == 6 ? (unsigned)strtoul(argv[5], 0, 0) : 0;
        int rc = transfer(stream || stream_cpu ? "unix" : "pipe", strtoull(argv[2], 0, 0), strtoull(argv[3], 0, 0),
                          strtoull(argv[4], 0, 0), passes, &t);
        if (rc == 0) printf("%.4f\n", stream_cpu || pipe_cpu ? t.cpu_per_gib : t.gbps);
        return rc;
    }
    if (strcmp(w, "reqresp") == 0 || strcmp(w, "pipe-reqresp") == 0) {
        const char *transport = strcmp(w, "reqresp") == 0 ? (argc == 5 ? argv[4] : "unix") : "pipe";
        return reqresp(transport, strtoull(argv[2], 0, 0), atoi(argv[3]));
    }
    if (strcmp(w, "conns") == 0 && (argc == 4 || argc == 5)) {
        const char *transport = argc == 5 ? argv[4] : "unix";
        if (strcmp(transport, "unix") != 0 && strcmp(transport, "tcp4") != 0) {
            fprintf(stderr, "conns: unix or tcp4\n");
            return 2;
        }
        return conns(transport, atoi(argv[2]), strtoull(argv[3], 0, 0));
    }
    if (strcmp(w, "pingpong") == 0) {
        int sv[2];
        const char *transport = argc == 5 ? argv[4] : "unix";
        if (stream_pair(transport, sv) != 0) { perror(transport); return 2; }
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
    fprintf(stderr, "unknown workload %s\n", w);
    return 2;
}
