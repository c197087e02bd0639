/*
 * Socket options whose promises only the kernel can keep, over a TCP
 * connection on 127.0.0.1 (stream_pair.h) between a writer child and a
 * reading parent. tests/tcp_options.rs runs each mode without and with the
 * library and compares what it prints and how it ends.
 *
 * usage: sockopts MODE [TRANSPORT]   (TRANSPORT: tcp4, the default, or unix)
 *   zerocopy  the writer turns SO_ZEROCOPY on and sends 64 MiB in 1 MiB
 *             send(MSG_ZEROCOPY) calls, then collects the kernel's
 *             completion notifications from the error queue (poll for
 *             POLLERR, recvmsg(MSG_ERRQUEUE)) until every send is covered,
 *             for at most 10 s; it prints how many sends were completed.
 *             The reader reads and checks the stream.
 *   rcvlowat  the reader sets SO_RCVLOWAT to 1 MiB and reads with a 4 MiB
 *             buffer; the writer sends 64 MiB in 256 KiB writes, 1 ms
 *             apart. A blocking read must return at least 1 MiB (or the
 *             rest of the stream at its end); the reader prints how many
 *             reads returned less.
 * Prints the mode's lines and "bytes N ok"; exits 1 on a wrong byte or a
 * failed step. alarm(60) is the watchdog.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/errqueue.h>
#include "common.h"
#include "stream_pair.h"

#define MIB (1u << 20)
#define TOTAL (64u * MIB)

#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif

static struct stream_check got = {0x5eed, 0, 0};

/* Completions of sends [0, sends) the error queue reported within 10 s. */
static unsigned completions(int fd, unsigned sends) {
    unsigned done = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (done < sends) {
        struct pollfd p = {fd, 0, 0};
        if (poll(&p, 1, 100) < 0 && errno != EINTR) { perror("poll"); break; }
        char control[128];
        struct msghdr m = {0};
        m.msg_control = control;
        m.msg_controllen = sizeof control;
        while (recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) >= 0) {
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
                struct sock_extended_err *e = (struct sock_extended_err *)CMSG_DATA(c);
                if (e->ee_origin == SO_EE_ORIGIN_ZEROCOPY && e->ee_errno == 0) done += e->ee_data - e->ee_info + 1;
            }
            m.msg_controllen = sizeof control;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 10) break;
    }
    return done;
}

static int zerocopy_writer(int fd) {
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) != 0) { perror("SO_ZEROCOPY"); return 1; }
    uint8_t *buf = map_or_die(MIB);
    unsigned sends = 0;
    for (size_t sent = 0; sent < TOTAL;) {
        for (size_t i = 0; i < MIB; i++) buf[i] = pat(sent + i, got.seed);
        ssize_t n = send(fd, buf, MIB, MSG_ZEROCOPY);
        if (n < 0) { perror("send"); return 1; }
        /* The pages stay the kernel's until completed: wait before reuse. */
        sends++;
        if (completions(fd, 1) != 1) { printf("send %u: no completion within 10 s\n", sends); return 1; }
        if ((size_t)n != MIB) { printf("a short send: %zd\n", n); return 1; }
        sent += (size_t)n;
    }
    printf("zerocopy: %u sends, each completed\n", sends);
    return 0;
}

static int lowat_writer(int fd) {
    uint8_t *buf = map_or_die(MIB / 4);
    for (size_t sent = 0; sent < TOTAL; sent += MIB / 4) {
        for (size_t i = 0; i < MIB / 4; i++) buf[i] = pat(sent + i, got.seed);
        if (write(fd, buf, MIB / 4) != (ssize_t)(MIB / 4)) { perror("write"); return 1; }
        usleep(1000);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) { fprintf(stderr, "usage: %s zerocopy|rcvlowat [tcp4|unix]\n", argv[0]); return 2; }
    const char *mode = argv[1];
    int lowat = strcmp(mode, "rcvlowat") == 0;
    if (!lowat && strcmp(mode, "zerocopy") != 0) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(60);
    int sv[2];
    if (stream_pair(argc == 3 ? argv[2] : "tcp4", sv) != 0) return 2;
    if (lowat) {
        int at = MIB;
        if (setsockopt(sv[0], SOL_SOCKET, SO_RCVLOWAT, &at, sizeof at) != 0) { perror("SO_RCVLOWAT"); return 2; }
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        signal(SIGPIPE, SIG_IGN);
        int r = lowat ? lowat_writer(sv[1]) : zerocopy_writer(sv[1]);
        close(sv[1]);
        _exit(r);
    }
    close(sv[1]);
    uint8_t *buf = map_or_die(4 * MIB);
    long short_reads = 0;
    ssize_t n;
    while ((n = read(sv[0], buf, 4 * MIB)) > 0) {
        stream_verify(&got, buf, (size_t)n);
        if (got.bad) return 1;
        if (n < (ssize_t)MIB && got.checked < TOTAL) short_reads++;
    }
    if (n < 0) { perror("read"); return 1; }
    int status;
    waitpid(pid, &status, 0);
    if (lowat) printf("rcvlowat: %ld reads returned less than 1 MiB before the end\n", short_reads);
    printf("bytes %zu %s\n", got.checked, got.checked == TOTAL ? "ok" : "short");
    return got.checked != TOTAL || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}
