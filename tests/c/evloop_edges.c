/*
 * Edge cases of event-loop readers and nonblocking writers on a Unix stream
 * socketpair (and pipes where named), run with and without the library by
 * tests/evloop.rs, which compares what they print on stdout (only what the
 * kernel makes deterministic) and how they end. The stream is evloop.h's,
 * checked byte by byte as it arrives; a forked child of this program writes
 * it in 1 MiB writes, readers read up to 1 MiB at a time (large calls, so
 * that the library may take them). Counts that vary from run to run go to
 * stderr. Every process has a 60 s alarm as its watchdog.
 *
 * usage: evloop_edges MODE [unix|pipe]
 *   shared-epoll     two reader threads wait in epoll_wait on one set that
 *                    holds the socket EPOLLET | EPOLLONESHOT; each event's
 *                    thread takes a mutex, reads until EAGAIN into the shared
 *                    check, lets go and re-arms: the 128 MiB stream in order
 *   add-while-waiting  thread A waits (10 s) on a set that holds only an
 *                    idle pipe; thread B adds the socket, then tells the
 *                    writer to start its 64 MiB: A's wait returns with the
 *                    socket's event, and A reads the stream to its end
 *   nested           the socket in set E1, E1 in set E2: the reader waits on
 *                    E2, and on E1's event calls epoll_wait(E1, timeout 0)
 *                    and reads: 64 MiB
 *   leaves-epoll     the reader waits in an epoll set for the first 2 MiB,
 *                    then deletes the socket from it, closes the set, turns
 *                    blocking and reads the rest of 64 MiB in 256 KiB reads
 *   fork-epoll       the parent makes the set with the socket registered and
 *                    forks the reader, which reads 64 MiB through the set it
 *                    inherited; a third process writes; the parent only waits
 *   fork-mod         the parent makes the set and forks the reader, which
 *                    first reads 1 MiB on another socket (it has a reader
 *                    channel), then registers the socket in the shared set
 *                    with one data word; the parent changes it to another
 *                    with EPOLL_CTL_MOD, and a third process writes 64 MiB:
 *                    the reader's waits must report the parent's word
 *   ctl-mod          after each read the reader turns EPOLLIN off with
 *                    EPOLL_CTL_MOD (a wait with timeout 0 must then report no
 *                    EPOLLIN), and on again, as libzmq does; once, after
 *                    16 MiB, EPOLL_CTL_DEL and ADD again. Every epoll_ctl
 *                    must return 0 (else exit 5): 64 MiB
 *   dup-close        a thread waits in epoll_wait on a dup of the socket,
 *                    registered, and reads through it; after 16 MiB the main
 *                    thread closes the original (the writer waits for that
 *                    before its last 48 MiB): the stream continues to its end
 *   close-registered as dup-close, but the original fd is the one registered:
 *                    the set keeps reporting it after its close (the file is
 *                    still open through the dup), with the data registered
 *   starvation       one set holds the socket and a pipe on which a second
 *                    child writes one byte every 2 ms, 200 times; the socket's
 *                    writer streams until the reader, after all 200 bytes,
 *                    acks (and for at least 256 MiB): level-triggered, one
 *                    read per ready fd per wait; the reader must get all
 *                    200 bytes while the stream flows
 *   edge-once        edge-triggered; 5 rounds of: the writer sends 4 MiB and
 *                    waits for an ack; the reader drains to EAGAIN, then a
 *                    300 ms wait must report nothing (no edge twice)
 *   oneshot-late     EPOLLIN | EPOLLONESHOT, reported once by the kernel
 *                    before the first large (blocking) read opts the socket
 *                    in, and never re-armed: 5 rounds of 4 MiB, each after
 *                    a 300 ms wait that must report nothing
 *   epollout         the parent writes 32 MiB nonblocking, waiting for
 *                    EPOLLOUT (level-triggered) on EAGAIN, into a slow reader
 *                    child (1 ms of sleep per 64 KiB); "spurious 0" when
 *                    EPOLLOUT was followed by EAGAIN fewer than 3 times
 *   splice-after     the first 64 MiB with read() and recv() in an epoll
 *                    loop, the rest of 256 MiB with splice(2) into a pipe
 *                    that the reader drains
 *   raw-after        the same, the rest with syscall(SYS_read) and
 *                    syscall(SYS_recvfrom) (raw system calls)
 *   exec-after       the same, then the reader execs this program as
 *                    exec-reader, which reads the rest with blocking read()
 *                    (with the environment, so with the library if it had it)
 *   exec-after-nolib the same, with LD_PRELOAD removed from the environment
 *                    of the exec
 *   exec-reader FD OFFSET TOTAL WRITER_PID
 *                    reads FD to EOF: the stream from OFFSET to TOTAL
 *   exec-epoll       the first 64 MiB as exec-after, through a set made
 *                    without EPOLL_CLOEXEC; then the reader execs this
 *                    program as exec-epoll-reader, which reads the rest
 *                    through the set it inherited (epoll_wait on the
 *                    inherited fd, one recv per event; its pid on stderr)
 *   exec-epoll-reader EPFD FD OFFSET TOTAL WRITER_PID
 *   ctl-while-spinning
 *                    a thread spins in epoll_wait with timeout 0 on a set
 *                    holding the socket while 128 MiB stream in; the main
 *                    thread adds and removes an idle pipe in the same set
 *                    2000 times: no epoll_ctl may wait for the spinning
 *                    wait (the longest under 500 ms; the figure on stderr)
 *   kill-writer-epoll, kill-writer-poll, kill-writer-select [unix|pipe]
 *                    a nonblocking reader waiting in epoll, poll or select
 *                    kills the writer of 256 MiB with SIGKILL once it has
 *                    32 MiB: it reads a correct prefix, then EOF (or
 *                    ECONNRESET)
 *   kill-reader [unix|pipe]
 *                    the reader (a child, epoll, nonblocking) kills itself
 *                    with SIGKILL after 32 MiB; the parent, a nonblocking
 *                    writer of 256 MiB waiting for EPOLLOUT, SIGPIPE
 *                    ignored, ends with EPIPE (or finishes), never hangs
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "evloop.h"

#define MIB EV_MIB

extern char **environ;

/* What data.ptr points at: the address says which fd an event is for. */
static int sock_tag, pipe_tag, idle_tag, e1_tag;

/* Prints (stdout) and exits with `code`. */
static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(code);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* How a child ended, in words. */
static const char *ended(int status) {
    static char s[64];
    if (WIFEXITED(status)) snprintf(s, sizeof s, "exited %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(s, sizeof s, "killed by %s", sigabbrev_np(WTERMSIG(status)) ?: "?");
    else snprintf(s, sizeof s, "ended (status %#x)", status);
    return s;
}

static const char *wait_child(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die(2, "waitpid: %s", strerror(errno));
    return ended(status);
}

static void child_start(void) {
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
}

/* Forks a child that writes stream bytes [from, to) on fd, blocking, after
   closing `other` (the parent's end, or -1), then closes fd. */
static pid_t fork_writer(int fd, int other, uint64_t from, uint64_t to) {
    pid_t pid = fork();
    if (pid < 0) die(2, "fork: %s", strerror(errno));
    if (pid == 0) {
        child_start();
        if (other >= 0) close(other);
        uint64_t at = ev_write_stream(fd, from, to, MIB);
        if (at != to) { fprintf(stderr, "writer: %s at %llu\n", strerror(errno), (unsigned long long)at); _exit(1); }
        close(fd);
        _exit(0);
    }
    return pid;
}

/* A socketpair (or a pipe: [0] reads, [1] writes), close-on-exec. */
static void make_pair(int fds[2], int use_pipe) {
    int r = use_pipe ? pipe2(fds, O_CLOEXEC) : socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
    if (r != 0) die(2, "socketpair/pipe2: %s", strerror(errno));
}

static int make_epoll(void) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die(2, "epoll_create1: %s", strerror(errno));
    return ep;
}

static void ctl(int ep, int op, int fd, uint32_t events, void *tag) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.ptr = tag;
    if (epoll_ctl(ep, op, fd, op == EPOLL_CTL_DEL ? NULL : &ev) != 0)
        die(5, "epoll_ctl(%s, fd %d): %s", op == EPOLL_CTL_ADD ? "ADD" : op == EPOLL_CTL_MOD ? "MOD" : "DEL", fd,
            strerror(errno));
}

/* epoll_wait that retries EINTR; 0 events within timeout_ms is fatal
   unless `zero_ok`. Every event must carry one of the tags in `tags`
   (NULL-terminated), else exit 3. */
static int wait_events(int ep, struct epoll_event *evs, int max, int timeout_ms, int zero_ok, void *const *tags) {
    for (;;) {
        int n = epoll_wait(ep, evs, max, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die(2, "epoll_wait: %s", strerror(errno));
        if (n == 0 && !zero_ok) die(1, "no event within %d ms", timeout_ms);
        for (int i = 0; i < n; i++) {
            int known = 0;
            for (void *const *t = tags; *t; t++) known |= evs[i].data.ptr == *t;
            if (!known) die(3, "an epoll event with data %p, which was never registered", evs[i].data.ptr);
        }
        return n;
    }
}

/* Reads up to `size` bytes: read(), recv() or raw system calls in turn
   (`how`: 0 read only, 1 read and recv, 2 SYS_read and SYS_recvfrom). */
static ssize_t read_some(int fd, uint8_t *buf, size_t size, int how) {
    static long calls;
    ssize_t n;
    do {
        int odd = calls++ % 2;
        if (how == 1 && odd) n = recv(fd, buf, size, 0);
        else if (how == 2 && odd) n = syscall(SYS_recvfrom, fd, buf, size, 0, NULL, NULL);
        else if (how == 2) n = syscall(SYS_read, fd, buf, size);
        else n = read(fd, buf, size);
    } while (n < 0 && errno == EINTR);
    return n;
}

enum { DRAINED, AT_EOF, AT_LIMIT };

/* Reads fd (nonblocking) into g until EAGAIN, EOF, or g->at reaches limit
   (0: none). A read error other than EAGAIN is fatal, but ECONNRESET, which
   counts as EOF when `reset_is_eof`. */
static int drain(int fd, uint8_t *buf, struct ev_got *g, int how, uint64_t limit, int reset_is_eof) {
    for (;;) {
        size_t size = MIB;
        if (limit && limit - g->at < size) size = (size_t)(limit - g->at);
        if (limit && size == 0) return AT_LIMIT;
        ssize_t n = read_some(fd, buf, size, how);
        if (n > 0) { ev_verify(g, buf, (size_t)n, ""); continue; }
        if (n == 0) return AT_EOF;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return DRAINED;
        if (errno == ECONNRESET && reset_is_eof) { fprintf(stderr, "reader: ECONNRESET\n"); return AT_EOF; }
        die(1, "read failed after %llu bytes: %s", (unsigned long long)g->at, strerror(errno));
    }
}

/* --- shared-epoll -------------------------------------------------------- */

static struct shared {
    pthread_mutex_t mu;
    int fd, ep, done;
    uint8_t *buf;
    struct ev_got got;
    long events[2];
} sh = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *shared_reader(void *arg) {
    long id = (long)arg;
    void *tags[] = {&sh, NULL};
    for (;;) {
        struct epoll_event ev;
        wait_events(sh.ep, &ev, 1, 10000, 0, tags);
        pthread_mutex_lock(&sh.mu);
        sh.events[id]++;
        if (!sh.done && drain(sh.fd, sh.buf, &sh.got, 1, 0, 0) == AT_EOF) sh.done = 1;
        int done = sh.done;
        pthread_mutex_unlock(&sh.mu);
        /* Re-armed also at the end: the hang-up wakes the other thread. */
        ctl(sh.ep, EPOLL_CTL_MOD, sh.fd, EPOLLIN | EPOLLET | EPOLLONESHOT, &sh);
        if (done) return NULL;
    }
}

static int shared_epoll_mode(void) {
    int sv[2];
    make_pair(sv, 0);
    pid_t writer = fork_writer(sv[1], sv[0], 0, 128 * MIB);
    close(sv[1]);
    sh.fd = sv[0];
    ev_nonblock(sh.fd, 1);
    sh.ep = make_epoll();
    sh.buf = ev_map(MIB);
    sh.got = (struct ev_got)EV_GOT_INIT;
    ctl(sh.ep, EPOLL_CTL_ADD, sh.fd, EPOLLIN | EPOLLET | EPOLLONESHOT, &sh);
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, shared_reader, (void *)i);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    fprintf(stderr, "events: thread 0 %ld, thread 1 %ld\n", sh.events[0], sh.events[1]);
    printf("shared-epoll: %llu bytes in order, then eof; writer %s\n", (unsigned long long)sh.got.at,
           wait_child(writer));
    return sh.got.at != 128 * MIB;
}

/* --- add-while-waiting ----------------------------------------------------- */

static struct {
    int ep, sock, go;
    int waiting;
} aw;

static void *add_the_socket(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&aw.waiting, __ATOMIC_ACQUIRE)) usleep(100);
    usleep(50 * 1000); /* thread A is (most likely) inside epoll_wait by now */
    ctl(aw.ep, EPOLL_CTL_ADD, aw.sock, EPOLLIN, &sock_tag);
    if (write(aw.go, "g", 1) != 1) die(2, "go: %s", strerror(errno));
    return NULL;
}

static int add_while_waiting_mode(void) {
    int sv[2], idle[2], go[2];
    make_pair(sv, 0);
    make_pair(idle, 1);
    make_pair(go, 1);
    pid_t writer = fork();
    if (writer == 0) {
        child_start();
        close(sv[0]);
        char g;
        if (read(go[0], &g, 1) != 1) _exit(1);
        _exit(ev_write_stream(sv[1], 0, 64 * MIB, MIB) == 64 * MIB ? 0 : 1);
    }
    close(sv[1]);
    close(go[0]);
    aw.sock = sv[0];
    aw.go = go[1];
    ev_nonblock(aw.sock, 1);
    aw.ep = make_epoll();
    ctl(aw.ep, EPOLL_CTL_ADD, idle[0], EPOLLIN, &idle_tag);
    pthread_t b;
    pthread_create(&b, NULL, add_the_socket, NULL);
    void *tags[] = {&sock_tag, NULL}; /* the idle pipe never reports */
    struct epoll_event evs[4];
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    __atomic_store_n(&aw.waiting, 1, __ATOMIC_RELEASE);
    wait_events(aw.ep, evs, 4, 10000, 0, tags);
    printf("add-while-waiting: the waiting epoll_wait reported the socket that another thread added\n");
    while (drain(aw.sock, buf, &got, 1, 0, 0) != AT_EOF) wait_events(aw.ep, evs, 4, 10000, 0, tags);
    pthread_join(b, NULL);
    printf("add-while-waiting: %llu bytes in order, then eof; writer %s\n", (unsigned long long)got.at,
           wait_child(writer));
    return got.at != 64 * MIB;
}

/* --- nested ------------------------------------------------------------------ */

static int nested_mode(void) {
    int sv[2];
    make_pair(sv, 0);
    pid_t writer = fork_writer(sv[1], sv[0], 0, 64 * MIB);
    close(sv[1]);
    ev_nonblock(sv[0], 1);
    int e1 = make_epoll(), e2 = make_epoll();
    ctl(e1, EPOLL_CTL_ADD, sv[0], EPOLLIN, &sock_tag);
    ctl(e2, EPOLL_CTL_ADD, e1, EPOLLIN, &e1_tag);
    void *outer[] = {&e1_tag, NULL}, *inner[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    long outer_events = 0, empty_inner = 0;
    for (int eof = 0; !eof;) {
        struct epoll_event evs[4];
        wait_events(e2, evs, 4, 10000, 0, outer);
        outer_events++;
        int n = wait_events(e1, evs, 4, 0, 1, inner);
        if (n == 0) empty_inner++;
        for (int i = 0; i < n && !eof; i++) eof = drain(sv[0], buf, &got, 1, 0, 0) == AT_EOF;
    }
    fprintf(stderr, "nested: %ld events of E2, %ld empty waits on E1\n", outer_events, empty_inner);
    printf("nested: %llu bytes in order, then eof; writer %s\n", (unsigned long long)got.at, wait_child(writer));
    return got.at != 64 * MIB;
}

/* --- leaves-epoll ----------------------------------------------------------- */

/* The socket waits in an epoll set for its first 2 MiB (nonblocking, 1 MiB
   reads: the reader opts in while registered), then leaves it
   (EPOLL_CTL_DEL, the set closed) and turns blocking; the rest of the 64
   MiB stream comes through blocking 256 KiB reads. */
static int leaves_epoll_mode(void) {
    int sv[2];
    make_pair(sv, 0);
    pid_t writer = fork_writer(sv[1], sv[0], 0, 64 * MIB);
    close(sv[1]);
    ev_nonblock(sv[0], 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, sv[0], EPOLLIN, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    struct epoll_event evs[4];
    while (got.at < 2 * MIB) {
        wait_events(ep, evs, 4, 10000, 0, tags);
        if (drain(sv[0], buf, &got, 0, 2 * MIB, 0) == AT_EOF) die(1, "eof after %llu bytes", (unsigned long long)got.at);
    }
    ctl(ep, EPOLL_CTL_DEL, sv[0], 0, NULL);
    close(ep);
    ev_nonblock(sv[0], 0);
    for (;;) {
        ssize_t n = read_some(sv[0], buf, MIB / 4, 0);
        if (n < 0) die(1, "read failed after %llu bytes: %s", (unsigned long long)got.at, strerror(errno));
        if (n == 0) break;
        ev_verify(&got, buf, (size_t)n, "");
    }
    printf("leaves-epoll: %llu bytes in order, then eof; writer %s\n", (unsigned long long)got.at, wait_child(writer));
    return got.at != 64 * MIB;
}

/* --- fork-epoll ---------------------------------------------------------------- */

/* Reads `fd` to EOF through set `ep`, each wait reporting only sock_tag's
   word; returns the bytes read, every one checked. */
static uint64_t read_through_set(int ep, int fd, uint8_t *buf) {
    void *tags[] = {&sock_tag, NULL};
    struct ev_got got = EV_GOT_INIT;
    struct epoll_event evs[4];
    do wait_events(ep, evs, 4, 10000, 0, tags);
    while (drain(fd, buf, &got, 1, 0, 0) != AT_EOF);
    return got.at;
}

static int fork_epoll_mode(void) {
    int sv[2];
    make_pair(sv, 0);
    ev_nonblock(sv[0], 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, sv[0], EPOLLIN, &sock_tag);
    pid_t writer = fork_writer(sv[1], sv[0], 0, 64 * MIB);
    pid_t reader = fork();
    if (reader < 0) die(2, "fork: %s", strerror(errno));
    if (reader == 0) {
        child_start();
        close(sv[1]);
        uint64_t at = read_through_set(ep, sv[0], ev_map(MIB));
        printf("fork-epoll: the child read %llu bytes in order through the set it inherited, then eof\n",
               (unsigned long long)at);
        _exit(at != 64 * MIB);
    }
    close(sv[0]);
    close(sv[1]);
    const char *r = wait_child(reader);
    printf("fork-epoll: reader %s; ", r);
    printf("writer %s\n", wait_child(writer));
    close(ep);
    return 0;
}

/* --- fork-mod ---------------------------------------------------------------- */

static int stale_tag;

static int fork_mod_mode(void) {
    int sv[2], other[2], told[2], changed[2];
    make_pair(sv, 0);
    make_pair(other, 0);
    if (pipe(told) != 0 || pipe(changed) != 0) die(2, "pipe: %s", strerror(errno));
    ev_nonblock(sv[0], 1);
    int ep = make_epoll();
    pid_t reader = fork();
    if (reader < 0) die(2, "fork: %s", strerror(errno));
    char c = 0;
    if (reader == 0) {
        child_start();
        close(sv[1]);
        uint8_t *buf = ev_map(MIB);
        for (size_t got = 0; got < MIB;) {
            ssize_t n = read(other[0], buf, MIB - got);
            if (n <= 0) die(1, "read of the other socket: %s", strerror(errno));
            got += (size_t)n;
        }
        ctl(ep, EPOLL_CTL_ADD, sv[0], EPOLLIN, &stale_tag);
        if (write(told[1], "r", 1) != 1 || read(changed[0], &c, 1) != 1) die(2, "sync: %s", strerror(errno));
        /* Only the parent's word may come out of a wait. */
        uint64_t at = read_through_set(ep, sv[0], buf);
        printf("fork-mod: the child read %llu bytes in order, every event with the parent's data word\n",
               (unsigned long long)at);
        _exit(at != 64 * MIB);
    }
    uint8_t *one = ev_map(MIB);
    if (write(other[1], one, MIB) != (ssize_t)MIB || read(told[0], &c, 1) != 1) die(2, "sync: %s", strerror(errno));
    ctl(ep, EPOLL_CTL_MOD, sv[0], EPOLLIN, &sock_tag);
    if (write(changed[1], "p", 1) != 1) die(2, "sync: %s", strerror(errno));
    pid_t writer = fork_writer(sv[1], sv[0], 0, 64 * MIB);
    close(sv[0]);
    close(sv[1]);
    printf("fork-mod: reader %s; ", wait_child(reader));
    printf("writer %s\n", wait_child(writer));
    return 0;
}

/* --- ctl-mod ---------------------------------------------------------------------- */

static int ctl_mod_mode(void) {
    int sv[2];
    make_pair(sv, 0);
    pid_t writer = fork_writer(sv[1], sv[0], 0, 64 * MIB);
    close(sv[1]);
    int fd = sv[0];
    ev_nonblock(fd, 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    int readded = 0;
    long reads = 0;
    for (;;) {
        struct epoll_event evs[4];
        wait_events(ep, evs, 4, 10000, 0, tags);
        ssize_t n = read_some(fd, buf, MIB, 1);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n < 0) die(1, "read failed after %llu bytes: %s", (unsigned long long)got.at, strerror(errno));
        if (n == 0) break;
        reads++;
        ev_verify(&got, buf, (size_t)n, "");
        ctl(ep, EPOLL_CTL_MOD, fd, 0, &sock_tag); /* EPOLLIN off */
        int off = wait_events(ep, evs, 4, 0, 1, tags);
        for (int i = 0; i < off; i++)
            if (evs[i].events & EPOLLIN) die(5, "EPOLLIN reported while it was off (events %#x)", evs[i].events);
        if (!readded && got.at >= 16 * MIB) {
            ctl(ep, EPOLL_CTL_DEL, fd, 0, NULL);
            ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, &sock_tag);
            readded = 1;
        } else {
            ctl(ep, EPOLL_CTL_MOD, fd, EPOLLIN, &sock_tag); /* and on again */
        }
    }
    fprintf(stderr, "ctl-mod: %ld reads\n", reads);
    printf("ctl-mod: every epoll_ctl returned 0, EPOLLIN never reported while off; %llu bytes in order, then eof; "
           "writer %s\n",
           (unsigned long long)got.at, wait_child(writer));
    return got.at != 64 * MIB;
}

/* --- dup-close, close-registered -------------------------------------------------- */

static struct {
    int ep, fd; /* the epoll set, and the dup that the thread reads */
    struct ev_got got;
    uint64_t published; /* got.at, for the main thread */
} dc;

static void *dup_reader(void *arg) {
    (void)arg;
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct epoll_event evs[4];
    for (;;) {
        wait_events(dc.ep, evs, 4, 10000, 0, tags);
        int r = drain(dc.fd, buf, &dc.got, 1, 0, 0);
        __atomic_store_n(&dc.published, dc.got.at, __ATOMIC_RELEASE);
        if (r == AT_EOF) return NULL;
    }
}

static int dup_close_mode(int register_original) {
    const char *mode = register_original ? "close-registered" : "dup-close";
    int sv[2], go[2];
    make_pair(sv, 0);
    make_pair(go, 1);
    pid_t writer = fork();
    if (writer == 0) {
        child_start();
        close(sv[0]);
        char g;
        if (ev_write_stream(sv[1], 0, 16 * MIB, MIB) != 16 * MIB || read(go[0], &g, 1) != 1) _exit(1);
        _exit(ev_write_stream(sv[1], 16 * MIB, 64 * MIB, MIB) == 64 * MIB ? 0 : 1);
    }
    close(sv[1]);
    close(go[0]);
    int original = sv[0];
    ev_nonblock(original, 1);
    dc.fd = dup(original);
    dc.got = (struct ev_got)EV_GOT_INIT;
    dc.ep = make_epoll();
    ctl(dc.ep, EPOLL_CTL_ADD, register_original ? original : dc.fd, EPOLLIN, &sock_tag);
    pthread_t t;
    pthread_create(&t, NULL, dup_reader, NULL);
    while (__atomic_load_n(&dc.published, __ATOMIC_ACQUIRE) < 16 * MIB) usleep(1000);
    if (close(original) != 0) die(2, "close: %s", strerror(errno));
    if (write(go[1], "g", 1) != 1) die(2, "go: %s", strerror(errno));
    pthread_join(t, NULL);
    printf("%s: the original closed after 16 MiB; %llu bytes in order through the dup, then eof; writer %s\n", mode,
           (unsigned long long)dc.got.at, wait_child(writer));
    return dc.got.at != 64 * MIB;
}

/* --- starvation ----------------------------------------------------------------------- */

#define TRICKLE 200

static int starvation_mode(void) {
    int sv[2], tp[2], ack[2];
    make_pair(sv, 0);
    make_pair(tp, 1);
    make_pair(ack, 1);
    /* When each trickle byte was written (CLOCK_MONOTONIC), for stderr. */
    double *written = mmap(NULL, TRICKLE * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (written == MAP_FAILED) die(2, "mmap: %s", strerror(errno));
    pid_t streamer = fork();
    if (streamer == 0) {
        /* Streams until it has sent 256 MiB and the reader acked. */
        child_start();
        close(sv[0]);
        close(tp[0]);
        close(tp[1]);
        close(ack[1]);
        ev_nonblock(ack[0], 1);
        uint8_t *buf = ev_map(MIB);
        uint64_t at = 0;
        for (;;) {
            char a;
            if (at >= 256 * MIB && read(ack[0], &a, 1) == 1) break;
            ev_fill(buf, MIB, at);
            for (size_t off = 0; off < MIB;) {
                ssize_t w = write(sv[1], buf + off, MIB - off);
                if (w < 0 && errno == EINTR) continue;
                if (w == 0) { fprintf(stderr, "streamer: write returned 0\n"); _exit(1); }
                if (w < 0) { perror("streamer"); _exit(1); }
                off += (size_t)w;
            }
            at += MIB;
        }
        fprintf(stderr, "starvation: the stream was %llu MiB\n", (unsigned long long)(at / MIB));
        _exit(0);
    }
    pid_t trickler = fork();
    if (trickler == 0) {
        child_start();
        close(sv[0]);
        close(sv[1]);
        close(tp[0]);
        close(ack[0]);
        close(ack[1]);
        for (int k = 0; k < TRICKLE; k++) {
            uint8_t b = (uint8_t)k;
            written[k] = now();
            if (write(tp[1], &b, 1) != 1) _exit(1);
            usleep(2000);
        }
        _exit(0);
    }
    close(sv[1]);
    close(tp[1]);
    close(ack[0]);
    ev_nonblock(sv[0], 1);
    ev_nonblock(tp[0], 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, sv[0], EPOLLIN, &sock_tag);
    ctl(ep, EPOLL_CTL_ADD, tp[0], EPOLLIN, &pipe_tag);
    void *tags[] = {&sock_tag, &pipe_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    int pipe_bytes = 0, sock_eof = 0, pipe_eof = 0;
    double worst = 0;
    while (!sock_eof || !pipe_eof) {
        struct epoll_event evs[4];
        int n = wait_events(ep, evs, 4, 10000, 0, tags);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &sock_tag) { /* one read per ready fd per wait */
                ssize_t r = read_some(sv[0], buf, MIB, 1);
                if (r > 0) ev_verify(&got, buf, (size_t)r, "");
                else if (r == 0) {
                    sock_eof = 1;
                    ctl(ep, EPOLL_CTL_DEL, sv[0], 0, NULL);
                } else if (errno != EAGAIN) die(1, "socket read: %s", strerror(errno));
            } else {
                uint8_t small[64];
                ssize_t r = read(tp[0], small, sizeof small);
                for (ssize_t k = 0; k < r; k++, pipe_bytes++) {
                    if (pipe_bytes >= TRICKLE || small[k] != (uint8_t)pipe_bytes)
                        die(1, "pipe byte %d is %d", pipe_bytes, small[k]);
                    double late = now() - written[pipe_bytes];
                    if (late > worst) worst = late;
                    if (pipe_bytes == TRICKLE - 1 && write(ack[1], "a", 1) != 1) die(2, "ack: %s", strerror(errno));
                }
                if (r == 0) {
                    pipe_eof = 1;
                    ctl(ep, EPOLL_CTL_DEL, tp[0], 0, NULL);
                } else if (r < 0 && errno != EAGAIN) die(1, "pipe read: %s", strerror(errno));
            }
        }
    }
    fprintf(stderr, "starvation: the slowest pipe byte was read %.1f ms after its write\n", worst * 1e3);
    printf("starvation: %d pipe bytes in order while the stream flowed; the stream in order (at least 256 MiB: %s), "
           "then eof\n",
           pipe_bytes, got.at >= 256 * MIB ? "yes" : "no");
    printf("streamer %s; ", wait_child(streamer));
    printf("trickler %s\n", wait_child(trickler));
    return pipe_bytes != TRICKLE || got.at < 256 * MIB;
}

/* --- edge-once --------------------------------------------------------------------------- */

/* A writer child for the round-by-round modes: ROUNDS rounds of 4 MiB of
   the stream on sv[1], each but the first after an ack byte on ack[0]; with
   `final_ack`, one more ack read after the last round. */
static pid_t fork_round_writer(int sv[2], int ack[2], int rounds, int final_ack) {
    pid_t writer = fork();
    if (writer != 0) return writer;
    child_start();
    close(sv[0]);
    char a;
    for (uint64_t round = 0; round < (uint64_t)rounds; round++) {
        if (round > 0 && read(ack[0], &a, 1) != 1) _exit(1);
        if (ev_write_stream(sv[1], round * 4 * MIB, (round + 1) * 4 * MIB, MIB) != (round + 1) * 4 * MIB) _exit(1);
    }
    if (final_ack && read(ack[0], &a, 1) != 1) _exit(1);
    _exit(0);
}

static int edge_once_mode(void) {
    int sv[2], ack[2];
    make_pair(sv, 0);
    make_pair(ack, 1);
    pid_t writer = fork_round_writer(sv, ack, 5, 1);
    close(sv[1]);
    close(ack[0]);
    ev_nonblock(sv[0], 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, sv[0], EPOLLIN | EPOLLET, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    struct epoll_event evs[4];
    int ok = 1;
    for (uint64_t round = 0; round < 5; round++) {
        long events = 0;
        while (got.at < (round + 1) * 4 * MIB) {
            wait_events(ep, evs, 4, 10000, 0, tags);
            events++;
            if (drain(sv[0], buf, &got, 1, 0, 0) == AT_EOF) die(1, "eof after %llu bytes", (unsigned long long)got.at);
        }
        if (got.at != (round + 1) * 4 * MIB) die(1, "%llu bytes in round %d", (unsigned long long)got.at, (int)round);
        int again = wait_events(ep, evs, 4, 300, 1, tags);
        fprintf(stderr, "edge-once: round %d: %ld events\n", (int)round, events);
        printf("round %d: 4 MiB, drained to EAGAIN, then %s\n", (int)round,
               again == 0 ? "no event within 300 ms" : "an event again");
        ok &= again == 0;
        if (write(ack[1], "a", 1) != 1) die(2, "ack: %s", strerror(errno));
    }
    close(ack[1]);
    while (drain(sv[0], buf, &got, 1, 0, 0) != AT_EOF) wait_events(ep, evs, 4, 10000, 0, tags);
    printf("edge-once: %llu bytes in order, then eof; writer %s\n", (unsigned long long)got.at, wait_child(writer));
    return !ok || got.at != 20 * MIB;
}

/* --- oneshot-late ------------------------------------------------------------------------- */

/* The socket registered EPOLLIN | EPOLLONESHOT and reported once by the
   kernel (which disarms it) before its first large read opts it in; never
   re-armed. 5 rounds of: the writer sends 4 MiB once acked, a 300 ms wait
   must report nothing (the registration is disarmed), then blocking reads
   take the 4 MiB. */
static int oneshot_late_mode(void) {
    int sv[2], ack[2];
    make_pair(sv, 0);
    make_pair(ack, 1);
    pid_t writer = fork_round_writer(sv, ack, 6, 0);
    close(sv[1]);
    close(ack[0]);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, sv[0], EPOLLIN | EPOLLONESHOT, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    struct epoll_event evs[4];
    int first = wait_events(ep, evs, 4, 10000, 0, tags);
    printf("oneshot-late: the kernel reported the socket %s\n", first == 1 ? "once" : "more than once");
    int ok = first == 1;
    if (drain(sv[0], buf, &got, 0, 4 * MIB, 0) != AT_LIMIT) die(1, "eof after %llu bytes", (unsigned long long)got.at);
    for (uint64_t round = 1; round < 6; round++) {
        if (write(ack[1], "a", 1) != 1) die(2, "ack: %s", strerror(errno));
        int again = wait_events(ep, evs, 4, 300, 1, tags);
        printf("round %d: %s\n", (int)round, again == 0 ? "no event within 300 ms" : "the disarmed socket reported");
        ok &= again == 0;
        if (drain(sv[0], buf, &got, 0, (round + 1) * 4 * MIB, 0) != AT_LIMIT)
            die(1, "eof after %llu bytes", (unsigned long long)got.at);
    }
    close(ack[1]);
    uint8_t end;
    ssize_t n = read(sv[0], &end, 1);
    printf("oneshot-late: %llu bytes in order, then %s; writer %s\n", (unsigned long long)got.at,
           n == 0 ? "eof" : "more", wait_child(writer));
    return !ok || got.at != 24 * MIB || n != 0;
}

/* --- epollout ------------------------------------------------------------------------------ */

static int epollout_mode(void) {
    int sv[2];
    make_pair(sv, 0);
    uint64_t total = 32 * MIB;
    pid_t reader = fork();
    if (reader == 0) {
        /* A slow reader: blocking reads of up to 1 MiB, 1 ms of sleep per
           64 KiB read. */
        child_start();
        close(sv[1]);
        uint8_t *buf = ev_map(MIB);
        struct ev_got got = EV_GOT_INIT;
        for (;;) {
            ssize_t n = read(sv[0], buf, MIB);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) die(1, "reader: %s", strerror(errno));
            if (n == 0) break;
            ev_verify(&got, buf, (size_t)n, "reader: ");
            usleep((useconds_t)(1000 * (((size_t)n + 65535) / 65536)));
        }
        printf("epollout: the reader got %llu bytes in order, then eof\n", (unsigned long long)got.at);
        _exit(got.at != total);
    }
    close(sv[0]);
    int fd = sv[1];
    signal(SIGPIPE, SIG_IGN);
    ev_nonblock(fd, 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, fd, EPOLLOUT, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    long spurious = 0, again = 0;
    int reported = 0; /* the last thing was EPOLLOUT */
    for (uint64_t at = 0; at < total;) {
        size_t n = total - at < MIB ? (size_t)(total - at) : MIB;
        ev_fill(buf, n, at);
        for (size_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                again++;
                if (reported) spurious++;
                struct epoll_event ev;
                wait_events(ep, &ev, 1, 10000, 0, tags);
                if (!(ev.events & EPOLLOUT)) die(1, "epoll reported %#x, not EPOLLOUT", ev.events);
                reported = 1;
                continue;
            }
            if (w == 0) die(1, "write returned 0 at offset %llu", (unsigned long long)(at + off));
            if (w < 0) die(1, "write: %s", strerror(errno));
            reported = 0;
            off += (size_t)w;
        }
        at += n;
    }
    close(fd);
    fprintf(stderr, "epollout: %ld EAGAIN, %ld right after EPOLLOUT\n", again, spurious);
    const char *r = wait_child(reader);
    printf("epollout: the writer wrote %llu bytes, ", (unsigned long long)total);
    if (spurious < 3) printf("spurious 0");
    else printf("spurious %ld", spurious);
    printf("; reader %s\n", r);
    return 0;
}

/* --- splice-after, raw-after, exec-after ---------------------------------------------------- */

#define AFTER_FIRST (64 * MIB)
#define AFTER_TOTAL (256 * MIB)

static int exec_reader_mode(int argc, char **argv) {
    if (argc != 6) die(2, "usage: exec-reader FD OFFSET TOTAL WRITER_PID");
    int fd = atoi(argv[2]);
    uint64_t from = strtoull(argv[3], NULL, 0), total = strtoull(argv[4], NULL, 0);
    pid_t writer = (pid_t)atoi(argv[5]);
    alarm(60);
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = {from, EV_FNV_OFFSET};
    for (;;) {
        ssize_t n = read(fd, buf, MIB);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die(1, "exec-reader: %s", strerror(errno));
        if (n == 0) break;
        ev_verify(&got, buf, (size_t)n, "exec-reader: ");
    }
    printf("exec-reader: bytes %llu to %llu of the stream, in order, then eof; writer %s\n",
           (unsigned long long)from, (unsigned long long)got.at, wait_child(writer));
    return got.at != total;
}

/* The exec'd half of exec-epoll: reads through the inherited set. */
static int exec_epoll_reader_mode(int argc, char **argv) {
    if (argc != 7) die(2, "usage: exec-epoll-reader EPFD FD OFFSET TOTAL WRITER_PID");
    int ep = atoi(argv[2]), fd = atoi(argv[3]);
    uint64_t from = strtoull(argv[4], NULL, 0), total = strtoull(argv[5], NULL, 0);
    pid_t writer = (pid_t)atoi(argv[6]);
    alarm(60);
    fprintf(stderr, "exec-epoll-reader pid %d\n", (int)getpid());
    /* The set holds only the socket, registered before the exec with an
       address of the old image as its data: any event is the socket's. */
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = {from, EV_FNV_OFFSET};
    struct epoll_event evs[4];
    for (int eof = 0; !eof;) {
        int n = epoll_wait(ep, evs, 4, 10000);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die(1, "exec-epoll-reader: epoll_wait %d at %llu", n, (unsigned long long)got.at);
        ssize_t r = recv(fd, buf, MIB, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r < 0) die(1, "exec-epoll-reader: %s", strerror(errno));
        if (r == 0) eof = 1;
        else ev_verify(&got, buf, (size_t)r, "exec-epoll-reader: ");
    }
    printf("exec-epoll-reader: bytes %llu to %llu of the stream through the inherited set, in order, then eof; "
           "writer %s\n",
           (unsigned long long)from, (unsigned long long)got.at, wait_child(writer));
    return got.at != total;
}

/* exec-epoll: the first 64 MiB, then the exec. */
static int exec_epoll_mode(void) {
    int sv[2];
    make_pair(sv, 0);
    pid_t writer = fork_writer(sv[1], sv[0], 0, AFTER_TOTAL);
    close(sv[1]);
    int fd = sv[0];
    ev_nonblock(fd, 1);
    int ep = epoll_create1(0); /* inherited by the exec */
    if (ep < 0) die(2, "epoll_create1: %s", strerror(errno));
    ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    struct epoll_event evs[4];
    for (;;) {
        wait_events(ep, evs, 4, 10000, 0, tags);
        int r = drain(fd, buf, &got, 1, AFTER_FIRST, 0);
        if (r == AT_LIMIT) break;
        if (r == AT_EOF) die(1, "eof after %llu bytes", (unsigned long long)got.at);
    }
    printf("exec-epoll: the first %llu bytes in order in an epoll loop\n", (unsigned long long)got.at);
    if (fcntl(fd, F_SETFD, 0) != 0) die(2, "fcntl: %s", strerror(errno));
    char eps[16], fds[16], from[32], total[32], pid[16];
    snprintf(eps, sizeof eps, "%d", ep);
    snprintf(fds, sizeof fds, "%d", fd);
    snprintf(from, sizeof from, "%llu", (unsigned long long)got.at);
    snprintf(total, sizeof total, "%llu", (unsigned long long)AFTER_TOTAL);
    snprintf(pid, sizeof pid, "%d", (int)writer);
    char *args[] = {"evloop_edges", "exec-epoll-reader", eps, fds, from, total, pid, NULL};
    execve("/proc/self/exe", args, environ);
    die(2, "execve: %s", strerror(errno));
    return 2;
}

/* ctl-while-spinning: epoll_ctl beside a thread spinning in epoll_wait. */
static struct {
    int ep, fd;
    struct ev_got got;
} spin_state;

static void *spinning_reader(void *arg) {
    (void)arg;
    uint8_t *buf = ev_map(MIB);
    struct epoll_event evs[8];
    for (;;) {
        int n = epoll_wait(spin_state.ep, evs, 8, 0);
        if (n < 0 && errno != EINTR) die(2, "epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr != &sock_tag) continue;
            if (drain(spin_state.fd, buf, &spin_state.got, 1, 0, 0) == AT_EOF) return NULL;
        }
    }
}

static int ctl_while_spinning_mode(void) {
    int sv[2], idle[2];
    make_pair(sv, 0);
    make_pair(idle, 1);
    pid_t writer = fork_writer(sv[1], sv[0], 0, 128 * MIB);
    close(sv[1]);
    spin_state.fd = sv[0];
    spin_state.got = (struct ev_got)EV_GOT_INIT;
    ev_nonblock(sv[0], 1);
    spin_state.ep = make_epoll();
    ctl(spin_state.ep, EPOLL_CTL_ADD, sv[0], EPOLLIN, &sock_tag);
    pthread_t t;
    pthread_create(&t, NULL, spinning_reader, NULL);
    double longest = 0;
    for (int i = 0; i < 2000; i++) {
        double t0 = now();
        ctl(spin_state.ep, EPOLL_CTL_ADD, idle[0], EPOLLIN, &idle_tag);
        ctl(spin_state.ep, EPOLL_CTL_DEL, idle[0], 0, NULL);
        double dt = now() - t0;
        if (dt > longest) longest = dt;
    }
    pthread_join(t, NULL);
    fprintf(stderr, "ctl-while-spinning: the longest ADD+DEL took %.3f ms\n", longest * 1e3);
    printf("ctl-while-spinning: %llu bytes in order, then eof; epoll_ctl %s; writer %s\n",
           (unsigned long long)spin_state.got.at, longest < 0.5 ? "never waited" : "waited",
           wait_child(writer));
    return 0;
}

static int after_mode(const char *mode) {
    int sv[2];
    make_pair(sv, 0);
    pid_t writer = fork_writer(sv[1], sv[0], 0, AFTER_TOTAL);
    close(sv[1]);
    int fd = sv[0];
    ev_nonblock(fd, 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    struct epoll_event evs[4];
    for (;;) { /* exactly the first 64 MiB, with read() and recv() */
        wait_events(ep, evs, 4, 10000, 0, tags);
        int r = drain(fd, buf, &got, 1, AFTER_FIRST, 0);
        if (r == AT_LIMIT) break;
        if (r == AT_EOF) die(1, "eof after %llu bytes", (unsigned long long)got.at);
    }
    printf("%s: the first %llu bytes in order with read() and recv() in an epoll loop\n", mode,
           (unsigned long long)got.at);
    if (strncmp(mode, "exec-after", 10) == 0) {
        ev_nonblock(fd, 0);
        if (fcntl(fd, F_SETFD, 0) != 0) die(2, "fcntl: %s", strerror(errno));
        char fds[16], from[32], total[32], pid[16];
        snprintf(fds, sizeof fds, "%d", fd);
        snprintf(from, sizeof from, "%llu", (unsigned long long)got.at);
        snprintf(total, sizeof total, "%llu", (unsigned long long)AFTER_TOTAL);
        snprintf(pid, sizeof pid, "%d", (int)writer);
        char *args[] = {"evloop_edges", "exec-reader", fds, from, total, pid, NULL};
        char **env = environ;
        if (strcmp(mode, "exec-after-nolib") == 0) { /* environ without LD_PRELOAD */
            size_t n = 0;
            while (environ[n]) n++;
            env = calloc(n + 1, sizeof *env);
            for (size_t i = 0, j = 0; i < n; i++)
                if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0) env[j++] = environ[i];
        }
        execve("/proc/self/exe", args, env);
        die(2, "execve: %s", strerror(errno));
    }
    int is_splice = strcmp(mode, "splice-after") == 0;
    int p[2] = {-1, -1};
    if (is_splice) {
        make_pair(p, 1);
        if (fcntl(p[1], F_SETPIPE_SZ, (int)MIB) < 0) fprintf(stderr, "F_SETPIPE_SZ: %s\n", strerror(errno));
    }
    for (int eof = 0; !eof;) {
        wait_events(ep, evs, 4, 10000, 0, tags);
        if (!is_splice) {
            eof = drain(fd, buf, &got, 2, 0, 0) == AT_EOF;
            continue;
        }
        for (;;) {
            ssize_t s = splice(fd, NULL, p[1], NULL, MIB, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
            if (s < 0 && errno == EINTR) continue;
            if (s < 0 && errno == EAGAIN) break;
            if (s < 0) die(1, "splice: %s", strerror(errno));
            if (s == 0) { eof = 1; break; }
            for (ssize_t have = 0; have < s;) {
                ssize_t n = read(p[0], buf, (size_t)(s - have));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) die(1, "read from the splice pipe: %zd %s", n, strerror(errno));
                ev_verify(&got, buf, (size_t)n, "");
                have += n;
            }
        }
    }
    printf("%s: then up to %llu by %s, in order, then eof; writer %s\n", mode, (unsigned long long)got.at,
           is_splice ? "splice(2) through a pipe" : "raw SYS_read and SYS_recvfrom", wait_child(writer));
    return got.at != AFTER_TOTAL;
}

/* --- kill-writer-*, kill-reader -------------------------------------------------------------- */

#define KILL_AFTER (32 * MIB)
#define KILL_TOTAL (256 * MIB)

/* Waits until fd is readable: epoll (ep), poll or select. */
static void wait_readable(const char *how, int fd, int ep) {
    int n;
    do {
        if (strcmp(how, "epoll") == 0) {
            struct epoll_event ev;
            void *tags[] = {&sock_tag, NULL};
            n = wait_events(ep, &ev, 1, 10000, 0, tags);
        } else if (strcmp(how, "poll") == 0) {
            struct pollfd p = {fd, POLLIN, 0};
            n = poll(&p, 1, 10000);
        } else {
            fd_set set;
            FD_ZERO(&set);
            FD_SET(fd, &set);
            struct timeval tv = {10, 0};
            n = select(fd + 1, &set, NULL, NULL, &tv);
        }
    } while (n < 0 && errno == EINTR);
    if (n < 0) die(2, "%s: %s", how, strerror(errno));
    if (n == 0) die(1, "no readiness within 10 s");
}

static int kill_writer_mode(const char *how, int use_pipe) {
    int fds[2];
    make_pair(fds, use_pipe);
    int rd = fds[0], wr = fds[1];
    pid_t writer = fork_writer(wr, rd, 0, KILL_TOTAL);
    close(wr);
    ev_nonblock(rd, 1);
    int ep = -1;
    if (strcmp(how, "epoll") == 0) {
        ep = make_epoll();
        ctl(ep, EPOLL_CTL_ADD, rd, EPOLLIN, &sock_tag);
    }
    uint8_t *buf = ev_map(MIB);
    struct ev_got got = EV_GOT_INIT;
    int killed = 0;
    for (;;) {
        wait_readable(how, rd, ep);
        if (drain(rd, buf, &got, use_pipe ? 0 : 1, killed ? 0 : KILL_AFTER, 1) == AT_EOF) break;
        if (!killed && got.at >= KILL_AFTER) {
            kill(writer, SIGKILL);
            killed = 1;
        }
    }
    fprintf(stderr, "kill-writer: %llu bytes before the end\n", (unsigned long long)got.at);
    if (got.at < KILL_AFTER || got.at >= KILL_TOTAL)
        die(1, "%llu bytes: not a prefix cut by the kill", (unsigned long long)got.at);
    printf("prefix ok\nend\nwriter %s\n", wait_child(writer));
    return 0;
}

static int kill_reader_mode(int use_pipe) {
    int fds[2];
    make_pair(fds, use_pipe);
    int rd = fds[0], wr = fds[1];
    pid_t reader = fork();
    if (reader == 0) {
        child_start();
        close(wr);
        ev_nonblock(rd, 1);
        int ep = make_epoll();
        ctl(ep, EPOLL_CTL_ADD, rd, EPOLLIN, &sock_tag);
        uint8_t *buf = ev_map(MIB);
        struct ev_got got = EV_GOT_INIT;
        for (;;) {
            wait_readable("epoll", rd, ep);
            if (drain(rd, buf, &got, use_pipe ? 0 : 1, KILL_AFTER, 0) != DRAINED) break;
        }
        raise(SIGKILL);
    }
    close(rd);
    signal(SIGPIPE, SIG_IGN);
    ev_nonblock(wr, 1);
    int ep = make_epoll();
    ctl(ep, EPOLL_CTL_ADD, wr, EPOLLOUT, &sock_tag);
    void *tags[] = {&sock_tag, NULL};
    uint8_t *buf = ev_map(MIB);
    const char *how = "finished";
    uint64_t at = 0;
    while (at < KILL_TOTAL && strcmp(how, "finished") == 0) {
        ev_fill(buf, MIB, at);
        for (size_t off = 0; off < MIB;) {
            ssize_t w = write(wr, buf + off, MIB - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                struct epoll_event ev;
                wait_events(ep, &ev, 1, 10000, 0, tags);
                continue;
            }
            if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                how = errno == EPIPE ? "EPIPE" : "ECONNRESET";
                break;
            }
            if (w == 0) die(1, "write returned 0 at offset %llu", (unsigned long long)(at + off));
            if (w < 0) die(1, "write: %s", strerror(errno));
            off += (size_t)w;
        }
        at += MIB;
    }
    close(wr);
    fprintf(stderr, "kill-reader: the writer ended with %s near %llu MiB\n", how, (unsigned long long)(at / MIB));
    printf("writer ended\nreader %s\n", wait_child(reader));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODE [unix|pipe]\n", argv[0]); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argv[1];
    if (strcmp(mode, "exec-reader") == 0) return exec_reader_mode(argc, argv);
    if (strcmp(mode, "exec-epoll-reader") == 0) return exec_epoll_reader_mode(argc, argv);
    alarm(60);
    int use_pipe = argc > 2 && strcmp(argv[2], "pipe") == 0;
    if (argc > 2 && !use_pipe && strcmp(argv[2], "unix") != 0) {
        fprintf(stderr, "unknown transport %s\n", argv[2]);
        return 2;
    }
    if (strcmp(mode, "shared-epoll") == 0) return shared_epoll_mode();
    if (strcmp(mode, "add-while-waiting") == 0) return add_while_waiting_mode();
    if (strcmp(mode, "nested") == 0) return nested_mode();
    if (strcmp(mode, "leaves-epoll") == 0) return leaves_epoll_mode();
    if (strcmp(mode, "fork-epoll") == 0) return fork_epoll_mode();
    if (strcmp(mode, "fork-mod") == 0) return fork_mod_mode();
    if (strcmp(mode, "ctl-mod") == 0) return ctl_mod_mode();
    if (strcmp(mode, "dup-close") == 0) return dup_close_mode(0);
    if (strcmp(mode, "close-registered") == 0) return dup_close_mode(1);
    if (strcmp(mode, "starvation") == 0) return starvation_mode();
    if (strcmp(mode, "edge-once") == 0) return edge_once_mode();
    if (strcmp(mode, "oneshot-late") == 0) return oneshot_late_mode();
    if (strcmp(mode, "epollout") == 0) return epollout_mode();
    if (strcmp(mode, "exec-epoll") == 0) return exec_epoll_mode();
    if (strcmp(mode, "ctl-while-spinning") == 0) return ctl_while_spinning_mode();
    if (strcmp(mode, "splice-after") == 0 || strcmp(mode, "raw-after") == 0 || strcmp(mode, "exec-after") == 0 ||
        strcmp(mode, "exec-after-nolib") == 0)
        return after_mode(mode);
    if (strncmp(mode, "kill-writer-", 12) == 0) {
        const char *how = mode + 12;
        if (strcmp(how, "epoll") != 0 && strcmp(how, "poll") != 0 && strcmp(how, "select") != 0) {
            fprintf(stderr, "unknown mode %s\n", mode);
            return 2;
        }
        return kill_writer_mode(how, use_pipe);
    }
    if (strcmp(mode, "kill-reader") == 0) return kill_reader_mode(use_pipe);
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
