/*
 * An epoll event loop reading a Unix stream socket whose peer never
 * qualifies for the fast path (the writer runs without the library), for
 * counting, from outside with strace, what system calls the library adds
 * to a loop of large nonblocking reads.
 *
 * usage:
 *   evloop_plain serve PATH TOTAL
 *       listen on PATH, accept one connection, write TOTAL bytes of the
 *       periodic stream (byte i is i % 251) in blocking 1 MiB writes, close;
 *       prints "served N bytes"
 *   evloop_plain read PATH TOTAL
 *       connect to PATH, make the socket nonblocking, and loop: epoll_wait
 *       (level-triggered EPOLLIN), then recv(1 MiB) until EAGAIN; every byte
 *       is checked. At EOF prints "got N bytes, eof, ok" on stdout (exit 0
 *       when every byte matched and TOTAL arrived), and on stderr the
 *       system calls the loop itself made, which depend on timing:
 *       "loop calls: C (epoll_wait W, recv R, of which large results L)"
 *       The rest of the process's calls (start-up, connect, the output)
 *       are the same on every run.
 *   evloop_plain read-mixed PATH TOTAL
 *       the same, but after every 4th event the socket turns blocking for
 *       two blocking recv(1 MiB) calls, then nonblocking again (the fcntl
 *       calls count as the loop's)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "common.h"

#define CHUNK ((size_t)1 << 20)

static socklen_t address(const char *path, struct sockaddr_un *un) {
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof un->sun_path) { fprintf(stderr, "path too long\n"); exit(2); }
    memcpy(un->sun_path, path, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int serve(const char *path, size_t total) {
    struct sockaddr_un un;
    socklen_t len = address(path, &un);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&un, len) || listen(l, 1)) { perror("listen"); return 2; }
    int fd = accept(l, NULL, NULL);
    if (fd < 0) { perror("accept"); return 2; }
    close(l);
    uint8_t *pattern = periodic_pattern(CHUNK);
    size_t sent = 0;
    while (sent < total) {
        size_t n = total - sent < CHUNK ? total - sent : CHUNK;
        ssize_t w = write(fd, pattern + sent % 251, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { perror("write"); return 1; }
        sent += (size_t)w;
    }
    close(fd);
    printf("served %zu bytes\n", sent);
    return 0;
}

/* Checks the bytes of one read against the stream; false at a wrong one. */
static int check_stream(const uint8_t *buf, ssize_t r, size_t got, int *last) {
    for (ssize_t i = 0; i < r; i++) {
        if (*last >= 0 && buf[i] != (*last + 1) % 251) {
            printf("byte %zu breaks the stream\n", got + (size_t)i);
            return 0;
        }
        *last = buf[i];
    }
    return 1;
}

static int reader(const char *path, size_t total, int mixed) {
    struct sockaddr_un un;
    socklen_t len = address(path, &un);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&un, len)) { perror("connect"); return 2; }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)) { perror("fcntl"); return 2; }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) { perror("epoll"); return 2; }
    uint8_t *buf = map_or_die(CHUNK);
    size_t got = 0, waits = 0, recvs = 0, large = 0, fcntls = 0;
    int last = -1, bad = 0, eof = 0;
    while (!eof) {
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, -1);
        waits++;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { perror("epoll_wait"); return 2; }
        for (;;) {
            ssize_t r = recv(fd, buf, CHUNK, 0);
            recvs++;
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (r < 0) { perror("recv"); return 2; }
            if (r == 0) { eof = 1; break; }
            if ((size_t)r >= (size_t)256 << 10) large++;
            for (ssize_t i = 0; i < r && !bad; i++) {
                if (last >= 0 && buf[i] != (last + 1) % 251) {
                    printf("byte %zu breaks the stream\n", got + (size_t)i);
                    bad = 1;
                }
                last = buf[i];
            }
            got += (size_t)r;
        }
        if (mixed && !eof && !bad && waits % 4 == 0) {
            /* Two blocking reads, then back to the loop. */
            int flags = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
            fcntls += 2;
            for (int k = 0; k < 2 && !eof && !bad && got < total; k++) {
                ssize_t r = recv(fd, buf, CHUNK, 0);
                recvs++;
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) { perror("recv"); return 2; }
                if (r == 0) { eof = 1; break; }
                if ((size_t)r >= (size_t)256 << 10) large++;
                bad = !check_stream(buf, r, got, &last);
                got += (size_t)r;
            }
            fcntl(fd, F_SETFL, flags);
            fcntls++;
        }
    }
    fprintf(stderr, "loop calls: %zu (epoll_wait %zu, recv %zu, of which large results %zu, fcntl %zu)\n",
            waits + recvs + fcntls, waits, recvs, large, fcntls);
    printf("got %zu bytes, eof, %s\n", got, bad ? "BAD" : "ok");
    return bad || got != total;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: evloop_plain serve|read|read-mixed PATH TOTAL\n");
        return 2;
    }
    size_t total = strtoull(argv[3], NULL, 0);
    if (!strcmp(argv[1], "serve")) return serve(argv[2], total);
    if (!strcmp(argv[1], "read")) return reader(argv[2], total, 0);
    if (!strcmp(argv[1], "read-mixed")) return reader(argv[2], total, 1);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
