/*
 * Event-loop workloads over Unix stream socketpairs (or TCP connections:
 * the optional last argument TRANSPORT of the epoll, reqresp and pingpong
 * workloads is unix, the default, tcp4 or tcp6; tests/c/stream_pair.h),
 * for bench-suite's
 * `evloop` part (run with and without the library, alternately): readers
 * that wait in select(), poll() or epoll_wait() on nonblocking sockets, and
 * nonblocking writers. Prints one line on stdout: the run's figures.
 *
 * usage: evloop_bench relay select|poll TOTAL BUF
 *            -> "SECONDS GBPS CPU_S_PER_GIB": source -> relay -> sink, three
 *               processes, two socketpairs. The source writes TOTAL bytes in
 *               blocking BUF-byte writes; the relay, both sockets nonblocking,
 *               waits in select() (or poll()) on both, reads at most BUF
 *               bytes when it has nothing pending, writes what it read at
 *               once, and keeps what a write did not take pending until the
 *               sink's socket is writable; the sink (the parent) reads with
 *               blocking BUF-byte reads. SECONDS from the go signal to the
 *               sink's last byte.
 *        evloop_bench epoll lt|et SIZE COUNT
 *            -> "GBPS CPU_S_PER_GIB": a writer child sends COUNT messages of
 *               SIZE bytes, each in one blocking send(); the reader (the
 *               parent), its socket nonblocking, waits in epoll_wait() and
 *               recv()s asking for the rest of the current message, as
 *               libzmq reads a large frame: level-triggered (lt), exactly one
 *               recv per event; edge-triggered (et, EPOLLET), recv until
 *               EAGAIN on each event.
 *        evloop_bench reqresp SIZE ROUNDS
 *            -> "US": the median round trip in µs of a SIZE-byte request and
 *               its SIZE-byte reply, ROUNDS times after a warm-up one, both
 *               sockets nonblocking, each side an epoll loop: it waits in
 *               epoll_wait() before each recv() and, when a send() finds no
 *               room, for EPOLLOUT (with EPOLL_CTL_MOD) before the next.
 *        evloop_bench pingpong ROUNDS SIZE
 *            -> "NS": ns per round trip of a SIZE-byte message (at most
 *               4096) and its SIZE-byte answer, both sockets nonblocking, each
 *               side waiting in epoll_wait() before its recv (after 100 round
 *               trips of warm-up).
 *        evloop_bench server CONNS SIZE ROUNDS
 *            -> "GBPS CPU_S_PER_GIB": one epoll echo server (the parent) and
 *               CONNS Unix stream connections (socketpairs) open at once,
 *               shared by 4 client processes. The server, every socket
 *               nonblocking and level-triggered, reads a request of SIZE
 *               bytes into a buffer of its own (malloc'd when the request
 *               begins), then sends it back, waiting for EPOLLOUT when a send
 *               finds no room, and frees the buffer. Each client sends a
 *               request on each of its connections in turn (blocking send,
 *               blocking recv of the reply), ROUNDS times after one warm-up
 *               round over every connection. GBPS counts request and reply
 *               bytes from the go signal (after the warm-up) to the last
 *               reply.
 *
 * CPU_S_PER_GIB: user + sys seconds of every process per GiB that arrived:
 * the parent's getrusage(RUSAGE_SELF) from the go signal to the last byte,
 * plus RUSAGE_CHILDREN (the children's whole lives) once they are reaped.
 *
 * The bytes are checked as they arrive (each read at its ends and 256 bytes
 * in every 64 KiB): byte o of a stream is byte o % 4093 of a pseudo-random
 * table (4093 is prime, so a gap, a repeat or a
 * reordering of any length that is not a multiple of 4093 bytes shows), and
 * its length and end of file are checked too. A ping-pong message carries
 * its round. A mismatch prints where and exits 1. Buffers are allocated and
 * touched before the clock starts. A run that hangs is killed after 120 s
 * (SIGALRM, in every process).
 *
 * Build: cc -O2 -Wall -Wextra -Werror -o evloop_bench evloop_bench.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "stream_pair.h"

/* The pattern's period, a prime. */
#define PERIOD ((size_t)4093)

/* Seconds after which a run's processes die (SIGALRM): a hang fails the run. */
#define DEADLINE 120u

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_seconds(int who) {
    struct rusage u;
    if (getrusage(who, &u) != 0) { perror("getrusage"); exit(2); }
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static uint8_t *buffer(size_t n) {
    uint8_t *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    memset(p, 0, n);
    return p;
}

/* Bytes [0, n + PERIOD) of the stream: stream bytes [o, o + k), k <= n, are
 * at reference(n) + o % PERIOD. */
static uint8_t *reference(size_t n) {
    size_t len = n + PERIOD;
    uint8_t *p = buffer(len);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < PERIOD; i++) {
        x ^= x << 13; /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 56);
    }
    /* A multiple of the period copied after itself keeps the period. */
    for (size_t have = PERIOD; have < len; have *= 2)
        memcpy(p + have, p, have < len - have ? have : len - have);
    return p;
}

/* The N bytes at P that arrived at stream offset AT must be the stream's:
   checked at the ends (4 KiB each) and 256 bytes in every 64 KiB between,
   so that checking costs the reader far less than the copy it measures (a
   full memcmp reads every byte twice more). A gap, a repeat or a
   reordering shifts the pattern under every probe after it. */
static void check_span(const uint8_t *want, const uint8_t *p, size_t n, uint64_t at) {
    if (memcmp(p, want, n) == 0) return;
    size_t i = 0;
    while (p[i] == want[i]) i++;
    fprintf(stderr, "evloop_bench: byte %llu of the stream is %d, not %d\n", (unsigned long long)(at + i), p[i],
            want[i]);
    exit(1);
}

static void check(const uint8_t *ref, const uint8_t *p, size_t n, uint64_t at) {
    const uint8_t *want = ref + at % PERIOD;
    const size_t end = 4096, probe = 256, every = 64 * 1024;
    if (n <= 2 * end + every) {
        check_span(want, p, n, at);
        return;
    }
    check_span(want, p, end, at);
    for (size_t o = end; o + probe <= n - end; o += every) check_span(want + o, p + o, probe, at + o);
    check_span(want + n - end, p + n - end, end, at + n - end);
}

static void nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) != 0) die("fcntl");
}

/* Blocking writes of all N bytes (the source's, the writer's). */
static void send_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("write");
        p += w;
        n -= (size_t)w;
    }
}

static void get_byte(int fd) {
    uint8_t byte;
    ssize_t r;
    while ((r = read(fd, &byte, 1)) < 0 && errno == EINTR) {
    }
    if (r != 1) die("read of a signal byte");
}

static void put_byte(int fd) {
    uint8_t byte = 1;
    send_all(fd, &byte, 1);
}

/* Reaps PID; 0 if it exited 0. */
static int reap(pid_t pid, const char *who) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "evloop_bench: the %s failed (status %#x)\n", who, status);
        return 1;
    }
    return 0;
}

/* Waits until IN is readable (want_read) or OUT writable (want_write), in
 * select() or poll() on both sockets: OUT is always watched for reading
 * too, since the sink never writes, a readable OUT means it hung up. */
static void relay_wait(int use_poll, int in, int out, int want_read, int want_write) {
    for (;;) {
        int n, out_readable;
        if (use_poll) {
            /* A negative fd is left out: a hung-up input would wake it. */
            struct pollfd fds[2] = {
                {.fd = want_read ? in : -1, .events = POLLIN},
                {.fd = out, .events = POLLIN | (want_write ? POLLOUT : 0)},
            };
            n = poll(fds, 2, -1);
            out_readable = n > 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL));
            if (n > 0 && (fds[0].revents & (POLLERR | POLLNVAL))) {
                fprintf(stderr, "evloop_bench: the relay's input failed (revents %#x)\n", fds[0].revents);
                exit(1);
            }
        } else {
            fd_set r, w;
            FD_ZERO(&r);
            FD_ZERO(&w);
            if (want_read) FD_SET(in, &r);
            FD_SET(out, &r);
            if (want_write) FD_SET(out, &w);
            n = select((in > out ? in : out) + 1, &r, &w, NULL, NULL);
            out_readable = n > 0 && FD_ISSET(out, &r);
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die(use_poll ? "poll" : "select");
        if (out_readable) {
            fprintf(stderr, "evloop_bench: the sink hung up before the end\n");
            exit(1);
        }
        if (n > 0) return;
    }
}

/* The relay's loop; the bytes it relayed. */
static uint64_t relay_loop(int use_poll, int in, int out, uint8_t *buf, size_t size) {
    uint64_t relayed = 0;
    size_t pending = 0, off = 0;
    int eof = 0;
    while (!eof || pending) {
        relay_wait(use_poll, in, out, !pending, pending > 0);
        if (!pending) {
            ssize_t r = read(in, buf, size);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue; /* a spurious wake-up */
            if (r < 0) die("relay: read");
            if (r == 0) {
                eof = 1;
                continue;
            }
            relayed += (uint64_t)r;
            pending = (size_t)r;
            off = 0;
        }
        ssize_t w = write(out, buf + off, pending);
        if (w < 0 && errno != EAGAIN && errno != EINTR) die("relay: write");
        if (w > 0) {
            off += (size_t)w;
            pending -= (size_t)w;
        }
    }
    return relayed;
}

static int relay(int use_poll, uint64_t total, size_t size) {
    int a[2], b[2], go[2], ready[2]; /* source -> relay, relay -> sink */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, b) != 0) {
        perror("socketpair");
        return 2;
    }
    if (pipe(go) != 0 || pipe(ready) != 0) { perror("pipe"); return 2; }
    const uint8_t *ref = reference(size);
    pid_t source = fork();
    if (source < 0) { perror("fork"); return 2; }
    if (source == 0) {
        alarm(DEADLINE);
        close(a[0]), close(b[0]), close(b[1]), close(go[1]), close(ready[0]), close(ready[1]);
        get_byte(go[0]);
        for (uint64_t sent = 0; sent < total;) {
            size_t n = total - sent < size ? (size_t)(total - sent) : size;
            send_all(a[1], ref + sent % PERIOD, n);
            sent += n;
        }
        _exit(0);
    }
    pid_t relayer = fork();
    if (relayer < 0) { perror("fork"); return 2; }
    if (relayer == 0) {
        alarm(DEADLINE);
        close(a[1]), close(b[1]), close(go[0]), close(go[1]), close(ready[0]);
        uint8_t *buf = buffer(size);
        nonblocking(a[0], 1);
        nonblocking(b[0], 1);
        put_byte(ready[1]);
        uint64_t relayed = relay_loop(use_poll, a[0], b[0], buf, size);
        close(b[0]);
        if (relayed != total) {
            fprintf(stderr, "evloop_bench: the relay relayed %llu bytes, not %llu\n", (unsigned long long)relayed,
                    (unsigned long long)total);
            _exit(1);
        }
        _exit(0);
    }
    close(a[0]), close(a[1]), close(b[0]), close(go[0]), close(ready[1]);
    uint8_t *buf = buffer(size);
    get_byte(ready[0]);
    double cpu0 = cpu_seconds(RUSAGE_SELF);
    double t0 = now();
    put_byte(go[1]);
    uint64_t got = 0;
    while (got < total) {
        ssize_t r = read(b[1], buf, size);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("sink: read");
        if (r == 0) {
            fprintf(stderr, "evloop_bench: end of file after %llu bytes, not %llu\n", (unsigned long long)got,
                    (unsigned long long)total);
            return 1;
        }
        check(ref, buf, (size_t)r, got);
        got += (uint64_t)r;
    }
    double t1 = now();
    double cpu = cpu_seconds(RUSAGE_SELF) - cpu0;
    ssize_t r;
    while ((r = read(b[1], buf, size)) < 0 && errno == EINTR) {
    }
    if (r != 0) {
        fprintf(stderr, "evloop_bench: %zd more bytes after the %llu sent\n", r, (unsigned long long)total);
        return 1;
    }
    if (reap(source, "source") | reap(relayer, "relay")) return 1;
    cpu += cpu_seconds(RUSAGE_CHILDREN);
    printf("%.6f %.4f %.4f\n", t1 - t0, (double)total / (t1 - t0) / 1e9, cpu / ((double)total / (double)(1u << 30)));
    return 0;
}

static int epoll_reader(int edge, size_t size, int count, const char *transport) {
    int sv[2], go[2];
    if (stream_pair(transport, sv) != 0) { perror(transport); return 2; }
    if (pipe(go) != 0) { perror("pipe"); return 2; }
    uint64_t total = (uint64_t)size * (uint64_t)count;
    const uint8_t *ref = reference(size);
    pid_t writer = fork();
    if (writer < 0) { perror("fork"); return 2; }
    if (writer == 0) {
        alarm(DEADLINE);
        close(sv[0]), close(go[1]);
        get_byte(go[0]);
        for (int k = 0; k < count; k++) send_all(sv[1], ref + (uint64_t)k * size % PERIOD, size);
        _exit(0);
    }
    close(sv[1]), close(go[0]);
    int fd = sv[0];
    uint8_t *buf = buffer(size);
    nonblocking(fd, 1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | (edge ? EPOLLET : 0), .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll");
    double cpu0 = cpu_seconds(RUSAGE_SELF);
    double t0 = now();
    put_byte(go[1]);
    uint64_t got = 0;
    size_t in_message = 0; /* bytes of the current message */
    while (got < total) {
        int n = epoll_wait(ep, &ev, 1, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) die("epoll_wait");
        do {
            ssize_t r = recv(fd, buf + in_message, size - in_message, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && errno == EAGAIN) break;
            if (r < 0) die("recv");
            if (r == 0) {
                fprintf(stderr, "evloop_bench: end of file after %llu bytes, not %llu\n", (unsigned long long)got,
                        (unsigned long long)total);
                return 1;
            }
            check(ref, buf + in_message, (size_t)r, got);
            got += (uint64_t)r;
            in_message = (in_message + (size_t)r) % size;
        } while (edge && got < total);
    }
    double t1 = now();
    double cpu = cpu_seconds(RUSAGE_SELF) - cpu0;
    nonblocking(fd, 0);
    ssize_t r;
    while ((r = recv(fd, buf, size, 0)) < 0 && errno == EINTR) {
    }
    if (r != 0) {
        fprintf(stderr, "evloop_bench: %zd more bytes after the %llu sent\n", r, (unsigned long long)total);
        return 1;
    }
    if (reap(writer, "writer")) return 1;
    cpu += cpu_seconds(RUSAGE_CHILDREN);
    printf("%.4f %.4f\n", (double)total / (t1 - t0) / 1e9, cpu / ((double)total / (double)(1u << 30)));
    return 0;
}

/* Sends the N bytes at P on a nonblocking socket (waiting in poll() for room
 * if there is none: a 64-byte message always finds some). */
static void send_message(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR) die("poll");
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("send");
        p += w;
        n -= (size_t)w;
    }
}

/* Receives N bytes on a nonblocking socket: epoll_wait(), then recv(). */
static void recv_message(int ep, int fd, uint8_t *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        struct epoll_event ev;
        int k = epoll_wait(ep, &ev, 1, -1);
        if (k < 0 && errno == EINTR) continue;
        if (k != 1) die("epoll_wait");
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r < 0) die("recv");
        if (r == 0) {
            fprintf(stderr, "evloop_bench: end of file in a ping-pong\n");
            exit(1);
        }
        got += (size_t)r;
    }
}

/* Message `round` of a side (0: the ping, 1: the pong): byte i is
 * round * 131 + i * 7 + side. */
static void fill_message(uint8_t *p, size_t n, int round, int side) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((unsigned)round * 131u + (unsigned)i * 7u + (unsigned)side);
}

static void check_message(const uint8_t *p, size_t n, int round, int side) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((unsigned)round * 131u + (unsigned)i * 7u + (unsigned)side)) {
            fprintf(stderr, "evloop_bench: byte %zu of %s %d is wrong\n", i, side ? "pong" : "ping", round);
            exit(1);
        }
}

/* Waits in epoll_wait() on EP (which holds only FD) for EVENTS, setting
 * them with EPOLL_CTL_MOD first. */
static void wait_for(int ep, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0) die("epoll_ctl");
    for (;;) {
        int k = epoll_wait(ep, &ev, 1, -1);
        if (k == 1) return;
        if (k < 0 && errno != EINTR) die("epoll_wait");
    }
}

/* One large message through an epoll loop: sends N bytes, waiting for
 * EPOLLOUT when a send finds no room. */
static void loop_send(int ep, int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            wait_for(ep, fd, EPOLLOUT);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("send");
        p += w;
        n -= (size_t)w;
    }
}

/* One large message through an epoll loop: receives N bytes, waiting for
 * EPOLLIN before each recv, and checks them against the stream. */
static void loop_recv(int ep, int fd, const uint8_t *ref, uint8_t *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        wait_for(ep, fd, EPOLLIN);
        for (;;) {
            ssize_t r = recv(fd, p + got, n - got, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && errno == EAGAIN) break;
            if (r < 0) die("recv");
            if (r == 0) {
                fprintf(stderr, "evloop_bench: end of file in a request or reply\n");
                exit(1);
            }
            check(ref, p + got, (size_t)r, got);
            got += (size_t)r;
            if (got == n) break;
        }
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int epoll_reqresp(size_t size, int rounds, const char *transport) {
    int sv[2];
    if (stream_pair(transport, sv) != 0) { perror(transport); return 2; }
    const uint8_t *ref = reference(size);
    uint8_t *buf = buffer(size);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    int fd = pid == 0 ? sv[1] : sv[0];
    close(pid == 0 ? sv[0] : sv[1]);
    if (pid == 0) alarm(DEADLINE);
    nonblocking(fd, 1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll");
    if (pid == 0) {
        for (int i = 0; i <= rounds; i++) {
            loop_recv(ep, fd, ref, buf, size);
            loop_send(ep, fd, ref, size);
        }
        _exit(0);
    }
    double *trips = malloc(sizeof(double) * (size_t)rounds);
    if (!trips) die("malloc");
    for (int i = 0; i <= rounds; i++) {
        double t0 = now();
        loop_send(ep, fd, ref, size);
        loop_recv(ep, fd, ref, buf, size);
        if (i > 0) trips[i - 1] = now() - t0; /* round 0 warms up */
    }
    if (reap(pid, "server")) return 1;
    qsort(trips, (size_t)rounds, sizeof *trips, cmp_double);
    printf("%.1f\n", trips[rounds / 2] * 1e6);
    return 0;
}

static int pingpong(int rounds, size_t size, const char *transport) {
    enum { WARM_UP = 100 };
    int sv[2];
    uint8_t out[4096], in[4096];
    if (size == 0 || size > sizeof out) { fprintf(stderr, "evloop_bench: SIZE is 1 to %zu\n", sizeof out); return 2; }
    if (stream_pair(transport, sv) != 0) { perror(transport); return 2; }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    int fd = pid == 0 ? sv[1] : sv[0];
    close(pid == 0 ? sv[0] : sv[1]);
    if (pid == 0) alarm(DEADLINE);
    nonblocking(fd, 1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll");
    if (pid == 0) {
        for (int i = 0; i < WARM_UP + rounds; i++) {
            recv_message(ep, fd, in, size);
            check_message(in, size, i, 0);
            fill_message(out, size, i, 1);
            send_message(fd, out, size);
        }
        _exit(0);
    }
    double t0 = 0;
    for (int i = 0; i < WARM_UP + rounds; i++) {
        if (i == WARM_UP) t0 = now();
        fill_message(out, size, i, 0);
        send_message(fd, out, size);
        recv_message(ep, fd, in, size);
        check_message(in, size, i, 1);
    }
    double dt = now() - t0;
    if (reap(pid, "ponger")) return 1;
    printf("%.1f\n", dt / rounds * 1e9);
    return 0;
}

/* The `server` workload: CLIENTS processes share the connections. */
#define CLIENTS 4

struct echo {
    uint8_t *buf; /* the request being read or the reply being sent */
    size_t got, sent;
    uint64_t round; /* requests answered on this connection */
};

/* One client: its connections are fds[i] for i = first, first + CLIENTS,
 * ... Signals `ready` after the warm-up round, waits for `go`, then runs
 * ROUNDS rounds. */
static void echo_client(const int *fds, int conns, int first, size_t size, int rounds, const uint8_t *ref,
                        int ready, int go) {
    uint8_t *buf = buffer(size);
    for (int r = 0; r <= rounds; r++) {
        if (r == 1) {
            put_byte(ready);
            get_byte(go);
        }
        for (int i = first; i < conns; i += CLIENTS) {
            uint64_t at = ((uint64_t)r * (uint64_t)conns + (uint64_t)i) * size;
            send_all(fds[i], ref + at % PERIOD, size);
            size_t got = 0;
            while (got < size) {
                ssize_t n = recv(fds[i], buf + got, size - got, 0);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) die("client recv");
                got += (size_t)n;
            }
            check(ref, buf, size, at);
        }
    }
    _exit(0);
}

/* The server's turn on a connection, readable or writable: reads what there
 * is of the request (stream bytes AT on), and once it is whole sends what
 * the socket takes. Returns the events to wait for next. */
static uint32_t echo_step(struct echo *c, int fd, uint64_t at, size_t size, const uint8_t *ref, uint64_t *served) {
    if (c->got < size) {
        if (!c->buf && !(c->buf = malloc(size))) die("malloc");
        for (;;) {
            ssize_t n = recv(fd, c->buf + c->got, size - c->got, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return EPOLLIN;
            if (n <= 0) die("server recv");
            c->got += (size_t)n;
            if (c->got == size) break;
        }
        check(ref, c->buf, size, at);
    }
    while (c->sent < size) {
        ssize_t n = send(fd, c->buf + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return EPOLLOUT;
        if (n <= 0) die("server send");
        c->sent += (size_t)n;
    }
    free(c->buf);
    c->buf = NULL;
    c->got = c->sent = 0;
    c->round++;
    *served += 1;
    return EPOLLIN;
}

static int echo_server(int conns, size_t size, int rounds) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    int *mine = malloc(sizeof(int) * (size_t)conns), *theirs = malloc(sizeof(int) * (size_t)conns);
    struct echo *state = calloc((size_t)conns, sizeof *state);
    if (!mine || !theirs || !state) die("malloc");
    for (int i = 0; i < conns; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
        mine[i] = sv[0];
        theirs[i] = sv[1];
    }
    const uint8_t *ref = reference(size);
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0) die("pipe");
    pid_t pids[CLIENTS];
    for (int k = 0; k < CLIENTS; k++) {
        pids[k] = fork();
        if (pids[k] < 0) die("fork");
        if (pids[k] == 0) {
            for (int i = 0; i < conns; i++) close(mine[i]);
            echo_client(theirs, conns, k, size, rounds, ref, ready[1], go[0]);
        }
    }
    for (int i = 0; i < conns; i++) close(theirs[i]);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < conns; i++) {
        nonblocking(mine[i], 1);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, mine[i], &ev) != 0) die("epoll_ctl");
    }
    /* The clients' ready bytes arrive on a pipe the loop watches too. */
    struct epoll_event rev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ready[0], &rev) != 0) die("epoll_ctl");
    const uint64_t total = (uint64_t)conns * (uint64_t)(rounds + 1);
    uint64_t served = 0;
    int warm = 0;
    double t0 = 0, cpu0 = 0;
    struct epoll_event events[64];
    while (served < total) {
        int n = epoll_wait(ep, events, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int e = 0; e < n; e++) {
            uint32_t i = events[e].data.u32;
            if (i == UINT32_MAX) {
                get_byte(ready[0]);
                if (++warm == CLIENTS) {
                    t0 = now();
                    cpu0 = cpu_seconds(RUSAGE_SELF);
                    for (int k = 0; k < CLIENTS; k++) put_byte(go[1]);
                }
                continue;
            }
            /* Connection i's requests are stream bytes (round * CONNS + i) * SIZE on: a
               reply that went to the wrong connection shows. */
            uint64_t at = (state[i].round * (uint64_t)conns + i) * size;
            uint32_t want = echo_step(&state[i], mine[i], at, size, ref, &served);
            struct epoll_event ev = {.events = want, .data.u32 = i};
            if ((want == EPOLLOUT || events[e].events & EPOLLOUT) && epoll_ctl(ep, EPOLL_CTL_MOD, mine[i], &ev) != 0)
                die("epoll_ctl");
        }
    }
    int failed = 0;
    for (int k = 0; k < CLIENTS; k++) failed |= reap(pids[k], "client");
    double dt = now() - t0;
    double cpu = cpu_seconds(RUSAGE_SELF) - cpu0 + cpu_seconds(RUSAGE_CHILDREN);
    if (failed) return 1;
    double bytes = 2.0 * (double)conns * (double)rounds * (double)size;
    printf("%.4f %.4f\n", bytes / dt / 1e9, cpu / (bytes / (double)(1u << 30)));
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: evloop_bench relay select|poll TOTAL BUF | epoll lt|et SIZE COUNT [TRANSPORT] | reqresp SIZE "
                    "ROUNDS [TRANSPORT] | pingpong ROUNDS SIZE [TRANSPORT] | server CONNS SIZE ROUNDS\n");
    return 2;
}

int main(int argc, char **argv) {
    alarm(DEADLINE);
    if (argc == 5 && strcmp(argv[1], "relay") == 0 && (!strcmp(argv[2], "select") || !strcmp(argv[2], "poll"))) {
        uint64_t total = strtoull(argv[3], 0, 0);
        size_t size = strtoull(argv[4], 0, 0);
        if (total == 0 || size == 0) return usage();
        return relay(strcmp(argv[2], "poll") == 0, total, size);
    }
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "epoll") == 0 && (!strcmp(argv[2], "lt") || !strcmp(argv[2], "et"))) {
        size_t size = strtoull(argv[3], 0, 0);
        int count = atoi(argv[4]);
        if (size == 0 || count <= 0) return usage();
        return epoll_reader(strcmp(argv[2], "et") == 0, size, count, argc == 6 ? argv[5] : "unix");
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "reqresp") == 0) {
        size_t size = strtoull(argv[2], 0, 0);
        int rounds = atoi(argv[3]);
        if (size == 0 || rounds <= 0) return usage();
        return epoll_reqresp(size, rounds, argc == 5 ? argv[4] : "unix");
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "pingpong") == 0) {
        int rounds = atoi(argv[2]);
        if (rounds <= 0) return usage();
        return pingpong(rounds, strtoull(argv[3], 0, 0), argc == 5 ? argv[4] : "unix");
    }
    if (argc == 5 && strcmp(argv[1], "server") == 0) {
        int conns = atoi(argv[2]), rounds = atoi(argv[4]);
        size_t size = strtoull(argv[3], 0, 0);
        if (conns <= 0 || size == 0 || rounds <= 0) return usage();
        return echo_server(conns, size, rounds);
    }
    return usage();
}
