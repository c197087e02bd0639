/*
 * Two separate programs talking over a Unix stream socket bound to a path or
 * an abstract name (@name), so that each side can run with or without the
 * library, be killed, exec, fork or pass its fd on. Byte i of the stream is
 * pat(i); every reader checks every byte it gets.
 *
 * usage:
 *   unix_peer send ADDR TOTAL WRITE
 *       connect, write TOTAL bytes in writes of WRITE, close; a write error
 *       ends it: prints "sent N bytes, EPIPE" (SIGPIPE ignored)
 *   unix_peer serve ADDR TOTAL READ HOW
 *       listen, accept one connection, read with buffers of READ until EOF
 *       (TOTAL is what to expect: 0 means "whatever comes"), where HOW is
 *         read     read(2)
 *         stdio    fdopen + fread (glibc-internal reads: no preload sees them)
 *         exec     read half, then exec "unix_peer count OFFSET" on the
 *                  socket as stdin, with LD_PRELOAD removed
 *         fork     a child reads the first half, then the parent the rest
 *         pass     the socket goes to a child over SCM_RIGHTS; the child
 *                  reads everything; the parent closes its copy
 *   unix_peer count OFFSET
 *       read stdin to EOF checking bytes from stream offset OFFSET
 *
 * The reading side prints "got N bytes, eof, ok" and exits 0 when every byte
 * matched and TOTAL (if not 0) arrived.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

static const uint32_t SEED = 0xfeed;

static socklen_t address(const char *spec, struct sockaddr_un *un) {
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    size_t n = strlen(spec);
    if (n >= sizeof un->sun_path) { fprintf(stderr, "address too long\n"); exit(2); }
    memcpy(un->sun_path, spec, n);
    if (spec[0] == '@') un->sun_path[0] = 0; /* abstract */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (spec[0] == '@' ? 0 : 1));
}

/* Reads fd to EOF with buffers of `size`, checking from stream offset `from`. */
static size_t drain(int fd, size_t size, size_t from, size_t limit, int *bad) {
    uint8_t *buf = map_or_die(size);
    size_t got = 0;
    while (!limit || got < limit) {
        size_t ask = limit && limit - got < size ? limit - got : size;
        ssize_t r = read(fd, buf, ask);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { perror("read"); *bad = 1; break; }
        if (r == 0) break;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(from + got + (size_t)i, SEED)) {
                if (!*bad) printf("byte %zu wrong\n", from + got + (size_t)i);
                *bad = 1;
                break;
            }
        got += (size_t)r;
    }
    return got;
}

static int report(size_t got, size_t total, int bad) {
    printf("got %zu bytes, eof, %s\n", got, bad ? "BAD" : "ok");
    fflush(stdout);
    return bad || (total && got != total);
}

static int send_fd(int over, int fd) {
    char byte = 'F';
    struct iovec iov = {&byte, 1};
    union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.space, .msg_controllen = sizeof u.space};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(over, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int over) {
    char byte;
    struct iovec iov = {&byte, 1};
    union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.space, .msg_controllen = sizeof u.space};
    if (recvmsg(over, &msg, 0) != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int fd = -1;
    if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static int serve(const char *addr, size_t total, size_t size, const char *how, char **argv) {
    struct sockaddr_un un;
    socklen_t len = address(addr, &un);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    if (addr[0] != '@') unlink(addr);
    if (bind(ls, (struct sockaddr *)&un, len) != 0 || listen(ls, 1) != 0) { perror("bind/listen"); return 2; }
    printf("listening\n");
    fflush(stdout);
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) { perror("accept"); return 2; }
    close(ls);
    int bad = 0;
    if (strcmp(how, "read") == 0) return report(drain(fd, size, 0, 0, &bad), total, bad);
    if (strcmp(how, "stdio") == 0) {
        FILE *f = fdopen(fd, "r");
        uint8_t *buf = map_or_die(size);
        size_t got = 0, n;
        while ((n = fread(buf, 1, size, f)) > 0) {
            for (size_t i = 0; i < n; i++)
                if (buf[i] != pat(got + i, SEED)) { if (!bad) printf("byte %zu wrong\n", got + i); bad = 1; break; }
            got += n;
        }
        return report(got, total, bad);
    }
    if (strcmp(how, "exec") == 0) {
        size_t half = drain(fd, size, 0, total / 2, &bad);
        if (bad || half != total / 2) return report(half, total, 1);
        dup2(fd, 0);
        close(fd);
        char offset[32];
        snprintf(offset, sizeof offset, "%zu", half);
        char *args[] = {argv[0], "count", offset, NULL};
        char *env[] = {"PATH=/usr/bin:/bin", NULL}; /* without LD_PRELOAD */
        execve("/proc/self/exe", args, env);
        perror("execve");
        return 2;
    }
    if (strcmp(how, "fork") == 0) {
        pid_t child = fork();
        if (child == 0) {
            size_t got = drain(fd, size, 0, total / 2, &bad);
            _exit(bad || got != total / 2);
        }
        int status;
        waitpid(child, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { printf("child read wrong\n"); return 1; }
        size_t got = drain(fd, size, total / 2, 0, &bad);
        return report(total / 2 + got, total, bad);
    }
    if (strcmp(how, "pass") == 0) {
        int sp[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
        pid_t child = fork();
        if (child == 0) {
            close(sp[0]);
            close(fd);
            int got_fd = recv_fd(sp[1]);
            if (got_fd < 0) { printf("no fd received\n"); _exit(2); }
            _exit(report(drain(got_fd, size, 0, 0, &bad), total, bad));
        }
        close(sp[1]);
        if (send_fd(sp[0], fd) != 0) { perror("send_fd"); return 2; }
        close(fd);
        int status;
        waitpid(child, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    fprintf(stderr, "unknown HOW %s\n", how);
    return 2;
}

static int sender(const char *addr, size_t total, size_t size) {
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_un un;
    socklen_t len = address(addr, &un);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    for (int tries = 0; connect(fd, (struct sockaddr *)&un, len) != 0; tries++) {
        if (tries > 500) { perror("connect"); return 2; }
        usleep(10000);
    }
    uint8_t *buf = map_or_die(size);
    size_t sent = 0;
    while (sent < total) {
        size_t n = total - sent < size ? total - sent : size;
        for (size_t i = 0; i < n; i++) buf[i] = pat(sent + i, SEED);
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                printf("sent %zu bytes, %s\n", sent + off, errno == EPIPE ? "EPIPE" : strerror(errno));
                return 0;
            }
            off += (size_t)w;
        }
        sent += n;
    }
    close(fd);
    printf("sent %zu bytes, closed\n", sent);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "send") == 0) return sender(argv[2], strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0));
    if (argc >= 6 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0), argv[5], argv);
    if (argc >= 3 && strcmp(argv[1], "count") == 0) {
        int bad = 0;
        size_t from = strtoull(argv[2], 0, 0);
        size_t got = drain(0, 1 << 20, from, 0, &bad);
        return report(from + got, 0, bad);
    }
    fprintf(stderr, "usage: see the comment at the top of unix_peer.c\n");
    return 2;
}
