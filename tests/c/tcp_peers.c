/*
 * TCP connections whose two ends differ (one without the library, another
 * uid, another network namespace) and TCP edge cases (RST, SO_LINGER 0,
 * half-close, SIGKILL of either end), run with and without the library by
 * tests/tcp.rs, which compares what they print. Stream byte i is
 * pat(i % PERIOD) (each direction its own stream from byte 0; PERIOD is
 * 4 MiB + 13, so that no reordering of whole pieces goes unseen); every read
 * is checked.
 *
 * usage: tcp_peers MODE TRANSPORT [ARGS]
 *   TRANSPORT  tcp4 | tcp6 | tcp (stream_pair.h)
 *   unpreloaded ROLE TOTAL  the child takes ROLE (read | write) after it
 *                  execs this program with LD_PRELOAD removed from its
 *                  environment; the parent takes the other role
 *   nobody ROLE WHEN TOTAL  the child takes ROLE as uid and gid 65534:
 *                  WHEN after: it drops them once the connection is made
 *                  (its socket was made by root); before: it drops them,
 *                  then connects (its socket is uid 65534's)
 *   same ROLE TOTAL  the control of the three above: the child stays as it is
 *   netns ROLE TOTAL  the child calls unshare(CLONE_NEWNET) once the
 *                  connection is made, then takes ROLE (prints "skipped:
 *                  ..." and exits 0 when it cannot)
 *   rst-unread     the child reads 32 MiB, then closes with bytes unread;
 *                  the parent writes until a write fails, then once more
 *   linger0        the child writes 32 MiB, waits until the parent read
 *                  them all, then closes with SO_LINGER 0; the parent's
 *                  next reads see the reset
 *   linger0-early  the child writes 64 MiB and closes with SO_LINGER 0 at
 *                  once; the parent reads a prefix, then the reset
 *   halfclose      both ends write at once (the parent 48 MiB, the child
 *                  16 MiB, from a second thread), shutdown(SHUT_WR), try
 *                  one more write, while their main thread reads to EOF
 *   kill-writer    the parent reads 32 MiB, SIGKILLs the writing child
 *                  (blocked in a write), then reads to the end
 *   kill-reader    once the child read 32 MiB, a thread of the writing
 *                  parent SIGKILLs it (blocked in a read); the parent
 *                  writes until a write fails
 *   stream TOTAL WRITE READ FLAGS  the child writes TOTAL bytes in WRITE-byte
 *                  writes, the parent reads them with READ-byte reads
 *                  (FLAGS waitall: recv with MSG_WAITALL; plain: read); at a
 *                  wrong byte it prints which stream bytes the read got
 *                  where (pieces "[at <- from, length]") and kills the
 *                  writer
 *   reqresp COUNT SIZE  the child, its socket nonblocking (poll for POLLOUT
 *                  on EAGAIN), sends COUNT messages of SIZE bytes, each
 *                  after the parent's 1-byte answer to the last; the parent
 *                  waits in epoll_wait before each recv (nonblocking, up to
 *                  SIZE bytes a read) and answers once a message is whole
 * internal: tcp_peers child ROLE FD TOTAL
 *
 * Prints what each end saw, in an order that does not depend on timing
 * (the child's lines, then the parent's). Exits 1 on a wrong byte or a
 * short transfer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"
#include "stream_pair.h"

#define MIB ((size_t)1 << 20)

#define PERIOD (4 * MIB + 13)
static uint8_t *pattern; /* pattern[i] = pat(i % PERIOD), PERIOD + MIB bytes */

static const char *err_name(int e) {
    switch (e) {
    case 0: return "EOF";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ENOTCONN: return "ENOTCONN";
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    default: return strerror(e);
    }
}

/* Writes stream bytes from `*sent` on, 1 MiB a write, until `limit` bytes
   went or a write fails. Returns 0, or the failing write's errno. */
static int send_stream(int fd, size_t *sent, size_t limit) {
    while (*sent < limit) {
        size_t n = limit - *sent < MIB ? limit - *sent : MIB;
        ssize_t w = write(fd, pattern + *sent % PERIOD, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return errno;
        *sent += (size_t)w;
    }
    return 0;
}

/* Reads stream bytes from `*got` on, 1 MiB a read, until `limit` bytes
   came, EOF or an error; exits 1 (after a line) at a wrong byte. Returns 0
   at EOF or the limit, or the failing read's errno. */
static int recv_stream(int fd, size_t *got, size_t limit, const char *who) {
    static __thread uint8_t *buf;
    if (!buf) buf = map_or_die(MIB);
    while (*got < limit) {
        size_t want = limit - *got < MIB ? limit - *got : MIB;
        ssize_t r = read(fd, buf, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return 0;
        if (memcmp(buf, pattern + *got % PERIOD, (size_t)r) != 0) {
            size_t i = 0;
            while (buf[i] == pattern[(*got + i) % PERIOD]) i++;
            /* Which bytes of the stream are there (modulo PERIOD): the
               distance from where they belong, when 64 of them match. */
            long shift = -1;
            size_t win = (size_t)r - i < 64 ? (size_t)r - i : 64;
            for (size_t s = 0; s < PERIOD && shift < 0; s++)
                if (!memcmp(pattern + s, buf + i, win)) shift = (long)((s + PERIOD - (*got + i) % PERIOD) % PERIOD);
            char line[256];
            snprintf(line, sizeof line, "%s: wrong bytes in a read of %zd at stream byte %zu, from byte %zu on: %s %ld\n",
                     who, r, *got, *got + i, shift < 0 ? "not the stream's" : "the stream's bytes this many later:",
                     shift);
            /* stdout may be a buffer of the parent's (halfclose): stderr too */
            fputs(line, stdout);
            fputs(line, stderr);
            fflush(stdout);
            exit(1);
        }
        *got += (size_t)r;
    }
    return 0;
}

/* One whole transfer of `total` bytes as ROLE on fd; prints one line. */
static int take_role(const char *role, int fd, size_t total, const char *who) {
    size_t n = 0;
    int e;
    if (strcmp(role, "write") == 0) {
        e = send_stream(fd, &n, total);
        if (e == 0) shutdown(fd, SHUT_WR);
    } else {
        e = recv_stream(fd, &n, (size_t)-1, who);
    }
    printf("%s %s: %zu bytes, %s\n", who, role, n, e ? err_name(e) : n == total ? "ok" : "short");
    fflush(stdout);
    close(fd);
    return e != 0 || n != total;
}

static const char *other(const char *role) { return strcmp(role, "write") == 0 ? "read" : "write"; }

static int child_status(pid_t pid, const char *who) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(st)) {
        printf("%s: killed by signal %d\n", who, WTERMSIG(st));
        return 1;
    }
    return WEXITSTATUS(st);
}

static int drop_to_nobody(void) {
    return setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534);
}

/* A listening socket on TRANSPORT's loopback (or $IPC_TEST_TCP_ADDR)
   address; its address in *ss. */
static int listener(const char *transport, struct sockaddr_storage *ss, socklen_t *len) {
    const char *addr = !strcmp(transport, "tcp4") ? "127.0.0.1" : !strcmp(transport, "tcp6") ? "::1" : getenv("IPC_TEST_TCP_ADDR");
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (addr && inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        *len = sizeof *sin;
    } else if (addr && inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        *len = sizeof *sin6;
    } else {
        fprintf(stderr, "no address for %s\n", transport);
        exit(2);
    }
    int l = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)ss, *len) || listen(l, 1) || getsockname(l, (struct sockaddr *)ss, len)) {
        perror("listen");
        exit(2);
    }
    return l;
}

static int pair_or_die(const char *transport, int sv[2]) {
    if (stream_pair(transport, sv) != 0) { perror(transport); exit(2); }
    return 0;
}

/* The parent waits for the child only after its own end is done: a child
   that takes the reading role needs the parent writing. */
static int apart(const char *transport, const char *how, const char *role, const char *when, size_t total,
                 char *self) {
    int sv[2] = {-1, -1};
    int l = -1;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int before = when && strcmp(when, "before") == 0;
    if (before) l = listener(transport, &ss, &len);
    else pair_or_die(transport, sv);
    int ready[2];
    if (pipe(ready)) exit(2);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        int fd = sv[1];
        const char *failed = NULL;
        if (before) {
            close(l);
            if (drop_to_nobody()) failed = "setresuid";
            fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len)) { perror("connect"); _exit(2); }
        } else {
            close(sv[0]);
            if (strcmp(how, "nobody") == 0 && drop_to_nobody()) failed = "setresuid";
            if (strcmp(how, "netns") == 0 && unshare(CLONE_NEWNET)) failed = "unshare(CLONE_NEWNET)";
        }
        char c = failed ? 'n' : 'y';
        if (write(ready[1], &c, 1) != 1) _exit(2);
        if (failed) { fprintf(stderr, "%s: %s\n", failed, strerror(errno)); _exit(3); }
        if (strcmp(how, "unpreloaded") == 0) {
            if (dup2(fd, 3) != 3) _exit(2);
            unsetenv("LD_PRELOAD");
            char totals[32];
            snprintf(totals, sizeof totals, "%zu", total);
            execl("/proc/self/exe", self, "child", role, "3", totals, (char *)NULL);
            perror("exec");
            _exit(2);
        }
        char who[32];
        snprintf(who, sizeof who, "child (uid %d)", (int)getuid());
        _exit(take_role(role, fd, total, strcmp(how, "nobody") == 0 ? who : "child"));
    }
    close(ready[1]);
    char c = 0;
    if (read(ready[0], &c, 1) != 1 || c != 'y') {
        int st;
        waitpid(pid, &st, 0);
        printf("skipped: the child could not move apart\n");
        return 0;
    }
    int fd = sv[0];
    if (before) {
        fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) { perror("accept"); return 2; }
        close(l);
    } else {
        close(sv[1]);
    }
    /* The child prints first: the parent prints after it exited. */
    size_t n = 0;
    int e;
    if (strcmp(other(role), "write") == 0) {
        e = send_stream(fd, &n, total);
        if (e == 0) shutdown(fd, SHUT_WR);
    } else {
        e = recv_stream(fd, &n, (size_t)-1, "parent");
    }
    close(fd);
    int bad = child_status(pid, "child");
    printf("parent %s: %zu bytes, %s\n", other(role), n, e ? err_name(e) : n == total ? "ok" : "short");
    return bad || e || n != total;
}

/* The reader closes with bytes unread; the writer's writes fail. */
static int rst_unread(const char *transport) {
    int sv[2];
    pair_or_die(transport, sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[1]);
        size_t got = 0;
        int e = recv_stream(sv[0], &got, 32 * MIB, "child");
        printf("child: read %zu bytes, %s; closes with bytes unread\n", got, e ? err_name(e) : "ok");
        fflush(stdout);
        close(sv[0]);
        _exit(e != 0);
    }
    close(sv[0]);
    size_t sent = 0;
    int e = send_stream(sv[1], &sent, (size_t)64 << 30);
    int bad = child_status(pid, "child");
    int again = 0;
    if (e) {
        ssize_t w = write(sv[1], pattern, MIB);
        again = w < 0 ? errno : 0;
    }
    fprintf(stderr, "parent: sent %zu bytes, then %s, then %s\n", sent, err_name(e), err_name(again));
    printf("parent: sent %s 32 MiB, then a write failed with %s, the next with %s\n",
           sent >= 32 * MIB ? "at least" : "less than", e ? err_name(e) : "nothing", again ? err_name(again) : "nothing");
    return bad || !e;
}

/* SO_LINGER 0: an abortive close, which the peer's read reports. */
static int linger0(const char *transport, int early) {
    int sv[2];
    pair_or_die(transport, sv);
    int all_read[2];
    if (pipe(all_read)) return 2;
    size_t total = (early ? 64 : 32) * MIB;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        close(all_read[1]);
        size_t sent = 0;
        int e = send_stream(sv[1], &sent, total);
        char c;
        if (!early && read(all_read[0], &c, 1) != 1) _exit(2);
        struct linger lg = {1, 0};
        if (setsockopt(sv[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg)) _exit(2);
        close(sv[1]);
        printf("child: sent %zu bytes, %s; closed with SO_LINGER 0\n", sent, e ? err_name(e) : "ok");
        fflush(stdout);
        _exit(e != 0);
    }
    close(sv[1]);
    close(all_read[0]);
    size_t got = 0;
    int e = recv_stream(sv[0], &got, total, "parent");
    if (!early && e == 0 && write(all_read[1], "y", 1) != 1) return 2;
    int e1 = e, e2 = 0;
    size_t more = 0;
    if (e1 == 0) e1 = recv_stream(sv[0], &more, (size_t)-1, "parent");
    if (early && e1 == 0 && got + more < total) e1 = -1; /* EOF before the end, without a reset */
    /* and the read after that */
    uint8_t b;
    ssize_t r = read(sv[0], &b, 1);
    e2 = r < 0 ? errno : 0;
    int bad = child_status(pid, "child");
    fprintf(stderr, "parent: %zu + %zu bytes, then %s, then %s\n", got, more, err_name(e1), err_name(e2));
    if (early)
        printf("parent: a prefix of the stream, then %s, then %s\n", e1 < 0 ? "EOF" : err_name(e1), err_name(e2));
    else
        printf("parent: read %zu bytes, then %s, then %s\n", got + more, err_name(e1), err_name(e2));
    return bad;
}

struct half {
    int fd;
    size_t total;
    int err;
    int after;
};

static void *half_writer(void *arg) {
    struct half *h = arg;
    size_t sent = 0;
    h->err = send_stream(h->fd, &sent, h->total);
    if (shutdown(h->fd, SHUT_WR)) h->err = errno;
    ssize_t w = write(h->fd, pattern, 100);
    h->after = w < 0 ? errno : 0;
    return NULL;
}

/* Each end writes, half-closes, and reads the other's stream to EOF. */
static int halfclose_end(int fd, size_t mine, size_t theirs, const char *who) {
    struct half h = {fd, mine, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, half_writer, &h);
    size_t got = 0;
    int e = recv_stream(fd, &got, (size_t)-1, who);
    pthread_join(t, NULL);
    printf("%s: sent %zu bytes, %s, shut down; a write after: %s; got %zu bytes, %s\n", who, mine,
           h.err ? err_name(h.err) : "ok", h.after ? err_name(h.after) : "wrote", got,
           e ? err_name(e) : got == theirs ? "eof, ok" : "eof, short");
    fflush(stdout);
    close(fd);
    return h.err || e || got != theirs || h.after == 0;
}

static int halfclose_both(const char *transport) {
    int sv[2];
    pair_or_die(transport, sv);
    int done[2];
    if (pipe(done)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        close(done[0]);
        int r = halfclose_end(sv[1], 16 * MIB, 48 * MIB, "child");
        _exit(r);
    }
    close(sv[1]);
    close(done[1]);
    /* The parent's line goes out after the child's: buffer it. */
    char *line = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&line, &len);
    FILE *real = stdout;
    stdout = mem;
    int bad = halfclose_end(sv[0], 48 * MIB, 16 * MIB, "parent");
    fflush(mem);
    stdout = real;
    bad |= child_status(pid, "child");
    fclose(mem);
    fputs(line, stdout);
    free(line);
    return bad;
}

static int kill_writer(const char *transport) {
    int sv[2];
    pair_or_die(transport, sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        size_t sent = 0;
        send_stream(sv[1], &sent, (size_t)64 << 30);
        _exit(3);
    }
    close(sv[1]);
    size_t got = 0;
    int e = recv_stream(sv[0], &got, 32 * MIB, "parent");
    if (e) { printf("parent: %s before the kill\n", err_name(e)); return 1; }
    kill(pid, SIGKILL);
    e = recv_stream(sv[0], &got, (size_t)-1, "parent");
    child_status(pid, "child");
    fprintf(stderr, "parent: %zu bytes, then %s\n", got, err_name(e));
    printf("parent: a prefix of the stream of %s 32 MiB, then %s\n", got >= 32 * MIB ? "at least" : "less than",
           err_name(e));
    return 0;
}

struct killer {
    int ready;
    pid_t pid;
};

static void *kill_when_ready(void *arg) {
    struct killer *k = arg;
    char c;
    if (read(k->ready, &c, 1) == 1) {
        usleep(2000);
        kill(k->pid, SIGKILL);
    }
    return NULL;
}

static int kill_reader(const char *transport) {
    int sv[2];
    pair_or_die(transport, sv);
    int ready[2];
    if (pipe(ready)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[1]);
        close(ready[0]);
        size_t got = 0;
        if (recv_stream(sv[0], &got, 32 * MIB, "child")) _exit(2);
        if (write(ready[1], "y", 1) != 1) _exit(2);
        recv_stream(sv[0], &got, (size_t)-1, "child");
        _exit(3); /* never: the parent kills it first */
    }
    close(sv[0]);
    close(ready[1]);
    struct killer k = {ready[0], pid};
    pthread_t t;
    pthread_create(&t, NULL, kill_when_ready, &k);
    size_t sent = 0;
    int e = send_stream(sv[1], &sent, (size_t)64 << 30);
    pthread_join(t, NULL);
    child_status(pid, "child");
    int again = 0;
    if (e) {
        ssize_t w = write(sv[1], pattern, MIB);
        again = w < 0 ? errno : 0;
    }
    fprintf(stderr, "parent: sent %zu bytes, then %s, then %s\n", sent, err_name(e), err_name(again));
    printf("parent: sent %s 32 MiB, then a write failed with %s, the next with %s\n",
           sent >= 32 * MIB ? "at least" : "less than", e ? err_name(e) : "nothing", again ? err_name(again) : "nothing");
    return !e;
}

/* Where the bytes of a wrong read of n at stream byte `at` came from: up
   to 8 pieces of the stream (src, total bytes). */
static void report_pieces(const uint8_t *buf, size_t n, size_t at, const uint8_t *src, size_t total) {
    printf("a read of %zu at stream byte %zu got the pieces", n, at);
    size_t i = 0;
    for (int pieces = 0; i < n && pieces < 8; pieces++) {
        size_t win = n - i < 64 ? n - i : 64;
        long from = -1;
        if (at + i + win <= total && !memcmp(src + at + i, buf + i, win)) from = (long)(at + i);
        for (size_t s = 0; from < 0 && s + win <= total; s++)
            if (!memcmp(src + s, buf + i, win)) from = (long)s;
        if (from < 0) { printf(" [%zu <- not the stream's]", at + i); break; }
        size_t len = 0;
        while (i + len < n && (size_t)from + len < total && buf[i + len] == src[from + len]) len++;
        printf(" [%zu <- %ld, %zu]", at + i, from, len);
        i += len;
    }
    printf("%s\n", i < n ? " ..." : "");
}

static int stream(const char *transport, size_t total, size_t wsize, size_t rsize, const char *flags) {
    uint8_t *src = map_or_die(total);
    for (size_t i = 0; i < total; i++) src[i] = pat(i, 0x5eed);
    int sv[2];
    pair_or_die(transport, sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        for (size_t sent = 0; sent < total;) {
            size_t n = total - sent < wsize ? total - sent : wsize;
            ssize_t w = write(sv[1], src + sent, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { perror("write"); _exit(1); }
            sent += (size_t)w;
        }
        close(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    uint8_t *buf = map_or_die(rsize);
    int waitall = strcmp(flags, "waitall") == 0;
    size_t got = 0;
    int bad = 0;
    for (;;) {
        ssize_t r = waitall ? recv(sv[0], buf, rsize, MSG_WAITALL) : read(sv[0], buf, rsize);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { printf("read: %s\n", err_name(errno)); bad = 1; break; }
        if (r == 0) break;
        if ((size_t)r > total - got || memcmp(buf, src + got, (size_t)r)) {
            report_pieces(buf, (size_t)r, got, src, total);
            bad = 1;
            kill(pid, SIGKILL);
            break;
        }
        got += (size_t)r;
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    printf("%s w=%zu r=%zu: %zu bytes, %s\n", flags, wsize, rsize, got, bad ? "BAD" : got == total ? "eof, ok" : "short");
    return bad || got != total || !WIFEXITED(st) || WEXITSTATUS(st);
}

/* Waits in poll for `events` on fd; exits on a failure. */
static void wait_for(int fd, short events) {
    struct pollfd p = { .fd = fd, .events = events };
    while (poll(&p, 1, -1) < 0)
        if (errno != EINTR) { perror("poll"); _exit(1); }
}

static int reqresp(const char *transport, size_t count, size_t size) {
    uint8_t *src = map_or_die(size);
    for (size_t i = 0; i < size; i++) src[i] = pat(i, 0x5eed);
    int sv[2];
    pair_or_die(transport, sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
        for (size_t m = 0; m < count; m++) {
            for (size_t sent = 0; sent < size;) {
                ssize_t w = send(sv[1], src + sent, size - sent, 0);
                if (w < 0 && errno == EAGAIN) { wait_for(sv[1], POLLOUT); continue; }
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) { perror("send"); _exit(1); }
                sent += (size_t)w;
            }
            char ack;
            for (;;) {
                ssize_t r = recv(sv[1], &ack, 1, 0);
                if (r == 1) break;
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) { wait_for(sv[1], POLLIN); continue; }
                fprintf(stderr, "child: no answer to message %zu\n", m);
                _exit(1);
            }
        }
        close(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 7 };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev) != 0) { perror("epoll"); exit(2); }
    uint8_t *buf = map_or_die(size);
    size_t messages = 0, bytes = 0;
    int bad = 0, eof = 0;
    while (!bad && !eof) {
        size_t got = 0;
        while (got < size) {
            struct epoll_event out;
            int n = epoll_wait(ep, &out, 1, -1);
            if (n < 0 && errno == EINTR) continue;
            if (n != 1 || out.data.u64 != 7) { perror("epoll_wait"); exit(2); }
            ssize_t r = recv(sv[0], buf + got, size - got, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r < 0) { printf("recv: %s\n", err_name(errno)); bad = 1; break; }
            if (r == 0) { eof = 1; break; }
            if (memcmp(buf + got, src + got, (size_t)r) != 0) { printf("wrong bytes in message %zu\n", messages); bad = 1; break; }
            got += (size_t)r;
        }
        bytes += got;
        if (got == size) {
            messages++;
            while (send(sv[0], "k", 1, 0) != 1)
                if (errno != EAGAIN && errno != EINTR) { printf("answer: %s\n", err_name(errno)); bad = 1; break; }
        } else if (got > 0) {
            printf("a message cut short at %zu bytes\n", got);
            bad = 1;
        }
    }
    if (bad) kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    printf("reqresp %zu x %zu: %zu messages, %zu bytes, %s\n", count, size, messages, bytes, bad ? "BAD" : "eof, ok");
    return bad || messages != count || !WIFEXITED(st) || WEXITSTATUS(st);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    pattern = map_or_die(PERIOD + MIB);
    for (size_t i = 0; i < PERIOD + MIB; i++) pattern[i] = pat(i % PERIOD, 0x7c9);
    if (argc == 5 && strcmp(argv[1], "child") == 0) return take_role(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 0), "child");
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE TRANSPORT [ARGS]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1], *transport = argv[2];
    if (!strcmp(mode, "unpreloaded") && argc == 5)
        return apart(transport, mode, argv[3], NULL, strtoull(argv[4], NULL, 0), argv[0]);
    if (!strcmp(mode, "nobody") && argc == 6)
        return apart(transport, mode, argv[3], argv[4], strtoull(argv[5], NULL, 0), argv[0]);
    if (!strcmp(mode, "same") && argc == 5)
        return apart(transport, mode, argv[3], NULL, strtoull(argv[4], NULL, 0), argv[0]);
    if (!strcmp(mode, "netns") && argc == 5)
        return apart(transport, mode, argv[3], NULL, strtoull(argv[4], NULL, 0), argv[0]);
    if (!strcmp(mode, "stream") && argc == 7)
        return stream(transport, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0), argv[6]);
    if (!strcmp(mode, "reqresp") && argc == 5) return reqresp(transport, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
    if (!strcmp(mode, "rst-unread")) return rst_unread(transport);
    if (!strcmp(mode, "linger0")) return linger0(transport, 0);
    if (!strcmp(mode, "linger0-early")) return linger0(transport, 1);
    if (!strcmp(mode, "halfclose")) return halfclose_both(transport);
    if (!strcmp(mode, "kill-writer")) return kill_writer(transport);
    if (!strcmp(mode, "kill-reader")) return kill_reader(transport);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
