/*
 * Write-behind edge cases ([unix]/[tcp] write_behind = true): a nonblocking writer
 * whose large writes return once their bytes are placed in the reader's
 * ring. tests/behind.rs runs each mode with and without the library and
 * compares what it prints on stdout and how it ends. The stream is
 * evloop.h's, checked byte by byte as it arrives. Counts that vary from run
 * to run go to stderr. alarm(60) in every process is the watchdog.
 *
 * The reader (the parent) reads the first SWITCH bytes (16 MiB) with recv()
 * in an epoll loop, 1 MiB at a time, as an event loop does (with the
 * library: through the fast path, taking the writer's offers), and the rest
 * of the stream as the mode says. The writer (a child) writes the stream,
 * its socket nonblocking, waiting for POLLOUT on EAGAIN, in the sizes the
 * mode says, then closes it (or dies, as the mode says).
 *
 * usage: behind_edges MODE [TRANSPORT]
 *   TRANSPORT is stream_pair.h's: unix (the default), tcp4 or tcp6. Over
 *   TCP a write-behind offer may open while bytes written before it are
 *   still in the kernel (the reader must read those first, then the offer).
 *   mixed      writes of 1 MiB, 100 B, 3 MiB, 7 B, 300 KiB and 4 KiB in
 *              turn (small writes right after large ones), 64 MiB; the
 *              reader reads everything through the epoll loop
 *   mixed-raw  the writes of mixed; after SWITCH the reader reads with
 *              syscall(SYS_read): the small writes must come after the
 *              offers the reader leaves untaken (their bytes given back)
 *   raw-writer the writer alternates 1 MiB writes with 4 KiB ones made by
 *              syscall(SYS_write), which the library never sees (nothing
 *              ends an offer before them), and waits before each 1 MiB
 *              write until the reader has read all it wrote (SIOCOUTQ 0
 *              on its socket, SIOCINQ 0 on the reader's);
 *              the reader reads everything through the epoll loop, sleeping
 *              1 ms after each wait (the small write is in the kernel by
 *              then): it must take each offer before the kernel's bytes
 *              that followed it
 *   in-flight  as raw-writer, but each cycle is a 256 KiB write by
 *              syscall(SYS_write), a 1 MiB write and a 4 KiB one by
 *              syscall(SYS_write); over a slowed loopback (tests/behind.rs
 *              runs it in a network namespace whose lo is rate-limited) the
 *              256 KiB are still on their way when the 1 MiB offer opens,
 *              and the 4 KiB follow them: the reader must read the first,
 *              then the offer, then the last, whatever arrives when
 *   raw        1 MiB writes, 64 MiB; after SWITCH the reader reads with
 *              syscall(SYS_read), which the library never sees: the offers
 *              it leaves untaken must reach it through the kernel, in order
 *   exec       as raw, but after SWITCH the reader execs this program as
 *              `exec-reader` without LD_PRELOAD, which reads the rest with
 *              read() to EOF
 *   exits      the reader reads all but the last 1 MiB through the epoll
 *              loop, sleeps 300 ms, and reads the rest raw; the writer
 *              exits (exit(0), no close) right after its last write
 *              returns (with the library: its last offer still untaken)
 *   close      as exits, but after its last write the writer closes the
 *              socket and sleeps 1 s before it exits (the kernel has no
 *              room for the rest when it closes: the library keeps the
 *              socket open until it has sent it)
 *   shutdown   as close, but the writer calls shutdown(SHUT_WR) after its
 *              last write (the rest must reach the kernel before the end
 *              of the stream), then sleeps 1 s and exits
 *   fork       1 MiB writes; every 8 MiB the writer forks a child that
 *              writes the next 1 MiB (each child's pid on stderr) and
 *              exits, and waits for it before it writes on; the reader
 *              reads raw after SWITCH
 *   killed     the writer writes 23 MiB in 1 MiB writes, waits for the
 *              reader to have read them (a "go" byte on a pipe), writes the
 *              last 1 MiB, tells the reader how much its writes returned (a
 *              pipe), and waits to be killed; the reader waits up to 2 s to
 *              be told (with the library the last write returns at once,
 *              its offer untaken; through the kernel it waits for room, and
 *              the reader reads on until told), kills the writer with
 *              SIGKILL and reads to EOF through the epoll loop: it must get
 *              at least what the writes returned, in order. How much it had
 *              read when told goes to stderr
 *   killed-kernel
 *              as killed, but before its last 1 MiB write the writer writes
 *              1.5 MiB with syscall(SYS_write) (over TCP the last write's
 *              offer opens while those bytes are unread, and the writer's
 *              FIN follows them when it dies); the reader reads only once
 *              the writer is reaped, and must read them before the offer's
 *              bytes
 *   exec-reader FD OFFSET
 *              reads FD to EOF with read(): the stream from OFFSET on
 *
 * Prints "bytes N hash H eof" (mixed, raw, exec, exits, close, fork; H:
 * FNV-1a of the N bytes) or "prefix ok eof" (killed), and exits 0. At the
 * first wrong byte: its offset, exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"
#include "stream_pair.h"

#define TOTAL (64 * EV_MIB)
#define SWITCH (16 * EV_MIB)
#define KILLED_TOTAL (24 * EV_MIB)

extern char **environ;

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int raw_writes;  /* small writes go by syscall(SYS_write) */
static int reader_end = -1; /* raw-writer: the writer's look at the reader's socket */
static int slow_reader; /* the reader sleeps 1 ms after each wait */

/* Writes stream bytes [at, at + n) on the nonblocking fd, waiting for
   POLLOUT on EAGAIN. Returns 0, or -1 (errno set). */
static int write_all(int fd, uint8_t *buf, size_t n, uint64_t at) {
    ev_fill(buf, n, at);
    for (size_t off = 0; off < n;) {
        ssize_t w = raw_writes && n < EV_MIB ? syscall(SYS_write, fd, buf + off, n - off)
                                              : send(fd, buf + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {fd, POLLOUT, 0};
            if (poll(&p, 1, 10000) <= 0) {
                fprintf(stderr, "writer: no POLLOUT within 10 s\n");
                return -1;
            }
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

/* The writer's stream: writes cycling through `sizes` up to `total`. */
static void write_stream(int fd, const size_t *sizes, size_t count, uint64_t total, int fork_every) {
    uint8_t *buf = ev_map(4 * EV_MIB);
    uint64_t at = 0;
    for (size_t i = 0; at < total; i++) {
        size_t n = sizes[i % count];
        if (n > total - at) n = (size_t)(total - at);
        /* Before each cycle of sizes, until the reader read all: nothing
           unacknowledged (a Unix socket's: unread) and nothing queued at
           the reader (TCP's). */
        for (int outq = 1, inq = 0; raw_writes && i % count == 0 && (outq > 0 || inq > 0);) {
            if (ioctl(fd, SIOCOUTQ, &outq) != 0 || ioctl(reader_end, SIOCINQ, &inq) != 0) die("SIOCOUTQ");
            if (outq > 0 || inq > 0) usleep(200);
        }
        if (fork_every && at > 0 && at % (8 * EV_MIB) == 0) {
            pid_t child = fork();
            if (child < 0) die("fork");
            if (child == 0) {
                alarm(60);
                _exit(write_all(fd, buf, n, at) == 0 ? 0 : 4);
            }
            fprintf(stderr, "writer: child %d writes at %llu\n", (int)child, (unsigned long long)at);
            int status = 0;
            if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) exit(4);
            at += n;
            continue;
        }
        if (write_all(fd, buf, n, at) != 0) die("writer send");
        at += n;
    }
}

/* Reads into buf until `until` bytes of the stream arrived, through an
   epoll loop with recv() (the fd nonblocking), or to EOF with until = 0. */
static void epoll_read(int fd, uint8_t *buf, struct ev_got *g, uint64_t until) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    while (until == 0 || g->at < until) {
        struct epoll_event got;
        int k = epoll_wait(ep, &got, 1, 10000);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            printf("no event within 10 s at %llu\n", (unsigned long long)g->at);
            exit(1);
        }
        if (slow_reader) usleep(1000);
        size_t want = EV_MIB;
        if (until && until - g->at < want) want = (size_t)(until - g->at);
        ssize_t r = recv(fd, buf, want, 0);
        if (r == 0) break;
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r < 0) die("recv");
        ev_take(g, buf, (size_t)r, "");
    }
    close(ep);
}

/* Reads to EOF with raw read system calls (the fd made blocking). */
static void raw_read(int fd, uint8_t *buf, struct ev_got *g) {
    ev_nonblock(fd, 0);
    for (;;) {
        long r = syscall(SYS_read, fd, buf, EV_MIB);
        if (r == 0) return;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("read");
        ev_take(g, buf, (size_t)r, "");
    }
}

static void report(struct ev_got *g, uint64_t total) {
    if (g->at != total) {
        printf("short: %llu of %llu bytes\n", (unsigned long long)g->at, (unsigned long long)total);
        exit(1);
    }
    printf("bytes %llu hash %016llx eof\n", (unsigned long long)g->at, (unsigned long long)g->hash);
}

static int exec_reader(char **argv) {
    int fd = atoi(argv[2]);
    struct ev_got g = {strtoull(argv[3], NULL, 10), EV_FNV_OFFSET};
    uint64_t from = g.at;
    uint8_t *buf = ev_map(EV_MIB);
    for (;;) {
        ssize_t r = read(fd, buf, EV_MIB);
        if (r == 0) break;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("exec-reader read");
        ev_verify(&g, buf, (size_t)r, "exec-reader: ");
    }
    /* The part before the exec was hashed by the parent: print the count. */
    printf("exec-reader got %llu bytes to eof\n", (unsigned long long)(g.at - from));
    return g.at == TOTAL ? 0 : 1;
}

int main(int argc, char **argv) {
    alarm(60);
    if (argc < 2) {
        fprintf(stderr, "usage: behind_edges MODE [unix|tcp4|tcp6]\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "exec-reader") == 0 && argc == 4) return exec_reader(argv);
    int killed = strcmp(mode, "killed") == 0 || strcmp(mode, "killed-kernel") == 0;
    /* killed-kernel: kernel bytes the reader has not read lie before the
       last offer when the writer dies (its FIN follows them). */
    uint64_t kernel_before_last = strcmp(mode, "killed-kernel") == 0 ? 3 * EV_MIB / 2 : 0;
    int sv[2], told[2], go[2];
    const char *transport = argc > 2 ? argv[2] : "unix";
    if (!is_stream_transport(transport)) {
        fprintf(stderr, "unknown transport %s\n", transport);
        return 2;
    }
    if (stream_pair(transport, sv) != 0 || pipe(told) != 0 || pipe(go) != 0) die("stream pair");
    /* The exec'd reader inherits its end. */
    if (fcntl(sv[0], F_SETFD, 0) != 0 || fcntl(sv[1], F_SETFD, 0) != 0) die("F_SETFD");
    pid_t writer = fork();
    if (writer < 0) die("fork");
    if (writer == 0) {
        int raw_modes = strcmp(mode, "raw-writer") == 0 || strcmp(mode, "in-flight") == 0;
        if (raw_modes && (reader_end = dup(sv[0])) < 0) die("dup");
        close(sv[0]);
        close(told[0]);
        ev_nonblock(sv[1], 1);
        static const size_t mixed[] = {EV_MIB, 100, 3 * EV_MIB, 7, 300 << 10, 4096};
        static const size_t whole[] = {EV_MIB};
        static const size_t alternate[] = {EV_MIB, 4096};
        if (strncmp(mode, "mixed", 5) == 0) {
            write_stream(sv[1], mixed, 6, TOTAL, 0);
        } else if (strcmp(mode, "in-flight") == 0) {
            static const size_t around[] = {256 << 10, EV_MIB, 4096};
            raw_writes = 1;
            write_stream(sv[1], around, 3, TOTAL, 0);
        } else if (strcmp(mode, "raw-writer") == 0) {
            raw_writes = 1;
            write_stream(sv[1], alternate, 2, TOTAL, 0);
        } else if (killed) {
            write_stream(sv[1], whole, 1, KILLED_TOTAL - EV_MIB, 0);
            char byte;
            if (read(go[0], &byte, 1) != 1) die("go");
            uint8_t *last = ev_map(EV_MIB);
            uint64_t at = KILLED_TOTAL - EV_MIB;
            raw_writes = 1; /* pieces below 1 MiB: raw, never an offer */
            for (uint64_t end = at + kernel_before_last; at < end; at += EV_MIB / 2)
                if (write_all(sv[1], last, EV_MIB / 2, at) != 0) die("writer send");
            if (write_all(sv[1], last, EV_MIB, at) != 0) die("writer send");
            uint64_t done = at + EV_MIB;
            if (write(told[1], &done, sizeof done) != sizeof done) die("tell");
            for (;;) pause();
        } else {
            write_stream(sv[1], whole, 1, TOTAL, strcmp(mode, "fork") == 0);
        }
        if (strcmp(mode, "exits") == 0) exit(0);
        if (strcmp(mode, "shutdown") == 0) {
            if (shutdown(sv[1], SHUT_WR) != 0) die("shutdown");
            sleep(1);
            _exit(0);
        }
        close(sv[1]);
        if (strcmp(mode, "close") == 0) sleep(1);
        _exit(0);
    }
    close(sv[1]);
    close(told[1]);
    ev_nonblock(sv[0], 1);
    uint8_t *buf = ev_map(EV_MIB);
    struct ev_got g = EV_GOT_INIT;
    if (strcmp(mode, "mixed") == 0 || strcmp(mode, "raw-writer") == 0 || strcmp(mode, "in-flight") == 0) {
        slow_reader = strcmp(mode, "raw-writer") == 0;
        epoll_read(sv[0], buf, &g, 0);
    } else if (strcmp(mode, "mixed-raw") == 0) {
        epoll_read(sv[0], buf, &g, SWITCH);
        raw_read(sv[0], buf, &g);
    } else if (killed) {
        /* All but the last write; then read on only while not told. Once
           told, read no more until the writer is dead. */
        epoll_read(sv[0], buf, &g, KILLED_TOTAL - EV_MIB);
        if (write(go[1], "g", 1) != 1) die("go");
        struct pollfd p[2] = {{told[0], POLLIN, 0}, {sv[0], POLLIN, 0}};
        for (int first = 1;; first = 0) {
            if (poll(p, first ? 1 : 2, first ? 2000 : 10000) < 0) die("poll");
            if (p[0].revents) break;
            if (!p[1].revents) continue;
            ssize_t r = recv(sv[0], buf, EV_MIB, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0) die("recv before the kill");
            ev_take(&g, buf, (size_t)r, "");
        }
        uint64_t done = 0;
        if (read(told[0], &done, sizeof done) != sizeof done) die("told");
        fprintf(stderr, "reader: %llu bytes read when told\n", (unsigned long long)g.at);
        kill(writer, SIGKILL);
        /* killed-kernel: its socket closed (the FIN sent) before any read. */
        if (kernel_before_last && waitpid(writer, NULL, 0) != writer) die("waitpid");
        epoll_read(sv[0], buf, &g, 0);
        fprintf(stderr, "reader: %llu bytes after the kill, %llu written\n", (unsigned long long)g.at,
                (unsigned long long)done);
        if (g.at < done) {
            printf("short: %llu of the %llu bytes the writes returned\n", (unsigned long long)g.at,
                   (unsigned long long)done);
            return 1;
        }
        printf("prefix ok eof\n");
        if (!kernel_before_last) waitpid(writer, NULL, 0);
        return 0;
    } else {
        /* close, exits: the reader stops taking before the writer's last
           write, and reads on (raw) only after the writer let go. */
        int last = strcmp(mode, "close") == 0 || strcmp(mode, "exits") == 0 || strcmp(mode, "shutdown") == 0;
        epoll_read(sv[0], buf, &g, last ? TOTAL - EV_MIB : SWITCH);
        if (last) usleep(300 * 1000);
        if (strcmp(mode, "exec") == 0) {
            printf("bytes %llu hash %016llx then exec\n", (unsigned long long)g.at, (unsigned long long)g.hash);
            fflush(stdout);
            ev_nonblock(sv[0], 0);
            char fd_arg[16], at_arg[32];
            snprintf(fd_arg, sizeof fd_arg, "%d", sv[0]);
            snprintf(at_arg, sizeof at_arg, "%llu", (unsigned long long)g.at);
            char *args[] = {argv[0], "exec-reader", fd_arg, at_arg, NULL};
            size_t n = 0;
            for (char **e = environ; *e; e++) n++;
            char **env = calloc(n + 1, sizeof *env);
            size_t k = 0;
            for (char **e = environ; *e; e++)
                if (strncmp(*e, "LD_PRELOAD=", 11) != 0) env[k++] = *e;
            execve("/proc/self/exe", args, env);
            die("execve");
        }
        raw_read(sv[0], buf, &g);
    }
    int status = 0;
    if (waitpid(writer, &status, 0) != writer || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("the writer failed\n");
        return 4;
    }
    report(&g, TOTAL);
    return 0;
}
