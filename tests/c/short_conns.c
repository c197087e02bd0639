/*
 * A new connection per request: the server (a forked child) accepts on an
 * abstract Unix address or on 127.0.0.1, reads SIZE bytes of each
 * connection (recv in a loop), checks them and answers SIZE bytes, then
 * closes; the client (this process) connects COUNT times, one request at
 * a time, and checks every reply. Request i carries the periodic stream
 * (common.h) from phase i % 251, its reply from phase (i + 1) % 251, so a
 * byte of another connection never passes.
 *
 * One warm-up connection comes first; after it both sides take their fd,
 * ring mapping and thread counts (leaks.h), and again after the last
 * connection: they must be the same. Each side prints its leak report;
 * the client prints "conns ok".
 *
 * usage: short_conns unix|tcp4 COUNT SIZE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "common.h"
#include "leaks.h"

static uint8_t *pattern; /* pattern[i] = i % 251, SIZE + 251 bytes */

static void send_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { perror("send"); exit(3); }
        p += w;
        n -= (size_t)w;
    }
}

/* Reads SIZE bytes and checks them against phase `phase`; 0 if right. */
static int recv_check(int fd, uint8_t *buf, size_t size, size_t phase, const char *who, int i) {
    size_t got = 0;
    while (got < size) {
        ssize_t r = recv(fd, buf + got, size - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            printf("%s %d: recv returned %zd (%s) after %zu\n", who, i, r, r ? strerror(errno) : "EOF", got);
            return -1;
        }
        got += (size_t)r;
    }
    if (memcmp(buf, pattern + phase, size) != 0) {
        printf("%s %d: ", who, i);
        periodic_mismatch(buf, size, phase);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: short_conns unix|tcp4 COUNT SIZE\n");
        return 2;
    }
    int tcp = strcmp(argv[1], "tcp4") == 0;
    int count = atoi(argv[2]);
    size_t size = strtoull(argv[3], NULL, 0);
    pattern = periodic_pattern(size);
    uint8_t *buf = map_or_die(size);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (tcp) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *sin;
    } else {
        struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
        sun->sun_family = AF_UNIX;
        int n = snprintf(sun->sun_path + 1, sizeof sun->sun_path - 1, "ipc-offload-test-conns-%d", (int)getpid());
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    }
    int l = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, 64) != 0 ||
        getsockname(l, (struct sockaddr *)&ss, &len) != 0) {
        perror("listen");
        return 2;
    }
    pid_t server = fork();
    if (server < 0) { perror("fork"); return 2; }
    if (server == 0) {
        struct holdings before = {0};
        for (int i = -1; i < count; i++) {
            if (i == 0) before = holdings_now();
            int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
            if (a < 0) { perror("accept"); _exit(2); }
            size_t phase = (size_t)(i + 251) % 251;
            if (recv_check(a, buf, size, phase, "request", i) != 0) _exit(1);
            send_all(a, pattern + (phase + 1) % 251, size);
            close(a);
        }
        _exit(holdings_same("server", before, holdings_now()) ? 0 : 1);
    }
    close(l);
    struct holdings before = {0};
    int bad = 0;
    for (int i = -1; i < count && !bad; i++) {
        if (i == 0) before = holdings_now();
        int c = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&ss, len) != 0) { perror("connect"); return 2; }
        size_t phase = (size_t)(i + 251) % 251;
        send_all(c, pattern + phase, size);
        bad = recv_check(c, buf, size, (phase + 1) % 251, "reply", i) != 0;
        close(c);
    }
    int same = holdings_same("client", before, holdings_now());
    if (bad) kill(server, SIGKILL);
    int status;
    waitpid(server, &status, 0);
    if (bad || !same || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    printf("conns ok\n");
    return 0;
}
