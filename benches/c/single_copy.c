/*
 * What one copy between two processes costs, against the two copies of the
 * library's ring: the evidence behind "Why every mode copies twice" in
 * docs/design.md. Not part of the library or the suite.
 *
 * usage: single_copy HOW CHUNK TOTAL [thp]
 *   HOW   twocopy  the writer copies its buffer into shared memory, the
 *                  reader copies it out (the ring's two copies, one slot)
 *         readv    the reader copies the writer's buffer with process_vm_readv(2)
 *         procmem  the reader preads the writer's buffer from /proc/PID/mem
 *   CHUNK bytes per transfer (the buffers' size); TOTAL bytes in all
 *   thp   both buffers madvise(MADV_HUGEPAGE)
 *
 * A writer child and the reader parent hand each transfer over through a
 * shared word (poll 20 µs, then a futex), as the library's ends do. Prints
 * "HOW CHUNK: GB/s, µs per transfer, CPU s/GiB" with the CPU time (user +
 * sys) of both processes. The reader checks a byte the writer changes
 * before every transfer.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
    _Atomic uint32_t posted; /* transfers the writer made ready */
    _Atomic uint32_t taken;  /* transfers the reader copied */
    uintptr_t src;           /* the writer's buffer, in its address space */
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Waits until *word reaches `want`: polls 20 µs, then sleeps. */
static void await(_Atomic uint32_t *word, uint32_t want) {
    double until = now() + 20e-6;
    while (atomic_load(word) < want) {
        if (now() < until) {
            __builtin_ia32_pause();
            continue;
        }
        uint32_t seen = atomic_load(word);
        if (seen < want) syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0);
    }
}

static void publish(_Atomic uint32_t *word, uint32_t value) {
    atomic_store(word, value);
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* N bytes at an address aligned to 2 MiB, so that with `thp` they can be
 * huge pages. */
static uint8_t *buffer(size_t n, int thp) {
    const size_t huge = 2u << 20;
    size_t span = (n + huge - 1) / huge * huge;
    uint8_t *p = mmap(NULL, span + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    p = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    if (thp && madvise(p, span, MADV_HUGEPAGE) != 0) perror("madvise");
    memset(p, 7, span);
    return p;
}

static double cpu_seconds(int who) {
    struct rusage u;
    getrusage(who, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: single_copy twocopy|readv|procmem CHUNK TOTAL [thp]\n"); return 2; }
    const char *how = argv[1];
    size_t chunk = strtoull(argv[2], 0, 0), total = strtoull(argv[3], 0, 0);
    int thp = argc > 4 && strcmp(argv[4], "thp") == 0;
    int twocopy = strcmp(how, "twocopy") == 0, readv = strcmp(how, "readv") == 0;
    if (!twocopy && !readv && strcmp(how, "procmem") != 0) { fprintf(stderr, "unknown HOW %s\n", how); return 2; }
    if (chunk == 0 || total < chunk) { fprintf(stderr, "need 0 < CHUNK <= TOTAL\n"); return 2; }
    uint32_t n = (uint32_t)(total / chunk);
    struct shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint8_t *slot = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (sh == MAP_FAILED || slot == MAP_FAILED) { perror("mmap"); return 2; }
    pid_t writer = fork();
    if (writer < 0) { perror("fork"); return 2; }
    if (writer == 0) {
        uint8_t *src = buffer(chunk, thp);
        sh->src = (uintptr_t)src;
        publish(&sh->posted, 0); /* the address is out */
        for (uint32_t i = 1; i <= n; i++) {
            src[0] = (uint8_t)i;
            if (twocopy) memcpy(slot, src, chunk);
            publish(&sh->posted, i);
            await(&sh->taken, i); /* the buffer is the reader's until then */
        }
        _exit(0);
    }
    uint8_t *dst = buffer(chunk, thp);
    while (!sh->src) usleep(100);
    int mem = -1;
    if (!twocopy && !readv) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/mem", writer);
        if ((mem = open(path, O_RDONLY)) < 0) { perror(path); return 1; }
    }
    double cpu0 = cpu_seconds(RUSAGE_SELF), t0 = now();
    for (uint32_t i = 1; i <= n; i++) {
        await(&sh->posted, i);
        ssize_t got = (ssize_t)chunk;
        if (twocopy) {
            memcpy(dst, slot, chunk);
        } else if (readv) {
            struct iovec local = {dst, chunk}, remote = {(void *)sh->src, chunk};
            got = process_vm_readv(writer, &local, 1, &remote, 1, 0);
        } else {
            got = pread(mem, dst, chunk, (off_t)sh->src);
        }
        if (got != (ssize_t)chunk) { perror(how); return 1; }
        if (dst[0] != (uint8_t)i) { fprintf(stderr, "transfer %u: wrong bytes\n", i); return 1; }
        publish(&sh->taken, i);
    }
    double t = now() - t0;
    int status;
    waitpid(writer, &status, 0);
    double cpu = cpu_seconds(RUSAGE_SELF) - cpu0 + cpu_seconds(RUSAGE_CHILDREN);
    double moved = (double)n * (double)chunk;
    printf("%s%s %zu: %.2f GB/s, %.1f us per transfer, %.3f CPU s/GiB\n", how, thp ? " thp" : "", chunk,
           moved / t / 1e9, t / n * 1e6, cpu / (moved / (double)(1u << 30)));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
