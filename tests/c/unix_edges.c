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
 *   waitall-signal  after a warm-up and 100 ms, the child writes 1 MiB, then signals the
 *                   parent, whose recv(8 MiB, MSG_WAITALL) has those bytes
 *                   and waits for more: it returns the 1 MiB (the child's
 *                   wchar for that write goes to stderr)
 *   writer-execs    after a warm-up, the child writes 512 MiB from a second
 *                   thread while its main thread execs sh, which sends a
 *                   4-byte marker (bytes 255 254 253 252) on the inherited
 *                   socket and waits for one byte back; the parent, in a
 *                   512 MiB read, gets a prefix of the stream, then the
 *                   marker, answers, then sees EOF
 *   reader-execs    after a warm-up, the child reads 512 MiB from a second
 *                   thread while its main thread execs this program as
 *                   check-rest; the parent's 1 GiB of writes complete
 *   check-rest      reads fd 3 to EOF: the bytes must continue the stream
 *                   without a gap or a repeat
 *   credentials     a grandchild writes 4 MiB, the child sends 1 MiB with
 *                   SCM_CREDENTIALS through sendmsg, another grandchild
 *                   writes 4 MiB; the parent (with SO_PASSCRED) reads the
 *                   first 4 MiB, then recvmsg with control buffers gets
 *                   exactly the child's 1 MiB, each read with its
 *                   credentials (the kernel never joins two senders' bytes)
 *   highfd          the parent reads 64 MiB on fd 70000 (the library does
 *                   not track fds that high: kernel path)
 *   addressed       the child writes 4 MiB, then 1 MiB with sendto() and
 *                   with sendmsg() naming a destination (both fail with
 *                   EISCONN on a connected socket), then 4 MiB; the parent
 *                   reads the 8 MiB in order, then EOF
 *   slow-start      the child writes its first 4 MiB slowly (16 writes of
 *                   256 KiB, 3 ms apart; how long it took goes to stderr), then 28 MiB in 1 MiB writes; the
 *                   parent reads all 32 MiB in 256 KiB reads
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

#define MIB ((size_t)1 << 20)

static uint8_t *pattern; /* pattern[i] = i % 251, PATTERN_LEN + 251 bytes */
#define PATTERN_LEN (256 * MIB)

static void make_pattern(void) { pattern = periodic_pattern(PATTERN_LEN); }

/* True if buf holds stream bytes [at, at + n). */
static int is_stream(const uint8_t *buf, size_t at, size_t n) {
    return memcmp(buf, pattern + at % 251, n) == 0;
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
        read_exactly(sv[1], map_or_die(MIB), 32 * MIB, 0);
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

/* The 8 MiB warm-up that makes the ends meet (the first large message of a
   connection goes through the kernel), read in 1 MiB reads, then a 1-byte
   ack from the reader. */
static void warm_up_writer(int fd) {
    uint8_t ack;
    if (write(fd, pattern, 8 * MIB) != (ssize_t)(8 * MIB) || read(fd, &ack, 1) != 1) _exit(1);
}

static void warm_up_reader(int fd, uint8_t *buf) {
    read_exactly(fd, buf, 8 * MIB, 0);
    if (write(fd, "k", 1) != 1) exit(1);
}

static int waitall_signal_mode(int sv[2]) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        close(sv[0]);
        uint8_t ack;
        warm_up_writer(sv[1]);
        /* The reader is in its recv by then: the write is offered, and
           taken (a reader not yet waiting gets kernel pieces). */
        usleep(100 * 1000);
        long before = wchar();
        if (write(sv[1], pattern + (8 * MIB) % 251, MIB) != (ssize_t)MIB) _exit(1);
        fprintf(stderr, "test write: wchar +%ld\n", wchar() - before);
        int queued = 1;
        while (ioctl(sv[1], TIOCOUTQ, &queued) == 0 && queued > 0) usleep(100);
        kill(parent, SIGALRM); /* the reader has all of it, and waits for more */
        if (read(sv[1], &ack, 1) != 1) _exit(1);
        if (write(sv[1], pattern + (9 * MIB) % 251, 7 * MIB) != (ssize_t)(7 * MIB)) _exit(1);
        _exit(0);
    }
    close(sv[1]);
    uint8_t *buf = map_or_die(8 * MIB);
    warm_up_reader(sv[0], buf);
    ssize_t r = recv(sv[0], buf, 8 * MIB, MSG_WAITALL);
    printf("interrupted recv(MSG_WAITALL) returned %zd\n", r);
    size_t got = r > 0 ? (size_t)r : 0;
    if (!is_stream(buf, 8 * MIB, got)) { printf("wrong bytes\n"); return 1; }
    if (write(sv[0], "k", 1) != 1) return 1;
    /* The rest in reads below the threshold: the kernel path. */
    for (size_t at = 8 * MIB + got; at < 16 * MIB;) {
        ssize_t n = read(sv[0], buf, 64 * 1024);
        if (n <= 0 || !is_stream(buf, at, (size_t)n)) { printf("wrong rest\n"); return 1; }
        at += (size_t)n;
    }
    int status;
    waitpid(pid, &status, 0);
    printf("rest read, writer %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
    return 0;
}

/* A thread moves bytes on fd 3 while the main thread execs a program that
   inherits fd 3: the exec ends the thread in the middle of its call. */
static int started; /* set (atomically) once the thread is in its call */

/* Waits for the thread to enter its call, then 20 ms, then execs. */
static void exec_when_busy(char *const argv[]) {
    while (!__atomic_load_n(&started, __ATOMIC_ACQUIRE)) usleep(100);
    usleep(20 * 1000);
    execv(argv[0], argv);
    _exit(127);
}

static void *write_512_mib(void *arg) {
    (void)arg;
    __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
    for (size_t at = 8 * MIB; at < 8 * MIB + 512 * MIB; at += PATTERN_LEN) /* until the exec ends it */
        if (write(3, pattern + at % 251, PATTERN_LEN) != (ssize_t)PATTERN_LEN) break;
    return NULL;
}

static int writer_execs_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        dup2(sv[1], 3); /* inherited by sh: no close-on-exec */
        warm_up_writer(3);
        pthread_t t;
        pthread_create(&t, NULL, write_512_mib, NULL);
        char *argv[] = {"/bin/sh", "-c", "printf '\\377\\376\\375\\374' >&3; head -c 1 <&3 >/dev/null", NULL};
        exec_when_busy(argv);
    }
    close(sv[1]);
    size_t cap = 512 * MIB, at = 8 * MIB;
    uint8_t *buf = map_or_die(cap);
    warm_up_reader(sv[0], buf);
    uint8_t marker[4];
    size_t have = 0;
    for (;;) { /* one read of 512 MiB: a rendezvous that the exec cuts */
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

static void *read_512_mib(void *arg) {
    (void)arg;
    uint8_t *buf = map_or_die(512 * MIB);
    __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
    for (;;) /* until the exec ends it */
        if (read(3, buf, 512 * MIB) <= 0) break;
    return NULL;
}

/* The exec'd reader: what is left of the stream must have no gap and no
   repeat (each byte one more than the last, modulo 251). */
static int check_rest_mode(void) {
    if (periodic_rest(3, -1, "the exec'd reader: ") < 0) return 1;
    printf("the exec'd reader got the rest of the stream without a gap\n");
    return 0;
}

static int reader_execs_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        dup2(sv[1], 3);
        warm_up_reader(3, map_or_die(8 * MIB));
        pthread_t t;
        pthread_create(&t, NULL, read_512_mib, NULL);
        char *argv[] = {"/proc/self/exe", "check-rest", NULL};
        exec_when_busy(argv);
    }
    close(sv[1]);
    warm_up_writer(sv[0]);
    size_t sent = 8 * MIB;
    for (int i = 0; i < 4; i++) { /* 1 GiB: the reader execs during the first write */
        ssize_t w = write(sv[0], pattern + sent % 251, PATTERN_LEN);
        if (w != (ssize_t)PATTERN_LEN) break;
        sent += PATTERN_LEN;
    }
    close(sv[0]);
    int status;
    waitpid(pid, &status, 0);
    printf("the writes %s; the reader %s\n", sent == 8 * MIB + 4 * PATTERN_LEN ? "completed" : "were cut short",
           WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
    return sent != 8 * MIB + 4 * PATTERN_LEN;
}

/* Writes stream bytes [at, at + n) from a process of its own. */
static void write_from_a_child(int fd, size_t at, size_t n) {
    pid_t pid = fork();
    if (pid == 0) _exit(write(fd, pattern + at % 251, n) != (ssize_t)n);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) _exit(1);
}

static int credentials_mode(int sv[2]) {
    int one = 1;
    setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        write_from_a_child(sv[1], 0, 4 * MIB);
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
        write_from_a_child(sv[1], 5 * MIB, 4 * MIB);
        _exit(0);
    }
    close(sv[1]);
    uint8_t *buf = map_or_die(4 * MIB);
    read_exactly(sv[0], buf, 4 * MIB, 0);
    /* The kernel never joins bytes of different senders in one read: the
       1 MiB comes in reads that each carry this child's credentials. */
    size_t got = 0;
    int every_part_ok = 1;
    while (got < MIB) {
        union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(struct ucred))]; } control;
        struct iovec iov = {.iov_base = buf, .iov_len = 2 * MIB - got};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof control.buf};
        ssize_t r = recvmsg(sv[0], &msg, 0);
        if (r <= 0 || !is_stream(buf, 4 * MIB + got, (size_t)r)) { printf("recvmsg: %zd\n", r); return 1; }
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        struct ucred cred = {0, 0, 0};
        if (c && c->cmsg_type == SCM_CREDENTIALS) memcpy(&cred, CMSG_DATA(c), sizeof cred);
        every_part_ok &= cred.pid == pid && cred.uid == getuid();
        got += (size_t)r;
    }
    printf("recvmsg: %zu bytes, %s\n", got, every_part_ok ? "each read with its sender's credentials" : "WRONG credentials");
    read_exactly(sv[0], buf, 4 * MIB, 5 * MIB);
    int status;
    waitpid(pid, &status, 0);
    printf("9 MiB in order; writers %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed");
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
    read_exactly(70000, map_or_die(4 * MIB), 64 * MIB, 0);
    int status;
    waitpid(pid, &status, 0);
    printf("64 MiB read on fd 70000\n");
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int addressed_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        struct sockaddr_un to = { .sun_family = AF_UNIX };
        strcpy(to.sun_path, "/nonexistent/ipc-offload-edge");
        if (write(sv[1], pattern, 4 * MIB) != (ssize_t)(4 * MIB)) _exit(1);
        ssize_t r = sendto(sv[1], pattern + 4 * MIB % 251, MIB, 0, (struct sockaddr *)&to, sizeof to);
        printf("sendto with an address: %zd (%s)\n", r, r < 0 ? strerror(errno) : "sent");
        struct iovec iov = { pattern + 4 * MIB % 251, MIB };
        struct msghdr msg = { .msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1 };
        r = sendmsg(sv[1], &msg, 0);
        printf("sendmsg with an address: %zd (%s)\n", r, r < 0 ? strerror(errno) : "sent");
        fflush(stdout);
        if (write(sv[1], pattern + 4 * MIB % 251, 4 * MIB) != (ssize_t)(4 * MIB)) _exit(1);
        _exit(0);
    }
    close(sv[1]);
    uint8_t *buf = map_or_die(MIB);
    for (size_t at = 0; at < 8 * MIB; at += MIB) read_exactly(sv[0], buf, MIB, at);
    ssize_t end = read(sv[0], buf, MIB);
    int status;
    waitpid(pid, &status, 0);
    printf("8 MiB read in order, then %s\n", end == 0 ? "EOF" : "more");
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int slow_start_mode(int sv[2]) {
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        struct timespec pause = {0, 3 * 1000 * 1000}, t0, t1;
        size_t at = 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 16; i++, at += MIB / 4) {
            if (write(sv[1], pattern + at % 251, MIB / 4) != (ssize_t)(MIB / 4)) _exit(1);
            nanosleep(&pause, NULL);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* Past 250 ms the reader may go quiet by the time rule: the test
           then says why it failed. */
        fprintf(stderr, "first 4 MiB in %ld ms\n",
                (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
        for (; at < 32 * MIB; at += MIB)
            if (write(sv[1], pattern + at % 251, MIB) != (ssize_t)MIB) _exit(1);
        _exit(0);
    }
    close(sv[1]);
    uint8_t *buf = map_or_die(MIB / 4);
    for (size_t at = 0; at < 32 * MIB; at += MIB / 4) read_exactly(sv[0], buf, MIB / 4, at);
    int status;
    waitpid(pid, &status, 0);
    printf("32 MiB read in order\n");
    return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODE\n", argv[0]); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "check-rest") == 0) return check_rest_mode();
    make_pattern();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) { perror("socketpair"); return 2; }
    if (strcmp(argv[1], "sigpipe") == 0) return sigpipe_mode(sv);
    if (strcmp(argv[1], "waitall-signal") == 0) return waitall_signal_mode(sv);
    if (strcmp(argv[1], "writer-execs") == 0) return writer_execs_mode(sv);
    if (strcmp(argv[1], "reader-execs") == 0) return reader_execs_mode(sv);
    if (strcmp(argv[1], "credentials") == 0) return credentials_mode(sv);
    if (strcmp(argv[1], "highfd") == 0) return highfd_mode(sv);
    if (strcmp(argv[1], "slow-start") == 0) return slow_start_mode(sv);
    if (strcmp(argv[1], "addressed") == 0) return addressed_mode(sv);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
