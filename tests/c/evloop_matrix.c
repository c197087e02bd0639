/*
 * One transfer from a writer child to a reading parent that waits for
 * readiness the way event loops do (epoll in its flavours, poll, ppoll,
 * select, pselect) on a nonblocking fd, checked byte by byte against the
 * stream of evloop.h. tests/evloop.rs runs it with and without the library
 * and compares what it prints and how it ends.
 *
 * usage: evloop_matrix TRANSPORT READER RECV WRITER BUF TOTAL [WRITE]
 *   TRANSPORT  unix: a socketpair (AF_UNIX, SOCK_STREAM); tcp4, tcp6, tcp:
 *              a TCP connection (stream_pair.h); pipe: pipe2;
 *              fifo: mkfifo in a fresh directory under $TMPDIR (or /tmp),
 *              opened by path by both ends and removed once they are open
 *              (or by the watchdog)
 *   READER     how the parent waits, its read end O_NONBLOCK:
 *              epoll-lt        level-triggered
 *              epoll-et        edge-triggered
 *              epoll-oneshot   EPOLLONESHOT, re-armed with EPOLL_CTL_MOD
 *                              after each event
 *              epoll-exclusive EPOLLEXCLUSIVE (level-triggered)
 *              epoll-lt-u64, epoll-et-u64
 *                              as epoll-lt and epoll-et, with data.u64 a
 *                              constant instead of data.ptr
 *              poll, ppoll, select, pselect
 *              The epoll readers register data.ptr (pointing at the
 *              reader's state) or data.u64; every event must carry it
 *              (else: exit 3). Their waits go through epoll_wait,
 *              epoll_pwait and epoll_pwait2 in turn; sets are made with
 *              epoll_create1 or epoll_create (u64 and exclusive readers).
 *   RECV       once: one read per readiness event, then wait again; an
 *              edge-triggered reader (which must not wait while bytes are
 *              queued) goes on reading while its reads fill the buffer, as
 *              nginx does: a short read (the kernel returns one only when
 *              the queue is empty), EAGAIN or EOF ends it, but after an
 *              event with EPOLLHUP or EPOLLRDHUP (registered) it reads on to
 *              the EOF
 *              drain: read until EAGAIN (or EOF) after each event
 *              Pipes and FIFOs are read with read(); sockets with recv()
 *              and read() in turn
 *   WRITER     blocking, or nonblocking: O_NONBLOCK on the write end; on
 *              EAGAIN it waits for POLLOUT with poll(); how often poll said
 *              writable and the next write still failed with EAGAIN goes to
 *              stderr (never stdout: it is the library's business)
 *   BUF        the reader's buffer size
 *   TOTAL      bytes the writer sends, then it closes its end
 *   WRITE      the writer's write size (default 1 MiB); on sockets write()
 *              and send() in turn
 *
 * Prints one line, "bytes N hash H eof" (H: FNV-1a of the N bytes read), and
 * exits 0 when N is TOTAL and the writer succeeded. At the first wrong byte:
 * its offset, exit 1; no readiness within 10 s: exit 1; an epoll event with
 * the wrong data: exit 3; the writer failed: exit 4. alarm(120) in both
 * processes is the watchdog. Counts that vary from run to run (events,
 * reads, EAGAINs) go to stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "evloop.h"
#include "stream_pair.h"

#define U64_TAG 0x1234abcd5678ef00ull

enum transport { T_SOCKET, T_PIPE, T_FIFO };
enum wait_kind { W_EPOLL, W_POLL, W_PPOLL, W_SELECT, W_PSELECT };

/* The reader's state; epoll's data.ptr points at it. */
struct reader {
    int fd, ep;
    enum wait_kind wait;
    int et, oneshot, exclusive, use_u64, drain, is_socket;
    size_t bufsize;
    uint8_t *buf;
    struct ev_got got;
    long events, reads, again, waits;
    int no_pwait2; /* the kernel lacks epoll_pwait2 */
};

static pid_t writer_pid;
static char fifo_dir[PATH_MAX], fifo_path[PATH_MAX + 16];

/* The watchdog: remove the FIFO (async-signal-safe calls), then die of
   SIGALRM. */
static void on_alarm(int sig) {
    if (fifo_path[0]) unlink(fifo_path);
    if (fifo_dir[0]) rmdir(fifo_dir);
    static const char msg[] = "evloop_matrix: watchdog (120 s)\n";
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing to do */ }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void fail(int code) {
    fflush(stdout);
    if (writer_pid > 0) kill(writer_pid, SIGKILL);
    exit(code);
}

/* --- the writer --------------------------------------------------------- */

static void writer(int fd, uint64_t total, size_t wsize, int nonblocking, int is_socket) {
    if (nonblocking) ev_nonblock(fd, 1);
    uint8_t *buf = ev_map(wsize);
    long spurious = 0, again = 0, calls = 0;
    uint64_t sent = 0;
    while (sent < total) {
        size_t n = total - sent < wsize ? (size_t)(total - sent) : wsize;
        ev_fill(buf, n, sent);
        int polled = 0; /* the last thing was poll saying POLLOUT */
        for (size_t off = 0; off < n;) {
            ssize_t w = is_socket && calls % 2 ? send(fd, buf + off, n - off, 0) : write(fd, buf + off, n - off);
            calls++;
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && nonblocking && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                again++;
                if (polled) spurious++;
                struct pollfd p = {fd, POLLOUT, 0};
                int r = poll(&p, 1, 10000);
                if (r < 0 && errno == EINTR) continue;
                if (r != 1) { fprintf(stderr, "writer: no POLLOUT within 10 s\n"); _exit(1); }
                if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) {
                    fprintf(stderr, "writer: revents %#x\n", p.revents);
                    _exit(1);
                }
                polled = 1;
                continue;
            }
            if (w == 0) {
                fprintf(stderr, "writer: write returned 0 at offset %llu\n", (unsigned long long)(sent + off));
                _exit(1);
            }
            if (w < 0) { perror("writer"); _exit(1); }
            polled = 0;
            off += (size_t)w;
        }
        sent += n;
    }
    fprintf(stderr, "writer: %ld calls, %ld EAGAIN, %ld EAGAIN right after POLLOUT\n", calls, again, spurious);
    if (close(fd) != 0) { perror("writer close"); _exit(1); }
}

/* --- the reader --------------------------------------------------------- */

static int make_epoll(struct reader *r) {
    int ep = r->use_u64 || r->exclusive ? epoll_create(1) : epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) { perror("epoll_create"); exit(2); }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | (r->et ? EPOLLET | EPOLLRDHUP : 0u) | (r->oneshot ? EPOLLONESHOT : 0u) |
                (r->exclusive ? EPOLLEXCLUSIVE : 0u);
    if (r->use_u64) ev.data.u64 = U64_TAG;
    else ev.data.ptr = r;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, r->fd, &ev) != 0) { perror("epoll_ctl ADD"); exit(2); }
    return ep;
}

static void rearm(struct reader *r) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.ptr = r;
    if (epoll_ctl(r->ep, EPOLL_CTL_MOD, r->fd, &ev) != 0) {
        printf("epoll_ctl MOD: %s\n", strerror(errno));
        fail(3);
    }
}

/* One epoll wait, through epoll_wait, epoll_pwait and epoll_pwait2 in
   turn: the number of events, or -1 with errno. */
static int epoll_wait_in_turn(struct reader *r, struct epoll_event *evs, int max) {
    sigset_t none;
    sigemptyset(&none);
    switch (r->waits++ % 3) {
    case 0: return epoll_wait(r->ep, evs, max, 10000);
    case 1: return epoll_pwait(r->ep, evs, max, 10000, &none);
    default:
        if (!r->no_pwait2) {
            struct timespec ts = {10, 0};
            int n = epoll_pwait2(r->ep, evs, max, &ts, &none);
            if (n >= 0 || errno != ENOSYS) return n;
            r->no_pwait2 = 1;
        }
        return epoll_wait(r->ep, evs, max, 10000);
    }
}

/* Waits until the fd is reported ready (checking what the report says);
   returns the epoll events reported (0 for the other waits). */
static uint32_t wait_ready(struct reader *r) {
    for (;;) {
        int n;
        uint32_t flags = 0;
        if (r->wait == W_EPOLL) {
            struct epoll_event evs[8];
            n = epoll_wait_in_turn(r, evs, 8);
            for (int i = 0; i < n; i++) {
                int ok = r->use_u64 ? evs[i].data.u64 == U64_TAG : evs[i].data.ptr == (void *)r;
                if (!ok) {
                    printf("epoll event %d of %d carries data %#llx, not what was registered\n", i, n,
                           (unsigned long long)evs[i].data.u64);
                    fail(3);
                }
                if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
                    printf("epoll event without EPOLLIN, EPOLLHUP or EPOLLERR: %#x\n", evs[i].events);
                    fail(3);
                }
                flags |= evs[i].events;
            }
            if (n > 1) { printf("epoll_wait reported %d events for one fd\n", n); fail(3); }
        } else if (r->wait == W_POLL || r->wait == W_PPOLL) {
            struct pollfd p = {r->fd, POLLIN, 0};
            if (r->wait == W_POLL) {
                n = poll(&p, 1, 10000);
            } else {
                struct timespec ts = {10, 0};
                sigset_t none;
                sigemptyset(&none);
                n = ppoll(&p, 1, &ts, &none);
            }
            if (n == 1 && (p.revents & POLLNVAL)) { printf("POLLNVAL\n"); fail(3); }
        } else {
            fd_set set;
            FD_ZERO(&set);
            FD_SET(r->fd, &set);
            if (r->wait == W_SELECT) {
                struct timeval tv = {10, 0};
                n = select(r->fd + 1, &set, NULL, NULL, &tv);
            } else {
                struct timespec ts = {10, 0};
                sigset_t none;
                sigemptyset(&none);
                n = pselect(r->fd + 1, &set, NULL, NULL, &ts, &none);
            }
            if (n == 1 && !FD_ISSET(r->fd, &set)) { printf("select: ready, but not the fd\n"); fail(3); }
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { printf("wait failed: %s\n", strerror(errno)); fail(1); }
        if (n == 0) {
            printf("no readiness within 10 s after %llu bytes\n", (unsigned long long)r->got.at);
            fail(1);
        }
        r->events++;
        return flags;
    }
}

/* One read: what read(2) returns (sockets: recv and read in turn). */
static ssize_t one_read(struct reader *r) {
    ssize_t n;
    do {
        n = r->is_socket && r->reads % 2 == 0 ? recv(r->fd, r->buf, r->bufsize, 0) : read(r->fd, r->buf, r->bufsize);
        r->reads++;
    } while (n < 0 && errno == EINTR);
    if (n > 0) ev_take(&r->got, r->buf, (size_t)n, "");
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        printf("read failed after %llu bytes: %s\n", (unsigned long long)r->got.at, strerror(errno));
        fail(1);
    }
    if (n < 0) r->again++;
    return n;
}

/* Waits and reads until EOF. */
static void read_to_eof(struct reader *r) {
    for (;;) {
        uint32_t flags = wait_ready(r);
        ssize_t n;
        if (r->drain) {
            while ((n = one_read(r)) > 0) {}
        } else {
            n = one_read(r);
            /* Edge-triggered: a full read may have left bytes queued; after
               a hang-up, read on to the EOF (no edge will come for it). */
            int hup = flags & (EPOLLHUP | EPOLLRDHUP | EPOLLERR);
            if (r->et)
                while (n == (ssize_t)r->bufsize || (hup && n > 0)) n = one_read(r);
        }
        if (n == 0) return;
        if (r->oneshot) rearm(r);
    }
}

static int parse_reader(const char *s, struct reader *r) {
    static const struct {
        const char *name;
        enum wait_kind wait;
        int et, oneshot, exclusive, use_u64;
    } kinds[] = {
        {"epoll-lt", W_EPOLL, 0, 0, 0, 0},        {"epoll-et", W_EPOLL, 1, 0, 0, 0},
        {"epoll-oneshot", W_EPOLL, 0, 1, 0, 0},   {"epoll-exclusive", W_EPOLL, 0, 0, 1, 0},
        {"epoll-lt-u64", W_EPOLL, 0, 0, 0, 1},    {"epoll-et-u64", W_EPOLL, 1, 0, 0, 1},
        {"poll", W_POLL, 0, 0, 0, 0},             {"ppoll", W_PPOLL, 0, 0, 0, 0},
        {"select", W_SELECT, 0, 0, 0, 0},         {"pselect", W_PSELECT, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (strcmp(s, kinds[i].name) == 0) {
            r->wait = kinds[i].wait;
            r->et = kinds[i].et;
            r->oneshot = kinds[i].oneshot;
            r->exclusive = kinds[i].exclusive;
            r->use_u64 = kinds[i].use_u64;
            return 0;
        }
    return -1;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s unix|tcp4|tcp6|tcp|pipe|fifo READER once|drain blocking|nonblocking BUF TOTAL [WRITE]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 8) return usage(argv[0]);
    struct reader r;
    memset(&r, 0, sizeof r);
    r.got = (struct ev_got)EV_GOT_INIT;
    enum transport t;
    if (is_stream_transport(argv[1])) t = T_SOCKET;
    else if (strcmp(argv[1], "pipe") == 0) t = T_PIPE;
    else if (strcmp(argv[1], "fifo") == 0) t = T_FIFO;
    else return usage(argv[0]);
    if (parse_reader(argv[2], &r) != 0) return usage(argv[0]);
    if (strcmp(argv[3], "drain") == 0) r.drain = 1;
    else if (strcmp(argv[3], "once") != 0) return usage(argv[0]);
    int nonblocking;
    if (strcmp(argv[4], "nonblocking") == 0) nonblocking = 1;
    else if (strcmp(argv[4], "blocking") == 0) nonblocking = 0;
    else return usage(argv[0]);
    r.bufsize = strtoull(argv[5], NULL, 0);
    uint64_t total = strtoull(argv[6], NULL, 0);
    size_t wsize = argc == 8 ? strtoull(argv[7], NULL, 0) : EV_MIB;
    if (r.bufsize == 0 || wsize == 0) return usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    alarm(120);

    int fds[2] = {-1, -1};
    if (t == T_SOCKET) {
        if (stream_pair(argv[1], fds) != 0) { perror(argv[1]); return 2; }
    } else if (t == T_PIPE) {
        if (pipe2(fds, O_CLOEXEC) != 0) { perror("pipe2"); return 2; }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(fifo_dir, sizeof fifo_dir, "%s/evloop_matrix.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fifo_dir)) { perror("mkdtemp"); return 2; }
        snprintf(fifo_path, sizeof fifo_path, "%s/fifo", fifo_dir);
        if (mkfifo(fifo_path, 0600) != 0) { perror("mkfifo"); rmdir(fifo_dir); return 2; }
    }
    writer_pid = fork();
    if (writer_pid < 0) { perror("fork"); return 2; }
    if (writer_pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm(120);
        signal(SIGPIPE, SIG_IGN);
        int fd;
        if (t == T_FIFO) {
            if ((fd = open(fifo_path, O_WRONLY | O_CLOEXEC)) < 0) { perror("open the FIFO for writing"); _exit(1); }
        } else {
            close(fds[0]);
            fd = fds[1];
        }
        writer(fd, total, wsize, nonblocking, t == T_SOCKET);
        _exit(0);
    }
    if (t == T_FIFO) {
        if ((r.fd = open(fifo_path, O_RDONLY | O_CLOEXEC)) < 0) { perror("open the FIFO for reading"); fail(2); }
        unlink(fifo_path);
        rmdir(fifo_dir);
        fifo_path[0] = fifo_dir[0] = 0;
    } else {
        close(fds[1]);
        r.fd = fds[0];
    }
    r.is_socket = t == T_SOCKET;
    ev_nonblock(r.fd, 1);
    r.buf = ev_map(r.bufsize);
    if (r.wait == W_EPOLL) r.ep = make_epoll(&r);
    read_to_eof(&r);
    printf("bytes %llu hash %016llx eof\n", (unsigned long long)r.got.at, (unsigned long long)r.got.hash);
    fprintf(stderr, "reader: %ld events, %ld reads, %ld EAGAIN\n", r.events, r.reads, r.again);
    int status;
    while (waitpid(writer_pid, &status, 0) < 0 && errno == EINTR) {}
    writer_pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("the writer failed\n");
        return 4;
    }
    return r.got.at == total ? 0 : 1;
}
