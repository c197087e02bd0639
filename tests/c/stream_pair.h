/*
 * A connected pair of stream sockets of a named transport, for the test
 * programs that run one matrix over Unix sockets and TCP:
 *   unix   socketpair(AF_UNIX, SOCK_STREAM)
 *   tcp4   a TCP connection over 127.0.0.1
 *   tcp6   a TCP connection over ::1
 *   tcp    a TCP connection over the address in $IPC_TEST_TCP_ADDR (an
 *          IPv4 or IPv6 literal: a non-loopback address of this host, say)
 * sv[0] is the accepted end, sv[1] the connecting one; both close-on-exec.
 * Returns 0, or -1 with errno set (and a message on stderr).
 */
#ifndef STREAM_PAIR_H
#define STREAM_PAIR_H
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int tcp_pair_at(const char *addr, int sv[2]) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    int family;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        family = sin->sin_family = AF_INET;
        len = sizeof *sin;
    } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        family = sin6->sin6_family = AF_INET6;
        len = sizeof *sin6;
    } else {
        fprintf(stderr, "not an address: %s\n", addr);
        errno = EINVAL;
        return -1;
    }
    int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0) { perror("socket"); return -1; }
    if (bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&ss, &len) != 0) {
        perror("bind/listen");
        close(l);
        return -1;
    }
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&ss, len) != 0) { perror("connect"); close(l); return -1; }
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    close(l);
    if (a < 0) { perror("accept"); close(c); return -1; }
    sv[0] = a;
    sv[1] = c;
    return 0;
}

/* 1 for a transport name stream_pair knows, 0 otherwise. */
static inline int is_stream_transport(const char *t) {
    return !strcmp(t, "unix") || !strcmp(t, "tcp4") || !strcmp(t, "tcp6") || !strcmp(t, "tcp");
}

static inline int stream_pair(const char *transport, int sv[2]) {
    if (!strcmp(transport, "unix")) return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    if (!strcmp(transport, "tcp4")) return tcp_pair_at("127.0.0.1", sv);
    if (!strcmp(transport, "tcp6")) return tcp_pair_at("::1", sv);
    if (!strcmp(transport, "tcp")) {
        const char *addr = getenv("IPC_TEST_TCP_ADDR");
        if (!addr || !*addr) { fprintf(stderr, "tcp: set IPC_TEST_TCP_ADDR\n"); errno = EINVAL; return -1; }
        return tcp_pair_at(addr, sv);
    }
    fprintf(stderr, "unknown transport %s\n", transport);
    errno = EINVAL;
    return -1;
}
#endif
