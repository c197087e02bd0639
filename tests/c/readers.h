/* How the matrix programs' readers wait, shared by unix_matrix.c and
   pipe_matrix.c. Modes: nonblock-poll, epoll-lt, epoll-et and select make
   the fd nonblocking and wait for readiness (up to 10 s) before each read;
   eintr keeps a 2 ms SIGALRM interval timer running without SA_RESTART;
   fionread reads what FIONREAD says is there; anything else reads as it
   comes. */
#ifndef IPC_OFFLOAD_TEST_READERS_H
#define IPC_OFFLOAD_TEST_READERS_H
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>
#include "common.h"
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/time.h>
#include <unistd.h>

static inline int readiness_mode(const char *mode) {
    return strcmp(mode, "nonblock-poll") == 0 || strncmp(mode, "epoll", 5) == 0 || strcmp(mode, "select") == 0;
}

static void on_alarm(int sig) { (void)sig; }

/* Prepares fd for reading in `mode`; returns the epoll fd of the epoll
   modes, -1 otherwise. */
static inline int reader_setup(const char *mode, int fd) {
    if (readiness_mode(mode)) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int ep = -1;
    if (strncmp(mode, "epoll", 5) == 0) {
        ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN | (strcmp(mode, "epoll-et") == 0 ? EPOLLET : 0), .data.fd = fd};
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) { perror("epoll"); exit(2); }
    }
    if (strcmp(mode, "eintr") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm; /* no SA_RESTART: reads may fail with EINTR */
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it = {{0, 2000}, {0, 2000}};
        setitimer(ITIMER_REAL, &it, NULL);
    }
    return ep;
}

/* Stops the eintr mode's timer. */
static inline void reader_done(void) {
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
}

/* Waits until fd is readable in the readiness modes: 0, or -1 after 10 s. */
static inline int wait_readable(const char *mode, int fd, int ep) {
    if (strcmp(mode, "nonblock-poll") == 0) {
        struct pollfd p = {fd, POLLIN, 0};
        return poll(&p, 1, 10000) == 1 ? 0 : -1;
    }
    if (strncmp(mode, "epoll", 5) == 0) {
        struct epoll_event ev;
        return epoll_wait(ep, &ev, 1, 10000) == 1 ? 0 : -1;
    }
    if (strcmp(mode, "select") == 0) {
        fd_set set;
        FD_ZERO(&set);
        FD_SET(fd, &set);
        struct timeval tv = {10, 0};
        return select(fd + 1, &set, NULL, NULL, &tv) == 1 ? 0 : -1;
    }
    return 0;
}
/* Counts of a reader's calls, for stderr (they differ from run to run). */
struct read_counts {
    long reads, eintr, again;
};

/* Reads fd to EOF with `one_read(ctx, buf, size)` (what read(2) would
   return), checking every byte into `got`; waits for readiness on EAGAIN
   in the readiness modes. Returns whether EOF was seen. */
static inline int read_to_eof(const char *mode, int fd, int ep, ssize_t (*one_read)(void *, uint8_t *, size_t),
                              void *ctx, uint8_t *buf, size_t size, struct stream_check *got, struct read_counts *c) {
    int eof = 0;
    while (!got->bad) {
        ssize_t r = one_read(ctx, buf, size);
        if (r > 0) { stream_verify(got, buf, (size_t)r); c->reads++; continue; }
        if (r == 0) { eof = 1; break; }
        if (errno == EINTR) { c->eintr++; continue; }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->again++;
            if (wait_readable(mode, fd, ep) != 0) { printf("no readiness within 10 s\n"); got->bad = 1; }
            continue;
        }
        perror("read");
        printf("read failed\n");
        got->bad = 1;
    }
    return eof;
}

/* The fionread mode's read: poll, ask FIONREAD (SIOCINQ on a socket), and
   read exactly that many bytes (at most size), which must all come at once
   (*bad is set, and the difference printed, if not). At EOF, read's 0. */
static inline ssize_t read_what_fionread_says(int fd, uint8_t *buf, size_t size, int *bad) {
    struct pollfd p = {fd, POLLIN, 0};
    int queued = 0;
    if (poll(&p, 1, 10000) != 1 || ioctl(fd, FIONREAD, &queued) != 0) return -1;
    if (queued == 0) return read(fd, buf, size); /* hung up: EOF */
    size_t want = (size_t)queued < size ? (size_t)queued : size;
    ssize_t r = read(fd, buf, want);
    if (r != (ssize_t)want) {
        printf("FIONREAD said %d, read gave %zd\n", queued, r);
        *bad = 1;
    }
    return r;
}
#endif
