/*
 * One transfer over a Unix stream socketpair (or a TCP connection) between a
 * writer child and a reading parent, checked byte for byte against the
 * stream's pattern (byte i of the stream is pat(i)), in one of the ways
 * programs read.
 *
 * usage: unix_matrix MODE TOTAL WRITE READ [TRANSPORT]
 *   MODE   blocking | nonblock-poll | epoll-lt | epoll-et | select | waitall
 *          | peek | readv | recvmsg | eintr | rcvtimeo | shutdown | nbwrite
 *          | fionread
 *          fionread: the reader polls, asks FIONREAD (SIOCINQ) and reads
 *          exactly that many bytes, which must all come at once;
 *          shutdown: the writer half-closes (SHUT_WR) instead of closing and
 *          then reads the reader's reply "done" on the same socket;
 *          nbwrite: the writer's socket is nonblocking (partial writes,
 *          EAGAIN, poll for POLLOUT); mixed: every other write is of 64 KiB
 *          (below the threshold: the kernel's), so that each large write's
 *          offer opens right after kernel bytes, which over TCP may still
 *          be on their way to the reader
 *   TOTAL  bytes the writer sends, in writes of WRITE bytes (write, writev,
 *          send and sendmsg in turn), then it closes its end
 *   READ   the reader's buffer size
 *   TRANSPORT  unix (the default), tcp4, tcp6 or tcp (stream_pair.h)
 *
 * Prints one line: the mode and sizes, the bytes read, whether EOF was
 * seen, and "ok"; exits 1 at the first wrong byte. On stderr: the number of
 * reads (which differs between runs, with or without the library), and the
 * writer's /proc/self/io wchar (for the tests that prove payload did not
 * cross the socket).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>
#include "common.h"
#include "readers.h"
#include "stream_pair.h"

/* What the reader got, checked: byte i of the stream is pat(i, 0x5eed). */
static struct stream_check got = { .seed = 0x5eed };

static void writer(int fd, size_t total, size_t wsize, const char *mode) {
    int nbwrite = strcmp(mode, "nbwrite") == 0, mixed = strcmp(mode, "mixed") == 0;
    if (nbwrite) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uint8_t *buf = map_or_die(wsize);
    size_t sent = 0;
    for (long k = 0; sent < total; k++) {
        size_t n = total - sent < wsize ? total - sent : wsize;
        if (mixed && k % 2 == 0 && n > 65536) n = 65536;
        for (size_t i = 0; i < n; i++) buf[i] = pat(sent + i, got.seed);
        size_t off = 0;
        while (off < n) {
            ssize_t w;
            struct iovec iov[2] = {{buf + off, (n - off) / 2}, {buf + off + (n - off) / 2, n - off - (n - off) / 2}};
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
            switch (k % 4) {
            case 0: w = write(fd, buf + off, n - off); break;
            case 1: w = writev(fd, iov, 2); break;
            case 2: w = send(fd, buf + off, n - off, 0); break;
            default: w = sendmsg(fd, &msg, 0); break;
            }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && nbwrite && errno == EAGAIN) {
                struct pollfd p = {fd, POLLOUT, 0};
                poll(&p, 1, 10000);
                continue;
            }
            if (w <= 0) { perror("writer"); _exit(1); }
            off += (size_t)w;
        }
        sent += n;
    }
    fprintf(stderr, "writer wchar %ld\n", wchar());
    if (strcmp(mode, "shutdown") == 0) {
        shutdown(fd, SHUT_WR);
        char reply[8] = {0};
        ssize_t r = recv(fd, reply, 4, MSG_WAITALL);
        if (r != 4 || memcmp(reply, "done", 4) != 0) { fprintf(stderr, "no reply after half-close\n"); _exit(1); }
    }
    close(fd);
}

/* One read in `mode`; returns what read(2) would. */
static ssize_t one_read(const char *mode, int fd, uint8_t *buf, size_t size) {
    if (strcmp(mode, "waitall") == 0) return recv(fd, buf, size, MSG_WAITALL);
    if (strcmp(mode, "fionread") == 0) return read_what_fionread_says(fd, buf, size, &got.bad);
    if (strcmp(mode, "readv") == 0) {
        struct iovec iov[3] = {{buf, size / 3}, {buf + size / 3, 0}, {buf + size / 3, size - size / 3}};
        return readv(fd, iov, 3);
    }
    if (strcmp(mode, "recvmsg") == 0) {
        struct iovec iov[2] = {{buf, size / 2}, {buf + size / 2, size - size / 2}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        return recvmsg(fd, &msg, 0);
    }
    if (strcmp(mode, "peek") == 0) {
        /* Peek, then read exactly what the peek saw: both must agree. */
        ssize_t p = recv(fd, buf, size, MSG_PEEK);
        if (p <= 0) return p;
        uint8_t *again = malloc((size_t)p);
        ssize_t r = recv(fd, again, (size_t)p, 0);
        if (r != p || memcmp(again, buf, (size_t)p) != 0) { printf("peek and read disagree\n"); exit(1); }
        free(again);
        return r;
    }
    return read(fd, buf, size);
}

/* What read_to_eof's reads need. */
struct reading {
    const char *mode;
    int fd;
};

static ssize_t read_in_mode(void *ctx, uint8_t *buf, size_t size) {
    struct reading *r = ctx;
    return one_read(r->mode, r->fd, buf, size);
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) { fprintf(stderr, "usage: %s MODE TOTAL WRITE READ [TRANSPORT]\n", argv[0]); return 2; }
    const char *transport = argc == 6 ? argv[5] : "unix";
    const char *mode = argv[1];
    size_t total = strtoull(argv[2], NULL, 0), wsize = strtoull(argv[3], NULL, 0), rsize = strtoull(argv[4], NULL, 0);
    int sv[2];
    if (stream_pair(transport, sv) != 0) { perror(transport); return 2; }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        signal(SIGPIPE, SIG_IGN);
        writer(sv[1], total, wsize, mode);
        _exit(0);
    }
    close(sv[1]);
    int fd = sv[0];
    int ep = reader_setup(mode, fd);
    if (strcmp(mode, "rcvtimeo") == 0) {
        struct timeval tv = {0, 50000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    uint8_t *buf = map_or_die(rsize);
    struct reading ctx = {mode, fd};
    struct read_counts c = {0, 0, 0};
    int eof = read_to_eof(mode, fd, ep, read_in_mode, &ctx, buf, rsize, &got, &c);
    reader_done();
    if (strcmp(mode, "shutdown") == 0 && eof && send(fd, "done", 4, MSG_NOSIGNAL) != 4) { perror("reply"); got.bad = 1; }
    int status;
    waitpid(pid, &status, 0);
    printf("%s w=%zu r=%zu: %zu bytes, %s, %s\n", mode, wsize, rsize, got.checked, eof ? "eof" : "no eof",
           got.bad ? "BAD" : "ok");
    fprintf(stderr, "reads %ld eintr %ld eagain %ld\n", c.reads, c.eintr, c.again);
    return got.bad || got.checked != total || !eof || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
