/*
 * One transfer over a pipe (or a FIFO) between a writer child and a reading
 * parent, checked byte for byte against the stream's pattern (byte i of the
 * stream is pat(i)), in one of the ways programs read and write pipes.
 *
 * usage: pipe_matrix MODE TOTAL WRITE READ
 *   MODE   blocking | readv | eintr | fread
 *            the reader blocks in read(2), in readv(2) with three buffers
 *            (one empty), in read(2) while a 2 ms SIGALRM interval timer
 *            without SA_RESTART interrupts it (it retries on EINTR), or in
 *            fread(3) on the fdopen'd read end
 *          nonblock-poll | epoll-lt | epoll-et | select
 *            the read end is O_NONBLOCK; the reader reads until EAGAIN, then
 *            waits for readiness with poll, level- or edge-triggered epoll,
 *            or select
 *          nbwrite
 *            the write end is O_NONBLOCK: partial writes, EAGAIN, poll for
 *            POLLOUT
 *          fwrite-mix
 *            the writer alternates fwrite+fflush with write/writev of its
 *            blocks, on the same fd (the stdio bytes go through the kernel
 *            inside libc, where no preload sees them)
 *          fifo
 *            mkfifo in a fresh temporary directory, opened by path by both
 *            sides (the writer with O_WRONLY, the reader with O_RDONLY)
 *          splice
 *            the reader alternates read(2) with splice(2) of up to READ
 *            bytes into a second pipe, which it then reads (splice is not
 *            interposed: the bytes it moves must come in stream order)
 *          fionread
 *            the writer sets the pipe to 1 MiB (F_SETPIPE_SZ) and checks
 *            F_GETPIPE_SZ; the reader polls, asks FIONREAD, and reads
 *            exactly that many bytes (at most READ), which must all come
 *            at once
 *          two-two
 *            two writer children and two reader children on one pipe. Each
 *            writer writes TOTAL/2 bytes of 4-byte words (writer id << 31 |
 *            word index); the readers check that every word of both writers
 *            arrives exactly once (a shared bitmap: no loss, no duplicate,
 *            no torn or corrupt word) and, within each reader, that each
 *            writer's words come in increasing order. TOTAL must be a
 *            multiple of 8, WRITE and READ of 4 (then the kernel never
 *            splits a word between two readers)
 *          write-stdout | read-stdin
 *            only one side, on fd 1 or fd 0 (a pipe the caller made, e.g. a
 *            shell pipeline in which one side runs without the library)
 *   TOTAL  bytes the writer sends, in writes of WRITE bytes (write and
 *          writev in turn), then it closes its end
 *   READ   the reader's buffer size
 *
 * Prints one line on stdout, the same with and without the library: the
 * mode and sizes, the bytes read, whether EOF was seen, and "ok" (or "BAD"
 * after a line that says what was wrong). Exits 1 at the first wrong byte,
 * a short stream or a failed writer. On stderr: the counts of reads, EINTR
 * and EAGAIN (which differ from run to run), and the writer's /proc/self/io
 * wchar ("writer wchar N"), for the tests that prove payload did not cross
 * the pipe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"
#include "readers.h"

/* What the reader got, checked: byte i of the stream is pat(i, 0x919e). */
static struct stream_check got = { .seed = 0x919e };

/* Writes buf[0, n) with write (k even) or writev (k odd), retrying partial
   writes; a nonblocking fd waits for POLLOUT on EAGAIN. Exits 1 on error. */
static void write_all(int fd, const uint8_t *buf, size_t n, long k, int nonblocking) {
    size_t off = 0;
    while (off < n) {
        size_t left = n - off;
        ssize_t w;
        if (k % 2 == 0) {
            w = write(fd, buf + off, left);
        } else {
            struct iovec iov[2] = {{(void *)(buf + off), left / 2}, {(void *)(buf + off + left / 2), left - left / 2}};
            w = writev(fd, iov, 2);
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && nonblocking && errno == EAGAIN) {
            struct pollfd p = {fd, POLLOUT, 0};
            if (poll(&p, 1, 10000) != 1) { fprintf(stderr, "writer: no POLLOUT within 10 s\n"); _exit(1); }
            continue;
        }
        if (w <= 0) { perror("writer"); _exit(1); }
        off += (size_t)w;
    }
}

static void writer(int fd, size_t total, size_t wsize, const char *mode) {
    if (strcmp(mode, "fionread") == 0) {
        int want = 1 << 20;
        if (fcntl(fd, F_SETPIPE_SZ, want) < want || fcntl(fd, F_GETPIPE_SZ) != want) {
            perror("F_SETPIPE_SZ");
            _exit(1);
        }
    }
    int nbwrite = strcmp(mode, "nbwrite") == 0;
    if (nbwrite) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    FILE *stdio = NULL;
    if (strcmp(mode, "fwrite-mix") == 0 && !(stdio = fdopen(fd, "w"))) { perror("fdopen"); _exit(1); }
    uint8_t *buf = map_or_die(wsize);
    size_t sent = 0;
    for (long k = 0; sent < total; k++) {
        size_t n = total - sent < wsize ? total - sent : wsize;
        for (size_t i = 0; i < n; i++) buf[i] = pat(sent + i, got.seed);
        if (stdio && k % 2 == 0) {
            /* stdio writes inside libc; the next write must come after it */
            if (fwrite(buf, 1, n, stdio) != n || fflush(stdio) != 0) { perror("fwrite"); _exit(1); }
        } else {
            write_all(fd, buf, n, stdio ? k / 2 : k, nbwrite);
        }
        sent += n;
    }
    fprintf(stderr, "writer wchar %ld\n", wchar());
    if (stdio) fclose(stdio);
    else close(fd);
}

/* One read in `mode`; returns what read(2) would. */
static ssize_t one_read(const char *mode, int fd, FILE *stdio, uint8_t *buf, size_t size) {
    if (stdio) {
        size_t n = fread(buf, 1, size, stdio);
        if (n > 0) return (ssize_t)n;
        if (ferror(stdio)) return -1;
        return 0;
    }
    if (strcmp(mode, "readv") == 0) {
        struct iovec iov[3] = {{buf, size / 3}, {buf + size / 3, 0}, {buf + size / 3, size - size / 3}};
        return readv(fd, iov, 3);
    }
    if (strcmp(mode, "splice") == 0) {
        static int scratch[2] = {-1, -1};
        static long calls;
        if (calls++ % 2 == 0) return read(fd, buf, size);
        if (scratch[0] < 0 && pipe(scratch) != 0) return -1;
        ssize_t moved = splice(fd, NULL, scratch[1], NULL, size < 65536 ? size : 65536, 0);
        for (ssize_t at = 0; moved > 0 && at < moved;) {
            ssize_t r = read(scratch[0], buf + at, (size_t)(moved - at));
            if (r <= 0) return -1;
            at += r;
        }
        return moved;
    }
    if (strcmp(mode, "fionread") == 0) return read_what_fionread_says(fd, buf, size, &got.bad);
    return read(fd, buf, size);
}

/* What read_to_eof's reads need. */
struct reading {
    const char *mode;
    int fd;
    FILE *stdio;
};

static ssize_t read_in_mode(void *ctx, uint8_t *buf, size_t size) {
    struct reading *r = ctx;
    return one_read(r->mode, r->fd, r->stdio, buf, size);
}

/* Reads fd to EOF in `mode`, verifying; returns whether EOF was seen. */
static int reader(int fd, size_t rsize, const char *mode) {
    int ep = reader_setup(mode, fd);
    FILE *stdio = NULL;
    if (strcmp(mode, "fread") == 0 && !(stdio = fdopen(fd, "r"))) { perror("fdopen"); exit(2); }
    uint8_t *buf = map_or_die(rsize);
    struct reading ctx = {mode, fd, stdio};
    struct read_counts c = {0, 0, 0};
    int eof = read_to_eof(mode, fd, ep, read_in_mode, &ctx, buf, rsize, &got, &c);
    reader_done();
    fprintf(stderr, "reads %ld eintr %ld eagain %ld\n", c.reads, c.eintr, c.again);
    if (stdio) fclose(stdio);
    else close(fd);
    if (ep >= 0) close(ep);
    return eof;
}

/* --- two writers, two readers --------------------------------------------- */

struct shared {
    uint64_t bytes[2];      /* per reader */
    uint64_t words[2][2];   /* [reader][writer] */
    int eof[2], bad[2];
    uint64_t bitmap[];      /* [writer][word index] bits: seen */
};

static int two_two(size_t total, size_t wsize, size_t rsize) {
    if (total % 8 || wsize % 4 || rsize % 4 || wsize == 0 || rsize == 0 || total / 8 > 0x7fffffffu) {
        fprintf(stderr, "two-two: TOTAL must be a multiple of 8, WRITE and READ of 4\n");
        return 2;
    }
    size_t words = total / 8, map_words = (words + 63) / 64;
    size_t shared_bytes = sizeof(struct shared) + 2 * map_words * sizeof(uint64_t);
    struct shared *sh = mmap(NULL, shared_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) { perror("mmap"); return 2; }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 2; }
    pid_t pids[4];
    for (int w = 0; w < 2; w++) {
        if ((pids[w] = fork()) == 0) {
            close(p[0]);
            signal(SIGPIPE, SIG_IGN);
            uint8_t *buf = map_or_die(wsize);
            size_t sent = 0; /* words */
            for (long k = 0; sent < words; k++) {
                size_t n = (words - sent) * 4 < wsize ? (words - sent) * 4 : wsize;
                for (size_t j = 0; j < n / 4; j++) {
                    uint32_t v = (uint32_t)w << 31 | (uint32_t)(sent + j);
                    memcpy(buf + 4 * j, &v, 4);
                }
                write_all(p[1], buf, n, k, 0);
                sent += n / 4;
            }
            fprintf(stderr, "writer %d wchar %ld\n", w, wchar());
            _exit(0);
        }
    }
    for (int r = 0; r < 2; r++) {
        if ((pids[2 + r] = fork()) == 0) {
            close(p[1]);
            uint8_t *buf = map_or_die(rsize + 4);
            size_t carry = 0; /* bytes of an incomplete word at the start of buf */
            int64_t last[2] = {-1, -1};
            long reads = 0;
            for (;;) {
                ssize_t n = read(p[0], buf + carry, rsize);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) { perror("reader"); sh->bad[r] = 1; break; }
                if (n == 0) { sh->eof[r] = 1; break; }
                reads++;
                sh->bytes[r] += (uint64_t)n;
                size_t have = carry + (size_t)n, j;
                for (j = 0; j + 4 <= have; j += 4) {
                    uint32_t v;
                    memcpy(&v, buf + j, 4);
                    int w = (int)(v >> 31);
                    uint32_t idx = v & 0x7fffffffu;
                    if (idx >= words) {
                        if (!sh->bad[r]) fprintf(stderr, "reader %d: word %#x is no writer's\n", r, v);
                        sh->bad[r] = 1;
                        continue;
                    }
                    if ((int64_t)idx <= last[w]) {
                        if (!sh->bad[r]) fprintf(stderr, "reader %d: writer %d's word %u after %lld\n", r, w, idx, (long long)last[w]);
                        sh->bad[r] = 1;
                    }
                    last[w] = idx;
                    uint64_t bit = 1ull << (idx % 64);
                    if (__atomic_fetch_or(&sh->bitmap[(size_t)w * map_words + idx / 64], bit, __ATOMIC_RELAXED) & bit) {
                        if (!sh->bad[r]) fprintf(stderr, "reader %d: writer %d's word %u a second time\n", r, w, idx);
                        sh->bad[r] = 1;
                    }
                    sh->words[r][w]++;
                }
                carry = have - j;
                memmove(buf, buf + j, carry);
            }
            if (carry) { fprintf(stderr, "reader %d: %zu bytes of a torn word at EOF\n", r, carry); sh->bad[r] = 1; }
            fprintf(stderr, "reader %d: %llu bytes (writer 0: %llu words, writer 1: %llu words) in %ld reads\n", r,
                    (unsigned long long)sh->bytes[r], (unsigned long long)sh->words[r][0],
                    (unsigned long long)sh->words[r][1], reads);
            _exit(0);
        }
    }
    close(p[0]);
    close(p[1]);
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        int status;
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("%s %d failed\n", i < 2 ? "writer" : "reader", i % 2);
            failed = 1;
        }
    }
    size_t missing[2] = {0, 0};
    for (int w = 0; w < 2; w++)
        for (size_t i = 0; i < words; i++)
            if (!(sh->bitmap[(size_t)w * map_words + i / 64] >> (i % 64) & 1)) missing[w]++;
    for (int w = 0; w < 2; w++)
        if (missing[w]) printf("%zu words of writer %d never arrived\n", missing[w], w);
    if (sh->bad[0] || sh->bad[1]) printf("a reader got wrong, repeated or out-of-order words\n");
    int ok = !failed && !missing[0] && !missing[1] && !sh->bad[0] && !sh->bad[1] && sh->eof[0] && sh->eof[1];
    size_t received = (size_t)(sh->bytes[0] + sh->bytes[1]);
    printf("two-two w=%zu r=%zu: %zu bytes, %s, %s\n", wsize, rsize, received, sh->eof[0] && sh->eof[1] ? "eof" : "no eof",
           ok ? "ok" : "BAD");
    return !ok || received != total;
}

/* --- main ----------------------------------------------------------------- */

static int report(const char *mode, size_t total, size_t wsize, size_t rsize, int eof, int writer_ok) {
    if (!writer_ok) printf("the writer failed\n");
    printf("%s w=%zu r=%zu: %zu bytes, %s, %s\n", mode, wsize, rsize, got.checked, eof ? "eof" : "no eof",
           got.bad || !writer_ok ? "BAD" : "ok");
    return got.bad || got.checked != total || !eof || !writer_ok;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s MODE TOTAL WRITE READ\n", argv[0]); return 2; }
    const char *mode = argv[1];
    size_t total = strtoull(argv[2], NULL, 0), wsize = strtoull(argv[3], NULL, 0), rsize = strtoull(argv[4], NULL, 0);
    if (wsize == 0 || rsize == 0) { fprintf(stderr, "WRITE and READ must be positive\n"); return 2; }
    static const char *modes[] = {"blocking", "readv", "eintr", "fread", "nonblock-poll", "epoll-lt", "epoll-et",
                                  "select", "nbwrite", "fwrite-mix", "fifo", "two-two", "write-stdout", "read-stdin",
                                  "splice", "fionread"};
    int known = 0;
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) known |= strcmp(mode, modes[i]) == 0;
    if (!known) { fprintf(stderr, "unknown mode %s\n", mode); return 2; }
    if (strcmp(mode, "two-two") == 0) return two_two(total, wsize, rsize);
    if (strcmp(mode, "write-stdout") == 0) {
        signal(SIGPIPE, SIG_IGN);
        writer(1, total, wsize, "blocking");
        return 0;
    }
    if (strcmp(mode, "read-stdin") == 0) {
        int eof = reader(0, rsize, "blocking");
        return report(mode, total, wsize, rsize, eof, 1);
    }

    int fds[2];
    char dir[PATH_MAX] = "", fifo[PATH_MAX + 8] = "";
    if (strcmp(mode, "fifo") == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/pipe_matrix.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); return 2; }
        snprintf(fifo, sizeof fifo, "%s/fifo", dir);
        if (mkfifo(fifo, 0600) != 0) { perror("mkfifo"); return 2; }
    } else if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("pipe");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        int fd;
        if (*fifo) {
            if ((fd = open(fifo, O_WRONLY | O_CLOEXEC)) < 0) { perror("open fifo for writing"); _exit(1); }
        } else {
            close(fds[0]);
            fd = fds[1];
        }
        signal(SIGPIPE, SIG_IGN);
        writer(fd, total, wsize, mode);
        _exit(0);
    }
    int fd;
    if (*fifo) {
        if ((fd = open(fifo, O_RDONLY | O_CLOEXEC)) < 0) { perror("open fifo for reading"); return 2; }
        unlink(fifo);
        rmdir(dir);
    } else {
        close(fds[1]);
        fd = fds[0];
    }
    int eof = reader(fd, rsize, mode);
    int status;
    waitpid(pid, &status, 0);
    return report(mode, total, wsize, rsize, eof, WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
