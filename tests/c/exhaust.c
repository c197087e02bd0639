/*
 * Exhaustion: a transfer over a pipe or a Unix stream socketpair while a
 * resource the library needs is used up. This process reads (it writes the
 * stats file); a forked child writes. Stream byte i is i % 251 and every
 * byte read is checked. Each run does one whole transfer first (what the
 * library starts once is then started), takes its fd, ring mapping and
 * thread counts, runs the case, closes its fds and takes them again: they
 * must be the same. Prints "kernel bytes N of TOTAL" (what the reader's
 * read calls returned, /proc/self/io rchar: payload from shared memory is
 * not in it) and "transfer ok".
 *
 * usage: exhaust FAMILY CASE [ARGS]    FAMILY: pipe | unix
 *   plain                  nothing exhausted (the control)
 *   nofile FREE WHO        WHO (reader, writer, both) lowers its soft
 *                          RLIMIT_NOFILE to 64 and fills its fds until only
 *                          FREE are left, then the transfer runs
 *   seccomp WHAT WHO       a seccomp filter in WHO makes memfd_create fail
 *                          with EMFILE (WHAT = memfd) or mmap of MAP_SHARED
 *                          fail with ENOMEM (WHAT = mmap-shared)
 *   stall WHAT             5 s without progress after 16 MiB: the reader
 *                          sleeps between reads (reader-sleeps), or a third
 *                          process stops the reader (reader-stopped) or the
 *                          writer (writer-stopped) with SIGSTOP, in the
 *                          middle of its calls, and continues it 5 s later;
 *                          reader-stopped-nonblocking: the reader stopped,
 *                          the writer's fd nonblocking (EAGAIN: poll), and
 *                          16 MiB calls, larger than a ring: prints the
 *                          longest write call, which the stop must not hold
 *   concurrent N           N channels at once, N writer children, N reader
 *                          threads (with a small ring_bytes: some rings
 *                          are refused for the budget)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include "common.h"
#include "leaks.h"

#define MIB ((size_t)1 << 20)
#define IO_SIZE (4 * MIB)
#define MAX_IO (16 * MIB)
#define TOTAL (64 * MIB)
#define MAX_CHANNELS 64

static uint8_t *pattern; /* pattern[i] = i % 251 */

struct shared {
    size_t consumed; /* bytes the reader has read */
    int nonblocking; /* the writer's fd is nonblocking */
    long longest_write_us; /* the writer's longest write call */
};
static struct shared *sh;

/* --- resources used up ------------------------------------------------------------ */

static int fillers[1024];
static int n_fillers;
static struct rlimit saved_nofile;

/* Lowers the soft fd limit to 64 and dups fds until only `free_fds` are
   left below it. */
static void fill_fds(int free_fds) {
    getrlimit(RLIMIT_NOFILE, &saved_nofile);
    struct rlimit low = {64, saved_nofile.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) { perror("setrlimit"); exit(2); }
    for (;;) {
        int fd = dup(0);
        if (fd < 0) break;
        fillers[n_fillers++] = fd;
    }
    for (int i = 0; i < free_fds && n_fillers > 0; i++) close(fillers[--n_fillers]);
}

static void unfill_fds(void) {
    while (n_fillers > 0) close(fillers[--n_fillers]);
    setrlimit(RLIMIT_NOFILE, &saved_nofile);
}

/* A seccomp filter: memfd_create fails with EMFILE, or mmap with MAP_SHARED
   (or MAP_SHARED_VALIDATE) in its flags fails with ENOMEM. */
static void deny(const char *what) {
    int memfd = strcmp(what, "memfd") == 0;
    struct sock_filter memfd_filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_memfd_create, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EMFILE),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_filter mmap_filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])), /* flags, low half */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MAP_SHARED, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = memfd ? (struct sock_fprog){sizeof memfd_filter / sizeof memfd_filter[0], memfd_filter}
                                   : (struct sock_fprog){sizeof mmap_filter / sizeof mmap_filter[0], mmap_filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("seccomp");
        exit(2);
    }
    /* the filter works: */
    int probe = memfd ? (int)syscall(SYS_memfd_create, "probe", 0) : -1;
    void *m = memfd ? MAP_FAILED : mmap(NULL, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if ((memfd && probe >= 0) || (!memfd && m != MAP_FAILED)) {
        fprintf(stderr, "the seccomp filter does not deny %s\n", what);
        exit(2);
    }
}

/* --- the transfer ----------------------------------------------------------------- */

/* What a side does before its first call. */
struct setup {
    int free_fds;        /* -1: no fd filling */
    const char *deny;    /* NULL: no seccomp filter */
    int sleep_at_16mib;  /* the reader sleeps 5 s after 16 MiB */
};
static const struct setup NOTHING = {-1, NULL, 0};

static void prepare(const struct setup *s) {
    if (s->free_fds >= 0) fill_fds(s->free_fds);
    if (s->deny) deny(s->deny);
}

static size_t io_size = IO_SIZE;

static long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

static void write_stream(int fd, size_t total) {
    if (sh->nonblocking) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    for (size_t at = 0; at < total;) {
        size_t n = total - at < io_size ? total - at : io_size;
        long started = now_us();
        ssize_t w = write(fd, pattern + at % 251, n);
        long took = now_us() - started;
        if (took > sh->longest_write_us) sh->longest_write_us = took;
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN && sh->nonblocking) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, -1);
            continue;
        }
        if (w < 0) { perror("write"); _exit(1); }
        at += (size_t)w;
    }
}

/* /proc/self/io, opened at start: at the fd limit it could not be opened. */
static int io_fd = -1;

static long rchar(void) {
    char text[512];
    ssize_t n = pread(io_fd, text, sizeof text - 1, 0);
    if (n <= 0) return -1;
    text[n] = 0;
    const char *at = strstr(text, "rchar: ");
    return at ? atol(at + 7) : -1;
}

/* Reads fd to EOF checking the stream; returns the bytes, or -1. */
static long read_stream(int fd, const struct setup *s) {
    static __thread uint8_t *buf;
    if (!buf) buf = map_or_die(MAX_IO);
    size_t got = 0;
    int slept = 0;
    for (;;) {
        if (s->sleep_at_16mib && !slept && got >= 16 * MIB) {
            sleep(5);
            slept = 1;
        }
        ssize_t r = read(fd, buf, io_size);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { printf("read: %s\n", strerrorname_np(errno) ?: "?"); return -1; }
        if (r == 0) return (long)got;
        if (memcmp(buf, pattern + got % 251, (size_t)r) != 0) {
            periodic_mismatch(buf, (size_t)r, got);
            return -1;
        }
        got += (size_t)r;
        __atomic_store_n(&sh->consumed, got, __ATOMIC_RELEASE);
    }
}

static void make_channel(int is_unix, int fds[2]) {
    int rc = is_unix ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) : pipe2(fds, O_CLOEXEC);
    if (rc != 0) { perror("channel"); exit(2); }
}

/* A writer child for fds[1]: runs `setup`, writes `total`, exits. */
static pid_t spawn_writer(int fds[2], const struct setup *setup, size_t total) {
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(2); }
    if (pid == 0) {
        close(fds[0]);
        prepare(setup);
        write_stream(fds[1], total);
        _exit(0);
    }
    close(fds[1]);
    return pid;
}

static int writer_ok(pid_t pid) {
    int status;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 1;
    printf("the writer ended with status %#x\n", status);
    return 0;
}

/* Stops `target` with SIGSTOP once the reader has 16 MiB (and a moment
   more, so that the stop lands inside a call), continues it 5 s later. */
static pid_t spawn_stopper(pid_t target) {
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(2); }
    if (pid == 0) {
        while (__atomic_load_n(&sh->consumed, __ATOMIC_ACQUIRE) < 16 * MIB) usleep(50);
        struct timespec moment = {0, (long)(getpid() % 2000) * 1000};
        nanosleep(&moment, NULL);
        kill(target, SIGSTOP);
        sleep(5);
        kill(target, SIGCONT);
        _exit(0);
    }
    return pid;
}

/* One transfer of TOTAL bytes over a new channel; `stop` is "", "reader"
   or "writer". */
static int one_transfer(int is_unix, const struct setup *reader, const struct setup *writer, const char *stop) {
    int fds[2];
    make_channel(is_unix, fds);
    sh->consumed = 0;
    pid_t pid = spawn_writer(fds, writer, TOTAL);
    pid_t stopper = 0;
    if (strcmp(stop, "reader") == 0) stopper = spawn_stopper(getpid());
    if (strcmp(stop, "writer") == 0) stopper = spawn_stopper(pid);
    prepare(reader);
    long before = rchar();
    long got = read_stream(fds[0], reader);
    long kernel = rchar() - before;
    close(fds[0]);
    if (reader->free_fds >= 0) unfill_fds();
    int ok = writer_ok(pid) && got == (long)TOTAL;
    if (stopper) waitpid(stopper, NULL, 0);
    printf("kernel bytes %ld of %zu\n", kernel, (size_t)TOTAL);
    if (got != (long)TOTAL) printf("got %ld bytes of %zu\n", got, (size_t)TOTAL);
    return ok;
}

/* --- concurrent channels ------------------------------------------------------------ */

static void *reader_thread(void *arg) {
    int fd = (int)(intptr_t)arg;
    long got = read_stream(fd, &NOTHING);
    close(fd);
    return (void *)(intptr_t)(got == (long)TOTAL);
}

static int concurrent(int is_unix, int n) {
    int fds[MAX_CHANNELS][2];
    pid_t pids[MAX_CHANNELS];
    pthread_t threads[MAX_CHANNELS];
    for (int i = 0; i < n; i++) {
        make_channel(is_unix, fds[i]);
        pids[i] = spawn_writer(fds[i], &NOTHING, TOTAL);
    }
    for (int i = 0; i < n; i++)
        if (pthread_create(&threads[i], NULL, reader_thread, (void *)(intptr_t)fds[i][0]) != 0) exit(2);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        void *r;
        pthread_join(threads[i], &r);
        if (!r) { printf("channel %d: wrong bytes\n", i); ok = 0; }
        ok = writer_ok(pids[i]) && ok;
    }
    return ok;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: exhaust pipe|unix plain|nofile|seccomp|stall|concurrent [ARGS]\n");
        return 2;
    }
    int is_unix = strcmp(argv[1], "unix") == 0;
    const char *mode = argv[2];
    alarm(60); /* the watchdog of a hang */
    io_fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC);
    if (io_fd < 0) { perror("/proc/self/io"); return 2; }
    pattern = periodic_pattern(MAX_IO);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) { perror("mmap"); return 2; }

    int ok = one_transfer(is_unix, &NOTHING, &NOTHING, ""); /* the warm-up */
    struct holdings before = holdings_now();
    struct setup reader = NOTHING, writer = NOTHING;
    const char *stop = "";
    if (strcmp(mode, "plain") == 0) {
    } else if (strcmp(mode, "nofile") == 0 && argc == 5) {
        int free_fds = atoi(argv[3]);
        if (strcmp(argv[4], "writer") != 0) reader.free_fds = free_fds;
        if (strcmp(argv[4], "reader") != 0) writer.free_fds = free_fds;
    } else if (strcmp(mode, "seccomp") == 0 && argc == 5) {
        if (strcmp(argv[4], "writer") != 0) reader.deny = argv[3];
        if (strcmp(argv[4], "reader") != 0) writer.deny = argv[3];
    } else if (strcmp(mode, "stall") == 0 && argc == 4) {
        if (strcmp(argv[3], "reader-sleeps") == 0) reader.sleep_at_16mib = 1;
        else if (strcmp(argv[3], "reader-stopped-nonblocking") == 0) {
            stop = "reader";
            sh->nonblocking = 1;
            io_size = MAX_IO;
        } else stop = strcmp(argv[3], "reader-stopped") == 0 ? "reader" : "writer";
    } else if (strcmp(mode, "concurrent") == 0 && argc == 4) {
        int n = atoi(argv[3]);
        if (n < 1 || n > MAX_CHANNELS) return 2;
        ok = concurrent(is_unix, n) && ok;
        ok = holdings_same("reader", before, holdings_now()) && ok;
        printf("transfer %s\n", ok ? "ok" : "FAILED");
        return !ok;
    } else {
        fprintf(stderr, "exhaust: bad arguments\n");
        return 2;
    }
    ok = one_transfer(is_unix, &reader, &writer, stop) && ok;
    if (sh->nonblocking) printf("longest write call %ld ms\n", sh->longest_write_us / 1000);
    ok = holdings_same("reader", before, holdings_now()) && ok;
    printf("transfer %s\n", ok ? "ok" : "FAILED");
    return !ok;
}
