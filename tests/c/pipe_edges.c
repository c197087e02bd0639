/*
 * Edge cases of a pipe, run with and without the library by tests/pipe.rs,
 * which compares what they print on stdout (only what the kernel makes
 * deterministic) and how they end. Stream byte i is i % 251. Every read and
 * write is large (MiB), so that under the library they take the fast path;
 * counts that vary from run to run go to stderr.
 *
 * usage: pipe_edges MODE [ARG]
 *   kill-writer MIB
 *       a writer child writes the stream without end in 64 MiB writes; the
 *       parent reads it in 8 MiB reads; once it has MIB MiB, a third process
 *       kills the writer with SIGKILL. The parent must see EOF (within 20 s)
 *       after a prefix of the stream
 *   kill-reader DISP
 *       a writer child writes the stream without end in 64 MiB writes with
 *       SIGPIPE at DISP (default | ignore | handle); a reader child reads it
 *       in 8 MiB reads until the parent kills it with SIGKILL (after 16 MiB).
 *       The writer dies of SIGPIPE (default), or its writes end in EPIPE;
 *       with a handler, every short write (a partial count or -1) raised
 *       SIGPIPE, as pipe_write does (unlike a socket, a pipe raises it for a
 *       partial count too)
 *   last-reader-closes DISP
 *       the same writer; two reader children read it (each read must be a
 *       contiguous piece of the stream); the first closes its end after
 *       8 MiB and exits, the second reads 8 MiB more after that, closes its
 *       end and exits: the writer's writes then end as in kill-reader
 *   exec-reader MIB
 *       a writer child writes 256 MiB in 16 MiB writes and closes; a reader
 *       child reads exactly MIB MiB in reads of up to 4 MiB, then execs
 *       `env -u LD_PRELOAD <this program> check-rest OFFSET TOTAL`, which
 *       reads fd 3 to EOF: the bytes must be the stream from OFFSET to TOTAL
 *       exactly (no gap, no repeat)
 *   exec-reader-thread
 *       after an 8 MiB warm-up, a thread of the reader child sits in a
 *       512 MiB read while its main thread execs this program as check-rest
 *       (with the library, if the child had it); the parent's 1 GiB of
 *       writes complete, and what the exec'd reader gets is a contiguous
 *       piece of the stream up to its end (what the killed read had copied
 *       is lost, as with the kernel)
 *   write-read-end
 *       the parent streams 20 MiB in 1 MiB writes to a reader child and,
 *       after 16 MiB, writes to the read end it also holds: EBADF, and the
 *       child gets exactly the stream
 *   fifo-eof-without-writer
 *       a FIFO read to EOF through one open file, then opened again
 *       O_NONBLOCK with no writer and made blocking: its read returns 0 at
 *       once (poll reports no POLLHUP on it until a writer opens the FIFO)
 *   check-rest OFFSET TOTAL
 *       the exec'd reader (OFFSET -1: contiguity only, TOTAL unchecked)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

#define MIB ((size_t)1 << 20)
#define WRITE_SIZE (64 * MIB)
#define READ_SIZE (8 * MIB)

static uint8_t *pattern; /* pattern[i] = i % 251, PATTERN_LEN + 251 bytes */
#define PATTERN_LEN (256 * MIB)

static void make_pattern(void) { pattern = periodic_pattern(PATTERN_LEN); }

/* True if buf holds stream bytes [at, at + n). */
static int is_stream(const uint8_t *buf, size_t at, size_t n) {
    return memcmp(buf, pattern + at % 251, n) == 0;
}

/* True if buf is some contiguous piece of the stream. */
static int is_piece(const uint8_t *buf, size_t n) {
    return n == 0 || (buf[0] < 251 && is_stream(buf, buf[0], n));
}

/* A counter the processes share (MAP_SHARED, made before the forks). */
struct shared {
    size_t consumed;
    int first_closed;
};

static struct shared *make_shared(void) {
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) { perror("mmap"); exit(2); }
    return s;
}

/* How a child ended, in words (a few calls may share one printf). */
static const char *describe(int status) {
    static char texts[4][64];
    static int next;
    char *text = texts[next++ % 4];
    if (WIFEXITED(status)) snprintf(text, 64, "exited %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(text, 64, "killed by %s", sigabbrev_np(WTERMSIG(status)) ?: "?");
    else snprintf(text, 64, "status %#x", status);
    return text;
}

/* --- writers ---------------------------------------------------------------- */

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) { (void)sig; sigpipes++; }

/* Sets SIGPIPE to "default", "ignore" or "handle" (a handler that counts). */
static void set_sigpipe(const char *disp) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (strcmp(disp, "ignore") == 0) sa.sa_handler = SIG_IGN;
    else if (strcmp(disp, "handle") == 0) sa.sa_handler = on_sigpipe;
    else sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
}

/* Writes the stream without end in 64 MiB writes until a write fails (a
   short write is followed by another); prints how the writes ended. */
static void write_until_it_fails(int fd, const char *disp) {
    size_t at = 0;
    long shorts = 0, unsignalled = 0;
    int err = 0;
    for (;;) {
        long before = sigpipes;
        ssize_t w = write(fd, pattern + at % 251, WRITE_SIZE);
        if (w == (ssize_t)WRITE_SIZE) { at += WRITE_SIZE; continue; }
        shorts++;
        if (sigpipes == before) unsignalled++;
        if (w < 0) { err = errno; break; }
        at += (size_t)w;
    }
    fprintf(stderr, "writer: %zu bytes written, %ld short writes, %ld SIGPIPEs\n", at, shorts, (long)sigpipes);
    if (strcmp(disp, "handle") == 0)
        printf("writer: write failed with %s; %s\n", strerrorname_np(err) ?: "?",
               unsignalled ? "a short write raised NO SIGPIPE" : "each short write raised SIGPIPE");
    else
        printf("writer: write failed with %s\n", strerrorname_np(err) ?: "?");
    fflush(stdout);
}

/* --- kill-writer ------------------------------------------------------------ */

static int kill_writer_mode(size_t mib) {
    alarm(20); /* no EOF: SIGALRM ends the reader, and the outputs differ */
    struct shared *sh = make_shared();
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 2; }
    pid_t writer = fork();
    if (writer == 0) {
        close(p[0]);
        write_until_it_fails(p[1], "default");
        _exit(1);
    }
    pid_t killer = fork();
    if (killer == 0) {
        close(p[0]);
        close(p[1]);
        while (__atomic_load_n(&sh->consumed, __ATOMIC_ACQUIRE) < mib * MIB) usleep(100);
        kill(writer, SIGKILL);
        _exit(0);
    }
    close(p[1]);
    uint8_t *buf = map_or_die(READ_SIZE);
    size_t at = 0;
    int ok = 1;
    for (;;) {
        ssize_t r = read(p[0], buf, READ_SIZE);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { printf("read: %s\n", strerrorname_np(errno) ?: "?"); ok = 0; break; }
        if (r == 0) break;
        if (!is_stream(buf, at, (size_t)r)) { printf("wrong bytes after %zu\n", at); ok = 0; break; }
        at += (size_t)r;
        __atomic_store_n(&sh->consumed, at, __ATOMIC_RELEASE);
    }
    if (!ok) kill(writer, SIGKILL);
    int ws, ks;
    waitpid(writer, &ws, 0);
    if (at < mib * MIB) kill(killer, SIGKILL);
    waitpid(killer, &ks, 0);
    fprintf(stderr, "reader: %zu bytes before EOF\n", at);
    printf("reader: %s; writer %s\n",
           ok && at >= mib * MIB ? "a prefix of the stream, at least the bytes read before the kill, then EOF"
                                 : "FAILED",
           describe(ws));
    return !ok;
}

/* --- kill-reader, last-reader-closes ------------------------------------------ */

/* Reads the pipe in 8 MiB reads, each a contiguous piece of the stream,
   adding what it got to sh->consumed, until `until(sh, mine)`; returns
   whether every piece was right. */
static int read_pieces(int fd, struct shared *sh, int (*until)(struct shared *, size_t)) {
    uint8_t *buf = map_or_die(READ_SIZE);
    size_t mine = 0;
    while (!until(sh, mine)) {
        ssize_t r = read(fd, buf, READ_SIZE);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { fprintf(stderr, "reader: read returned %zd (%s)\n", r, strerror(errno)); return 0; }
        if (!is_piece(buf, (size_t)r)) { fprintf(stderr, "reader: a read that is not a piece of the stream\n"); return 0; }
        mine += (size_t)r;
        __atomic_fetch_add(&sh->consumed, (size_t)r, __ATOMIC_ACQ_REL);
    }
    return 1;
}

static int never(struct shared *sh, size_t mine) { (void)sh; (void)mine; return 0; }

/* Forks a writer that writes into p[1] until a write fails, with SIGPIPE
   disposition `disp`. */
static pid_t spawn_writer(int p[2], const char *disp) {
    pid_t writer = fork();
    if (writer == 0) {
        close(p[0]);
        set_sigpipe(disp);
        write_until_it_fails(p[1], disp);
        _exit(0);
    }
    return writer;
}

static int kill_reader_mode(const char *disp) {
    alarm(20);
    struct shared *sh = make_shared();
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 2; }
    pid_t writer = spawn_writer(p, disp);
    pid_t reader = fork();
    if (reader == 0) {
        close(p[1]);
        _exit(read_pieces(p[0], sh, never) ? 0 : 1);
    }
    close(p[0]);
    close(p[1]);
    int rs, ws;
    while (__atomic_load_n(&sh->consumed, __ATOMIC_ACQUIRE) < 16 * MIB && waitpid(reader, &rs, WNOHANG) == 0)
        usleep(100);
    kill(reader, SIGKILL);
    waitpid(reader, &rs, 0);
    waitpid(writer, &ws, 0);
    printf("reader %s; writer %s\n", describe(rs), describe(ws));
    return 0;
}

static int first_reader_done(struct shared *sh, size_t mine) { (void)sh; return mine >= 8 * MIB; }

static size_t second_started;
static int second_reader_done(struct shared *sh, size_t mine) {
    if (!__atomic_load_n(&sh->first_closed, __ATOMIC_ACQUIRE)) {
        second_started = mine;
        return 0;
    }
    return mine >= second_started + 8 * MIB;
}

static int last_reader_closes_mode(const char *disp) {
    alarm(20);
    struct shared *sh = make_shared();
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 2; }
    pid_t writer = spawn_writer(p, disp);
    pid_t readers[2];
    for (int i = 0; i < 2; i++) {
        if ((readers[i] = fork()) == 0) {
            close(p[1]);
            int ok = read_pieces(p[0], sh, i == 0 ? first_reader_done : second_reader_done);
            close(p[0]);
            if (i == 0) __atomic_store_n(&sh->first_closed, 1, __ATOMIC_RELEASE);
            _exit(ok ? 0 : 1);
        }
    }
    close(p[0]);
    close(p[1]);
    int s0, s1, ws;
    waitpid(readers[0], &s0, 0);
    waitpid(readers[1], &s1, 0);
    waitpid(writer, &ws, 0);
    printf("first reader %s; ", describe(s0));
    printf("last reader %s; writer %s\n", describe(s1), describe(ws));
    return 0;
}

/* --- exec mid-stream ------------------------------------------------------------ */

/* The exec'd reader: fd 3 to EOF must be stream bytes [offset, total), or
   with offset -1 a contiguous piece of the stream. */
static int check_rest_mode(long long offset, long long total) {
    int last = offset < 0 ? -1 : (int)((offset + 250) % 251); /* the byte before the first */
    long rest = periodic_rest(3, last, "check-rest: ");
    if (rest < 0) return 1;
    size_t got = (size_t)rest;
    fprintf(stderr, "check-rest: %zu bytes\n", got);
    if (offset < 0) {
        printf("check-rest: the rest of the stream without a gap, then EOF\n");
        return got == 0;
    }
    if ((long long)got != total - offset) {
        printf("check-rest: %zu bytes after offset %lld, expected %lld\n", got, offset, total - offset);
        return 1;
    }
    printf("check-rest: bytes %lld to %lld of the stream, then EOF\n", offset, total);
    return 0;
}

/* Moves fd to fd 3 without close-on-exec (the exec'd reader's input). */
static void as_fd3(int fd) {
    if (fd == 3 ? fcntl(3, F_SETFD, 0) != 0 : dup2(fd, 3) != 3) { perror("fd 3"); _exit(1); }
}

static int exec_reader_mode(size_t mib) {
    alarm(60);
    const size_t total = 256 * MIB, chunk = 16 * MIB;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 2; }
    pid_t writer = fork();
    if (writer == 0) {
        close(p[0]);
        signal(SIGPIPE, SIG_IGN);
        for (size_t at = 0; at < total; at += chunk)
            if (write(p[1], pattern + at % 251, chunk) != (ssize_t)chunk) { perror("writer"); _exit(1); }
        _exit(0);
    }
    pid_t reader = fork();
    if (reader == 0) {
        close(p[1]);
        as_fd3(p[0]); /* inherited by the exec'd program */
        uint8_t *buf = map_or_die(4 * MIB);
        size_t want = mib * MIB;
        for (size_t at = 0; at < want;) {
            ssize_t r = read(3, buf, want - at < 4 * MIB ? want - at : 4 * MIB);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0 || !is_stream(buf, at, (size_t)r)) { printf("reader: wrong bytes before the exec\n"); _exit(1); }
            at += (size_t)r;
        }
        char self[PATH_MAX], offset[32], end[32];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) _exit(1);
        self[n] = 0;
        snprintf(offset, sizeof offset, "%zu", want);
        snprintf(end, sizeof end, "%zu", total);
        fflush(stdout);
        char *argv[] = {"env", "-u", "LD_PRELOAD", self, "check-rest", offset, end, NULL};
        execvp("env", argv);
        _exit(127);
    }
    close(p[0]);
    close(p[1]);
    int rs, ws;
    waitpid(reader, &rs, 0);
    waitpid(writer, &ws, 0);
    printf("reader %s; writer %s\n", describe(rs), describe(ws));
    return !(WIFEXITED(rs) && WEXITSTATUS(rs) == 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}

static int started; /* set (atomically) once the thread is in its read */

static void *read_512_mib(void *arg) {
    (void)arg;
    uint8_t *buf = map_or_die(512 * MIB);
    __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
    for (;;) /* until the exec ends it */
        if (read(3, buf, 512 * MIB) <= 0) break;
    return NULL;
}

static int exec_reader_thread_mode(void) {
    alarm(60);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 2; }
    pid_t reader = fork();
    if (reader == 0) {
        close(p[1]);
        as_fd3(p[0]);
        uint8_t *buf = map_or_die(4 * MIB);
        for (size_t at = 0; at < 8 * MIB;) {
            ssize_t r = read(3, buf, 4 * MIB);
            if (r <= 0 || !is_stream(buf, at, (size_t)r)) { printf("reader: wrong warm-up bytes\n"); _exit(1); }
            at += (size_t)r;
        }
        pthread_t t;
        pthread_create(&t, NULL, read_512_mib, NULL);
        while (!__atomic_load_n(&started, __ATOMIC_ACQUIRE)) usleep(100);
        usleep(20 * 1000);
        fflush(stdout);
        char *argv[] = {"/proc/self/exe", "check-rest", "-1", "0", NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    size_t sent = 0;
    if (write(p[1], pattern, 8 * MIB) == (ssize_t)(8 * MIB)) sent = 8 * MIB;
    for (int i = 0; i < 4 && sent; i++) { /* 1 GiB: the reader execs during the first write */
        ssize_t w = write(p[1], pattern + sent % 251, PATTERN_LEN);
        if (w != (ssize_t)PATTERN_LEN) break;
        sent += PATTERN_LEN;
    }
    close(p[1]);
    int rs;
    waitpid(reader, &rs, 0);
    printf("the writes %s; the reader %s\n", sent == 8 * MIB + 4 * PATTERN_LEN ? "completed" : "were cut short",
           describe(rs));
    return sent != 8 * MIB + 4 * PATTERN_LEN || !WIFEXITED(rs) || WEXITSTATUS(rs) != 0;
}

static int is_disp(const char *s) {
    return strcmp(s, "default") == 0 || strcmp(s, "ignore") == 0 || strcmp(s, "handle") == 0;
}

/* Streams 16 MiB in 1 MiB writes to a reader child, then writes to the
   read end of the same pipe (the parent holds both ends), then 4 MiB more.
   The read-end writes fail with EBADF; the child gets exactly the 20 MiB of
   the stream. */
static int write_read_end_mode(void) {
    alarm(20);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 2; }
    pid_t reader = fork();
    if (reader == 0) {
        close(p[1]);
        uint8_t *buf = map_or_die(MIB);
        size_t at = 0;
        ssize_t r;
        while ((r = read(p[0], buf, MIB)) > 0) {
            if (!is_stream(buf, at, (size_t)r)) { printf("reader: wrong bytes at %zu\n", at); _exit(1); }
            at += (size_t)r;
        }
        printf("reader got %zu bytes\n", at);
        _exit(0);
    }
    size_t at = 0;
    for (int i = 0; i < 20; i++) {
        if (i == 16) {
            ssize_t w = write(p[0], pattern, MIB);
            printf("write to the read end: %zd (%s)\n", w, w < 0 ? strerror(errno) : "accepted");
        }
        if (write(p[1], pattern + at % 251, MIB) != (ssize_t)MIB) { perror("write"); return 1; }
        at += MIB;
    }
    close(p[1]);
    close(p[0]);
    int status;
    waitpid(reader, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* Reads a FIFO to EOF through one open file (writer gone), then opens it
   again O_NONBLOCK while it has no writer and makes that fd blocking: poll
   reports no POLLHUP on it until a writer opens the FIFO, but a read returns
   EOF at once. */
static int fifo_eof_without_writer_mode(void) {
    alarm(20);
    char dir[] = "/tmp/ipc-offload-fifo-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 2; }
    char path[64];
    snprintf(path, sizeof path, "%s/f", dir);
    if (mkfifo(path, 0600) != 0) { perror("mkfifo"); return 2; }
    pid_t writer = fork();
    if (writer == 0) {
        int w = open(path, O_WRONLY);
        for (size_t at = 0; at < 16 * MIB; at += MIB)
            if (write(w, pattern + at % 251, MIB) != (ssize_t)MIB) _exit(1);
        _exit(0);
    }
    int first = open(path, O_RDONLY);
    uint8_t *buf = map_or_die(MIB);
    size_t got = 0;
    ssize_t r;
    while ((r = read(first, buf, MIB)) > 0) got += (size_t)r;
    waitpid(writer, NULL, 0);
    int second = open(path, O_RDONLY | O_NONBLOCK);
    fcntl(second, F_SETFL, 0);
    r = read(second, buf, MIB);
    printf("first open file: %zu bytes, then EOF; second: read gives %zd\n", got, r);
    close(first);
    close(second);
    unlink(path);
    rmdir(dir);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "check-rest") == 0 && argc == 4) return check_rest_mode(atoll(argv[2]), atoll(argv[3]));
    if (strcmp(mode, "kill-writer") == 0 && argc == 3) return make_pattern(), kill_writer_mode(strtoull(argv[2], NULL, 0));
    if (strcmp(mode, "kill-reader") == 0 && argc == 3 && is_disp(argv[2])) return make_pattern(), kill_reader_mode(argv[2]);
    if (strcmp(mode, "last-reader-closes") == 0 && argc == 3 && is_disp(argv[2]))
        return make_pattern(), last_reader_closes_mode(argv[2]);
    if (strcmp(mode, "exec-reader") == 0 && argc == 3) return make_pattern(), exec_reader_mode(strtoull(argv[2], NULL, 0));
    if (strcmp(mode, "exec-reader-thread") == 0 && argc == 2) return make_pattern(), exec_reader_thread_mode();
    if (strcmp(mode, "write-read-end") == 0 && argc == 2) return make_pattern(), write_read_end_mode();
    if (strcmp(mode, "fifo-eof-without-writer") == 0 && argc == 2) return make_pattern(), fifo_eof_without_writer_mode();
    fprintf(stderr, "usage: %s kill-writer MIB | kill-reader DISP | last-reader-closes DISP | exec-reader MIB\n"
                    "       | exec-reader-thread | write-read-end | fifo-eof-without-writer\n"
                    "       | check-rest OFFSET TOTAL   (DISP: default, ignore or handle)\n",
            argv[0]);
    return 2;
}
