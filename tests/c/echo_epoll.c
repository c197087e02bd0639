/*
 * Many connections through one epoll echo server: the server (an exec'd
 * child) accepts on an abstract Unix stream address, reads every
 * connection nonblocking with a 512 KiB buffer and echoes what it read,
 * keeping what the socket did not take until EPOLLOUT. The client (this
 * process) opens CONNS connections at once (raising its soft fd limit
 * within the hard one), then THREADS threads each take every THREADS-th
 * connection: a blocking write of BYTES (connection i carries pat(_, i) in
 * round 0),
 * then blocking reads until BYTES came back, every byte checked. Then it
 * closes them all. ROUNDS times over, each connection's turn comes again.
 *
 * One warm-up connection comes first (what the library starts once is then
 * started); after it both sides take their fd, ring mapping and thread
 * counts, and again once every connection is closed: they must be the
 * same. Each side prints its leak report; the client prints "echo ok".
 *
 * usage: echo_epoll CONNS THREADS BYTES ROUNDS
 *        echo_epoll serve ADDR CONNS      (the server; CONNS + 1 with the warm-up)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"
#include "leaks.h"

#define READ_SIZE ((size_t)512 << 10)

static socklen_t address(const char *name, struct sockaddr_un *un) {
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(un->sun_path + 1, name, n); /* abstract */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static void raise_fd_limit(void) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max < 65536 ? r.rlim_max : 65536;
    setrlimit(RLIMIT_NOFILE, &r);
}

/* --- the server ------------------------------------------------------------------ */

struct conn {
    uint8_t *pending;
    size_t len, cap;
};

static int serve(const char *name, long conns) {
    raise_fd_limit();
    struct sockaddr_un un;
    socklen_t len = address(name, &un);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&un, len) != 0 || listen(l, 4096) != 0) { perror("listen"); return 2; }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    printf("listening\n");
    fflush(stdout);
    struct conn *table = calloc(65536, sizeof *table);
    uint8_t *buf = map_or_die(READ_SIZE);
    struct holdings before = {0};
    long closed = 0;
    while (closed < conns + 1) {
        struct epoll_event events[64];
        int n = epoll_wait(ep, events, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { perror("epoll_wait"); return 2; }
        for (int e = 0; e < n; e++) {
            int fd = events[e].data.fd;
            if (fd == l) {
                int c;
                while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= 65536) { fprintf(stderr, "fd %d too high\n", c); return 2; }
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            struct conn *c = &table[fd];
            int eof = 0;
            for (;;) { /* read what there is; keep all of it */
                ssize_t r = read(fd, buf, READ_SIZE);
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) { eof = 1; break; }
                if (c->len + (size_t)r > c->cap) {
                    c->cap = (c->len + (size_t)r) * 2;
                    c->pending = realloc(c->pending, c->cap);
                    if (!c->pending) { perror("realloc"); return 2; }
                }
                memcpy(c->pending + c->len, buf, (size_t)r);
                c->len += (size_t)r;
            }
            size_t sent = 0;
            while (sent < c->len) {
                ssize_t w = write(fd, c->pending + sent, c->len - sent);
                if (w < 0 && errno == EINTR) continue;
                if (w < 0 && errno == EAGAIN) break;
                if (w < 0) { eof = 1; break; }
                sent += (size_t)w;
            }
            memmove(c->pending, c->pending + sent, c->len - sent);
            c->len -= sent;
            if (eof) {
                if (c->len) fprintf(stderr, "server: fd %d closed with %zu bytes unsent\n", fd, c->len);
                free(c->pending);
                memset(c, 0, sizeof *c);
                close(fd);
                if (closed++ == 0) before = holdings_now(); /* the warm-up is over */
                continue;
            }
            struct epoll_event ce = {.events = EPOLLIN | (c->len ? EPOLLOUT : 0), .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
        }
    }
    return holdings_same("server", before, holdings_now()) ? 0 : 1;
}

/* --- the client ------------------------------------------------------------------ */

static const char *server_name;
static int *conn_fds;
static long n_conns, n_threads, rounds;
static size_t bytes;

static int connect_one(void) {
    struct sockaddr_un un;
    socklen_t len = address(server_name, &un);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&un, len) != 0) { perror("connect"); exit(2); }
    return fd;
}

/* A blocking write of `bytes`, then reads until they came back. */
static int echo_once(int fd, uint32_t seed, uint8_t *out, uint8_t *in) {
    fill(out, bytes, seed);
    for (size_t at = 0; at < bytes;) {
        ssize_t w = write(fd, out + at, bytes - at);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { perror("write"); return 0; }
        at += (size_t)w;
    }
    for (size_t at = 0; at < bytes;) {
        ssize_t r = read(fd, in + at, bytes - at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { printf("connection %u: read returned %zd after %zu bytes\n", seed, r, at); return 0; }
        at += (size_t)r;
    }
    long bad = check(in, bytes, seed);
    if (bad >= 0) printf("connection %u: byte %ld wrong\n", seed, bad);
    return bad < 0;
}

static void *client_thread(void *arg) {
    long t = (long)(intptr_t)arg;
    uint8_t *out = map_or_die(bytes), *in = map_or_die(bytes);
    long ok = 1;
    for (long round = 0; round < rounds; round++)
        for (long i = t; i < n_conns; i += n_threads)
            ok = echo_once(conn_fds[i], (uint32_t)(i + round * n_conns), out, in) && ok;
    munmap(out, bytes);
    munmap(in, bytes);
    return (void *)(intptr_t)ok;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "serve") == 0) return serve(argv[2], atol(argv[3]));
    if (argc != 5) {
        fprintf(stderr, "usage: echo_epoll CONNS THREADS BYTES ROUNDS\n");
        return 2;
    }
    alarm(100); /* the watchdog of a hang */
    n_conns = atol(argv[1]);
    n_threads = atol(argv[2]);
    bytes = (size_t)atol(argv[3]);
    rounds = atol(argv[4]);
    raise_fd_limit();
    static char name[64];
    snprintf(name, sizeof name, "ipc-offload-echo-%d", getpid());
    server_name = name;
    int ready[2];
    if (pipe(ready) != 0) return 2;
    pid_t server = fork();
    if (server == 0) {
        dup2(ready[1], 1);
        char conns[32];
        snprintf(conns, sizeof conns, "%ld", n_conns);
        execl("/proc/self/exe", argv[0], "serve", name, conns, (char *)NULL);
        _exit(127);
    }
    close(ready[1]);
    FILE *from_server = fdopen(ready[0], "r");
    char line[256];
    if (!fgets(line, sizeof line, from_server) || strcmp(line, "listening\n") != 0) {
        fprintf(stderr, "the server did not start\n");
        return 2;
    }

    uint8_t *out = map_or_die(bytes), *in = map_or_die(bytes);
    int warm = connect_one();
    int ok = echo_once(warm, 0xffff, out, in);
    close(warm);
    munmap(out, bytes);
    munmap(in, bytes);
    struct holdings before = holdings_now();

    conn_fds = calloc((size_t)n_conns, sizeof *conn_fds);
    for (long i = 0; i < n_conns; i++) conn_fds[i] = connect_one();
    pthread_t *threads = calloc((size_t)n_threads, sizeof *threads);
    for (long t = 0; t < n_threads; t++)
        if (pthread_create(&threads[t], NULL, client_thread, (void *)(intptr_t)t) != 0) return 2;
    for (long t = 0; t < n_threads; t++) {
        void *r;
        pthread_join(threads[t], &r);
        ok = ok && r;
    }
    for (long i = 0; i < n_conns; i++) close(conn_fds[i]);
    free(conn_fds);
    free(threads);
    ok = holdings_same("client", before, holdings_now()) && ok;
    while (fgets(line, sizeof line, from_server)) fputs(line, stdout); /* the server's report */
    int status;
    waitpid(server, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    printf("echo %s\n", ok ? "ok" : "FAILED");
    return !ok;
}
