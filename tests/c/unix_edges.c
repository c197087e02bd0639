/*
 * Edge cases of a Unix stream socketpair, run with and without the library
 * by tests/unix.rs, which compares what they print (and how they end).
 * Stream byte i is i % 251: bytes 251-255 never occur in it.
 *
 * usage: unix_edges MODE
 *   sigpipe         the parent writes 256 MiB in one write() (SIGPIPE at its
 *                   default) while the child reads 32 MiB and exits: the
 *                   write returns a partial count without SIGPIPE; then
 *                   send(MSG_NOSIGNAL) fails with EPIPE, and write raises
 *                   SIGPIPE
 *   waitall-signal  after a warm-up, the child writes 1 MiB, pauses 400 ms,
 *                   writes 7 MiB; the parent's recv(8 MiB, MSG_WAITALL) is
 *                   interrupted by a timer at 150 ms (no SA_RESTART): it
 *                   returns the 1 MiB it has
 *   writer-execs    the child writes 1 GiB from a second thread while its
 *                   main thread execs sh, which sends a 4-byte marker
 *                   (bytes 255 254 253 252) on the inherited socket and
 *                   waits for one byte back; the parent reads a prefix of
 *                   the stream, the marker, answers, then sees EOF
 *   reader-execs    the child reads from a second thread while its main
 *                   thread execs sh, which drains the socket with cat; the
 *                   parent's 1 GiB write completes
 *   credentials     the child writes 4 MiB, sends 1 MiB with SCM_CREDENTIALS
 *                   through sendmsg, writes 4 MiB more; the parent (with
 *                   SO_PASSCRED) reads the first 4 MiB, then recvmsg with a
 *                   control buffer gets the child's credentials with the
 *                   bytes that follow
 *   highfd          the parent reads 64 MiB on fd 70000 (the library does
 *                   not track fds that high: kernel path)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)

static uint8_t *pattern; /* pattern[i] = i % 251, PATTERN_LEN + 251 bytes */
#define PATTERN_LEN (256 * MIB)

static void make_pattern(void) {
    size_t len = PATTERN_LEN + 251;
    pattern = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pattern == MAP_FAILED) { perror("mmap"); exit(2); }
    for (size_t i = 0; i < 251; i++) pattern[i] = (uint8_t)i;
    for (size_t have = 251; have < len; have *= 2) /* periodic: copy what is there */
        memcpy(pattern + have, pattern, have < len - have ? have : len - have);
}

/* True if buf holds stream bytes [at, at + n). */
static int is_stream(const uint8_t *buf, size_t at, size_t n) {
    return memcmp(buf, pattern + at % 251, n) == 0;
}

static uint8_t *buffer(size_t n) {
    uint8_t *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    return p;
}

static void read_exactly(int fd, uint8_t *buf, size_t n, size_t at) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, buf, n - got < MIB ? n - got : MIB);
        if (r <= 0) { fprintf(stderr, "read: %zd %s\n", r, strerror(errno)); exit(1); }
        if (!is_stream(buf, at + got, (size_t)r)) { printf("wrong bytes at %zu\n", at + got); exit(1); }
        got += (size_t)r;
    }
}

static int sigpipe_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        read_exactly(sv[1], buffer(MIB), 32 * MIB, 0);
        _exit(0);
    }
    close(sv[1]);
    ssize_t n = write(sv[0], pattern, 256 * MIB);
    printf("first write: %s\n", n > 0 && (size_t)n < 256 * MIB ? "partial" : n > 0 ? "whole" : strerror(errno));
    fflush(stdout);
    waitpid(pid, NULL, 0);
    n = send(sv[0], pattern, MIB, MSG_NOSIGNAL); /* the peer is gone: EPIPE, no signal */
    printf("send(MSG_NOSIGNAL): %s\n", n >= 0 ? "sent" : strerror(errno));
    n = write(sv[0], pattern, MIB); /* EPIPE and SIGPIPE */
    printf("second write: %s\n", n >= 0 ? "sent" : strerror(errno));
    return 0;
}

static void on_alarm(int sig) { (void)sig; }

static int waitall_signal_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        uint8_t ack;
        if (write(sv[1], pattern, 8 * MIB) != (ssize_t)(8 * MIB)) _exit(1); /* warm-up: the ends meet */
        if (read(sv[1], &ack, 1) != 1) _exit(1);
        if (write(sv[1], pattern + (8 * MIB) % 251, MIB) != (ssize_t)MIB) _exit(1);
        usleep(400 * 1000);
        if (write(sv[1], pattern + (9 * MIB) % 251, 7 * MIB) != (ssize_t)(7 * MIB)) _exit(1);
        _exit(0);
    }
    close(sv[1]);
    uint8_t *buf = buffer(8 * MIB);
    read_exactly(sv[0], buf, 8 * MIB, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    if (write(sv[0], "k", 1) != 1) return 1;
    struct itimerval it = {{0, 0}, {0, 150 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
    ssize_t r = recv(sv[0], buf, 8 * MIB, MSG_WAITALL);
    printf("interrupted recv(MSG_WAITALL) returned %zd\n", r);
    size_t got = r > 0 ? (size_t)r : 0;
    if (!is_stream(buf, 8 * MIB, got)) { printf("wrong bytes\n"); return 1; }
    read_exactly(sv[0], buf, 8 * MIB - got, 8 * MIB + got);
    int status;
    waitpid(pid, &status, 0);
    printf("rest read, writer %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
    return 0;
}

static int socket_fd;
static volatile size_t moved; /* bytes the second thread has moved so far */

/* Lets the second thread move 64 MiB, then execs `script` on fd 3. */
static void exec_when_busy(const char *script) {
    while (moved < 64 * MIB) usleep(1000);
    execl("/bin/sh", "sh", "-c", script, (char *)NULL);
    _exit(127);
}

static void *write_forever(void *arg) {
    (void)arg;
    for (;;) { /* until the exec ends this thread */
        ssize_t w = write(socket_fd, pattern + moved % 251, 64 * MIB);
        if (w <= 0) break;
        moved += (size_t)w;
    }
    return NULL;
}

static int writer_execs_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        dup2(sv[1], 3); /* inherited by sh: no close-on-exec */
        socket_fd = 3;
        pthread_t t;
        pthread_create(&t, NULL, write_forever, NULL);
        exec_when_busy("printf '\\377\\376\\375\\374' >&3; head -c 1 <&3 >/dev/null");
    }
    close(sv[1]);
    size_t cap = 64 * MIB, at = 0;
    uint8_t *buf = buffer(cap);
    uint8_t marker[4];
    size_t have = 0;
    for (;;) {
        ssize_t r = read(sv[0], buf, cap);
        if (r <= 0) { printf("stream ended before the marker: %zd\n", r); return 1; }
        size_t n = (size_t)r, plain = 0;
        while (plain < n && have == 0 && buf[plain] < 251) plain++;
        if (!is_stream(buf, at, plain)) { printf("wrong bytes at %zu\n", at); return 1; }
        at += plain;
        for (size_t i = plain; i < n && have < 4; i++) marker[have++] = buf[i];
        if (have == 4) break;
    }
    int ok = marker[0] == 255 && marker[1] == 254 && marker[2] == 253 && marker[3] == 252;
    if (write(sv[0], "k", 1) != 1) return 1;
    ssize_t r = read(sv[0], buf, cap);
    int status;
    waitpid(pid, &status, 0);
    printf("a prefix of the stream, %s, then %s; sh %s\n", ok ? "the marker" : "a wrong marker",
           r == 0 ? "eof" : "more bytes", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
    return !ok || r != 0;
}

static void *read_forever(void *arg) {
    (void)arg;
    uint8_t *buf = buffer(64 * MIB);
    for (;;) { /* until the exec ends this thread */
        ssize_t r = read(socket_fd, buf, 64 * MIB);
        if (r <= 0) break;
        moved += (size_t)r;
    }
    return NULL;
}

static int reader_execs_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        dup2(sv[1], 3);
        socket_fd = 3;
        pthread_t t;
        pthread_create(&t, NULL, read_forever, NULL);
        exec_when_busy("cat <&3 >/dev/null");
    }
    close(sv[1]);
    size_t sent = 0;
    for (int i = 0; i < 4; i++) { /* 1 GiB: the reader execs after 64 MiB */
        ssize_t w = write(sv[0], pattern + sent % 251, PATTERN_LEN);
        if (w != (ssize_t)PATTERN_LEN) break;
        sent += PATTERN_LEN;
    }
    close(sv[0]);
    int status;
    waitpid(pid, &status, 0);
    printf("the writes %s; sh %s\n", sent == 4 * PATTERN_LEN ? "completed" : "were cut short",
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
    return sent != 4 * PATTERN_LEN;
}

static int credentials_mode(int sv[2]) {
    int one = 1;
    setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        if (write(sv[1], pattern, 4 * MIB) != (ssize_t)(4 * MIB)) _exit(1);
        struct ucred cred = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
        union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof cred)]; } control;
        struct iovec iov = {.iov_base = pattern + (4 * MIB) % 251, .iov_len = MIB};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof cred);
        memcpy(CMSG_DATA(c), &cred, sizeof cred);
        if (sendmsg(sv[1], &msg, 0) != (ssize_t)MIB) _exit(1);
        if (write(sv[1], pattern + (5 * MIB) % 251, 4 * MIB) != (ssize_t)(4 * MIB)) _exit(1);
        _exit(0);
    }
    close(sv[1]);
    uint8_t *buf = buffer(4 * MIB);
    read_exactly(sv[0], buf, 4 * MIB, 0);
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(struct ucred))]; } control;
    struct iovec iov = {.iov_base = buf, .iov_len = MIB};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    ssize_t r = recvmsg(sv[0], &msg, 0);
    if (r <= 0 || !is_stream(buf, 4 * MIB, (size_t)r)) { printf("recvmsg: %zd\n", r); return 1; }
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    struct ucred cred = {0, 0, 0};
    if (c && c->cmsg_type == SCM_CREDENTIALS) memcpy(&cred, CMSG_DATA(c), sizeof cred);
    printf("recvmsg: stream bytes, credentials %s\n", cred.pid == pid && cred.uid == getuid() ? "of the writer" : "missing");
    read_exactly(sv[0], buf, 9 * MIB - (size_t)r - 4 * MIB, 4 * MIB + (size_t)r);
    int status;
    waitpid(pid, &status, 0);
    printf("9 MiB in order; writer %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
    return 0;
}

static int highfd_mode(int sv[2]) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 70001;
    if (rl.rlim_max < 70001) rl.rlim_max = 70001; /* root may raise it */
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) { printf("skipped: RLIMIT_NOFILE cannot reach 70001\n"); return 0; }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        for (size_t at = 0; at < 64 * MIB; at += 4 * MIB) {
            if (write(sv[1], pattern + at % 251, 4 * MIB) != (ssize_t)(4 * MIB)) _exit(1);
        }
        _exit(0);
    }
    close(sv[1]);
    if (dup2(sv[0], 70000) != 70000) { perror("dup2"); return 1; }
    close(sv[0]);
    read_exactly(70000, buffer(4 * MIB), 64 * MIB, 0);
    int status;
    waitpid(pid, &status, 0);
    printf("64 MiB read on fd 70000\n");
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODE\n", argv[0]); return 2; }
    make_pattern();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) { perror("socketpair"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "sigpipe") == 0) return sigpipe_mode(sv);
    if (strcmp(argv[1], "waitall-signal") == 0) return waitall_signal_mode(sv);
    if (strcmp(argv[1], "writer-execs") == 0) return writer_execs_mode(sv);
    if (strcmp(argv[1], "reader-execs") == 0) return reader_execs_mode(sv);
    if (strcmp(argv[1], "credentials") == 0) return credentials_mode(sv);
    if (strcmp(argv[1], "highfd") == 0) return highfd_mode(sv);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
