/*
 * Process death: this process, the survivor, runs COUNT transfers over a
 * pipe or a Unix stream socketpair with a forked victim that a thread of
 * its own kills with SIGKILL after a random delay (0 to 30 ms: before, in
 * the middle of or between the large reads and writes). Stream byte i is
 * i % 251; every byte the survivor or the victim reads is checked.
 *
 * usage: death FAMILY VICTIM COUNT SEED
 *   FAMILY  pipe | unix
 *   VICTIM  writer: the victim writes the stream without end in 4 MiB
 *           writes, the survivor reads it in 4 MiB reads until EOF or an
 *           error, and must have read a prefix of the stream;
 *           reader: the victim reads in 4 MiB reads (checking them), the
 *           survivor writes the stream in 4 MiB writes until one fails
 *           (SIGPIPE ignored)
 *
 * For each transfer the survivor must see its end (EOF, or a write error)
 * within 2 s of the kill (SIGALRM after 10 s is the watchdog of a hang).
 * Before the COUNT transfers it runs one whole transfer (the victim ends
 * it without being killed) so that whatever the library starts once (its
 * copy threads) is there, then takes its fd, ring mapping and thread
 * counts; after them it takes them again: they must be the same. Prints
 * "outcomes: EOF=N EPIPE=N ECONNRESET=N other=N" and exits 0 when every
 * transfer was right; a failed transfer prints the seed and its delay.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common.h"
#include "leaks.h"

#define MIB ((size_t)1 << 20)
#define IO_SIZE (4 * MIB)
#define WARMUP (16 * MIB)
#define MAX_DELAY_US 30000
#define DEADLINE_NS 2000000000LL

static uint8_t *pattern; /* pattern[i] = i % 251 */

/* Shared with the victim (MAP_SHARED, made before the forks). */
struct shared {
    int64_t killed_at_ns; /* CLOCK_MONOTONIC when the victim killed itself */
    size_t checked;       /* bytes the victim reader checked */
    int bad;              /* the victim reader got a wrong byte */
    unsigned delay_us;
};
static struct shared *sh;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static uint64_t next_random(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* --- the victim ----------------------------------------------------------------- */

static void *killer(void *arg) {
    (void)arg;
    struct timespec d = {0, (long)sh->delay_us * 1000};
    nanosleep(&d, NULL);
    __atomic_store_n(&sh->killed_at_ns, now_ns(), __ATOMIC_RELEASE);
    kill(getpid(), SIGKILL);
    return NULL;
}

/* Writes the stream from 0: without end, or `limit` bytes then returns. */
static void write_stream(int fd, size_t limit) {
    size_t at = 0;
    while (!limit || at < limit) {
        size_t n = limit && limit - at < IO_SIZE ? limit - at : IO_SIZE;
        ssize_t w = write(fd, pattern + at % 251, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return;
        at += (size_t)w;
    }
}

/* Reads the stream from 0 to EOF (or until killed), checking it. */
static void read_stream(int fd) {
    uint8_t *buf = map_or_die(IO_SIZE);
    for (;;) {
        ssize_t r = read(fd, buf, IO_SIZE);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return;
        if (memcmp(buf, pattern + sh->checked % 251, (size_t)r) != 0) {
            __atomic_store_n(&sh->bad, 1, __ATOMIC_RELEASE);
            _exit(3);
        }
        __atomic_fetch_add(&sh->checked, (size_t)r, __ATOMIC_ACQ_REL);
    }
}

/* The victim's life: `kill` arms the killer thread; without it, the
   warm-up's whole transfer. Never returns. */
static void victim(int fd, int is_writer, int arm) {
    pthread_t t;
    if (arm && pthread_create(&t, NULL, killer, NULL) != 0) _exit(4);
    if (is_writer) write_stream(fd, arm ? 0 : WARMUP);
    else read_stream(fd);
    if (arm) pause(); /* the killer comes */
    _exit(0);
}

/* --- the survivor --------------------------------------------------------------- */

enum outcome { EOF_SEEN, E_PIPE, E_CONNRESET, OTHER, N_OUTCOMES };
static const char *outcome_names[] = {"EOF", "EPIPE", "ECONNRESET", "other"};

static enum outcome from_errno(int e) { return e == EPIPE ? E_PIPE : e == ECONNRESET ? E_CONNRESET : OTHER; }

/* Reads to EOF or an error; the bytes must be the stream from 0. */
static enum outcome survive_as_reader(int fd, size_t *got, int *ok) {
    static uint8_t *buf;
    if (!buf) buf = map_or_die(IO_SIZE);
    for (;;) {
        ssize_t r = read(fd, buf, IO_SIZE);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return from_errno(errno);
        if (r == 0) return EOF_SEEN;
        if (memcmp(buf, pattern + *got % 251, (size_t)r) != 0) {
            printf("wrong bytes at %zu\n", *got);
            *ok = 0;
        }
        *got += (size_t)r;
    }
}

/* Writes the stream until a write fails. */
static enum outcome survive_as_writer(int fd, size_t *put) {
    for (;;) {
        ssize_t w = write(fd, pattern + *put % 251, IO_SIZE);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return from_errno(errno);
        *put += (size_t)w;
    }
}

static void make_channel(int is_unix, int fds[2]) {
    int rc = is_unix ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) : pipe2(fds, O_CLOEXEC);
    if (rc != 0) { perror("channel"); exit(2); }
}

/* One transfer; returns whether it was right, counting its outcome. */
static int transfer(int is_unix, int victim_writes, int arm, unsigned delay_us, long counts[N_OUTCOMES]) {
    int fds[2];
    make_channel(is_unix, fds);
    /* pipe: fds[0] reads, fds[1] writes; a socketpair is symmetric */
    int mine = victim_writes ? fds[0] : fds[1], theirs = victim_writes ? fds[1] : fds[0];
    memset(sh, 0, sizeof *sh);
    sh->delay_us = delay_us;
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(2); }
    if (pid == 0) {
        close(mine);
        victim(theirs, victim_writes, arm);
    }
    close(theirs);
    alarm(10); /* the watchdog of a hang: SIGALRM ends this process */
    size_t bytes = 0;
    int ok = 1;
    enum outcome o;
    if (victim_writes) {
        o = survive_as_reader(mine, &bytes, &ok);
    } else if (arm) {
        o = survive_as_writer(mine, &bytes);
    } else {
        write_stream(mine, WARMUP);
        o = EOF_SEEN;
    }
    int64_t ended = now_ns();
    close(mine);
    int status;
    waitpid(pid, &status, 0);
    alarm(0);
    if (arm) {
        int64_t killed = __atomic_load_n(&sh->killed_at_ns, __ATOMIC_ACQUIRE);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            printf("the victim was not killed (status %#x)\n", status);
            ok = 0;
        } else if (ended - killed > DEADLINE_NS) {
            printf("the survivor saw the end %lld ms after the kill\n", (long long)((ended - killed) / 1000000));
            ok = 0;
        }
        counts[o]++;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || (victim_writes && bytes != WARMUP) ||
               (!victim_writes && sh->checked != WARMUP)) {
        printf("the warm-up transfer failed (status %#x, %zu bytes)\n", status, victim_writes ? bytes : sh->checked);
        ok = 0;
    }
    if (sh->bad) {
        printf("the victim reader got a wrong byte after %zu\n", sh->checked);
        ok = 0;
    }
    fprintf(stderr, "delay %u us: %s after %zu bytes\n", delay_us, outcome_names[o], bytes);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: death pipe|unix writer|reader COUNT SEED\n");
        return 2;
    }
    int is_unix = strcmp(argv[1], "unix") == 0;
    int victim_writes = strcmp(argv[2], "writer") == 0;
    long count = atol(argv[3]);
    uint64_t seed = strtoull(argv[4], NULL, 0), state = seed ? seed : 1;
    printf("death %s %s: %ld transfers, seed %llu\n", argv[1], argv[2], count, (unsigned long long)seed);
    fflush(stdout);
    signal(SIGPIPE, SIG_IGN);
    pattern = periodic_pattern(IO_SIZE);
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) { perror("mmap"); return 2; }

    long counts[N_OUTCOMES] = {0};
    int ok = transfer(is_unix, victim_writes, 0, 0, counts);
    struct holdings before = holdings_now();
    long failed = 0;
    for (long i = 0; i < count; i++) {
        unsigned delay = (unsigned)(next_random(&state) % (MAX_DELAY_US + 1));
        if (!transfer(is_unix, victim_writes, 1, delay, counts)) {
            printf("transfer %ld failed (seed %llu, delay %u us)\n", i, (unsigned long long)seed, delay);
            failed++;
        }
    }
    struct holdings after = holdings_now();
    ok = holdings_same("survivor", before, after) && ok && failed == 0;
    printf("outcomes:");
    for (int o = 0; o < N_OUTCOMES; o++) printf(" %s=%ld", outcome_names[o], counts[o]);
    printf("\nfailed transfers: %ld\n", failed);
    return ok ? 0 : 1;
}
