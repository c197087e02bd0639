/*
 * Copies into and out of shared memory (POSIX shm, memfd, /dev/shm files,
 * shared anonymous memory) and private memory, across the mapping changes
 * the library must follow: MAP_FIXED over a region, munmap then mmap at the
 * same address, partial munmap, mremap (grow, move, MREMAP_FIXED, shrink,
 * MREMAP_DONTUNMAP, duplicate), a full index, and threads mapping and
 * unmapping while others copy. Every copied byte is checked.
 *
 * Each copy is made with memcpy (-fno-builtin: through the PLT) and is at
 * least 64 KiB; the program knows which class each should be in (shm when
 * its source or destination meets shared memory the library saw mapped)
 * and prints what a run under the library with both thresholds at 64 KiB
 * must count, as the last line:
 *
 *   expect shm CALLS BYTES memcpy CALLS BYTES
 *
 * The output is the same without the library.
 *
 * usage: shm_regions SCENARIO
 *   posix memfd devshm anon private disk fixed partial mremap full threads signals
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/vfs.h>
#include "common.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
/* The library's index holds this many ranges (offload::shm::CAPACITY). */
#define INDEX_CAPACITY 4096

static atomic_size_t shm_calls, shm_bytes, memcpy_calls, memcpy_bytes;
static uint8_t *src_buf, *dst_buf; /* private, 8 MiB each */

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void counted(int shared, size_t n) {
    if (shared) {
        shm_calls++;
        shm_bytes += n;
    } else {
        memcpy_calls++;
        memcpy_bytes += n;
    }
}

/* A pattern into `region` from private memory, then back out into private
   memory, both checked: two copies expected in the shm class when
   `shared`, else in the memcpy class. */
static void roundtrip(uint8_t *region, size_t n, int shared, const char *what) {
    static uint32_t seed = 1;
    seed++;
    fill(src_buf, n, seed);
    memcpy(region, src_buf, n);
    counted(shared, n);
    long bad = check(region, n, seed);
    if (bad >= 0) { printf("%s: byte %ld wrong in the region\n", what, bad); exit(1); }
    for (size_t i = 0; i < n; i += 4096) dst_buf[i] = (uint8_t)~dst_buf[i];
    memcpy(dst_buf, region, n);
    counted(shared, n);
    bad = check(dst_buf, n, seed);
    if (bad >= 0) { printf("%s: byte %ld wrong after copying out\n", what, bad); exit(1); }
    printf("%s: %s\n", what, shared ? "shm" : "memcpy");
}

static void *map(void *addr, size_t n, int flags, int fd) {
    void *p = mmap(addr, n, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    return p;
}

/* A private mapping replacing what the program has mapped at `addr`. */
static void *map_private_at(void *addr, size_t n) {
    void *p = map(addr, n, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1);
    if (p != addr) { printf("MAP_FIXED moved\n"); exit(2); }
    return p;
}

/* A mapping at `addr`, which the program has unmapped: never MAP_FIXED
   there, which would replace whatever took the addresses since (a thread's
   stack, say); the program maps nothing concurrently after its warm-up, so
   they are free. */
static void *map_again_at(void *addr, size_t n, int flags, int fd) {
    void *p = mmap(addr, n, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE, fd, 0);
    if (p == MAP_FAILED || p != addr) { printf("the unmapped range was taken\n"); exit(2); }
    return p;
}

static void *map_private_again_at(void *addr, size_t n) {
    return map_again_at(addr, n, MAP_PRIVATE | MAP_ANONYMOUS, -1);
}

static int memfd(size_t n) {
    int fd = memfd_create("shm_regions", MFD_CLOEXEC);
    if (fd < 0) die("memfd_create");
    if (ftruncate(fd, (off_t)n) != 0) die("ftruncate");
    return fd;
}

/* A file region: one shared view written, a second view read (the same
   pages), then unmapped. */
static void file_region(int fd, size_t n, const char *what) {
    uint8_t *a = map(NULL, n, MAP_SHARED, fd), *b = map(NULL, n, MAP_SHARED, fd);
    roundtrip(a, n, 1, what);
    memcpy(dst_buf, b, n); /* the other view: the same bytes */
    counted(1, n);
    if (memcmp(dst_buf, a, n) != 0) { printf("%s: the views differ\n", what); exit(1); }
    /* Private to shared in both directions is shm; private to private is not. */
    memcpy(dst_buf, src_buf, n);
    counted(0, n);
    if (munmap(a, n) || munmap(b, n)) die("munmap");
}

static void posix(void) {
    char name[64];
    snprintf(name, sizeof name, "/ipc-offload-shm-regions-%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) die("shm_open");
    if (ftruncate(fd, 4 * MiB) != 0) die("ftruncate");
    file_region(fd, 4 * MiB, "shm_open");
    close(fd);
    if (shm_unlink(name) != 0) die("shm_unlink");
}

static void devshm(void) {
    char name[64];
    snprintf(name, sizeof name, "/dev/shm/ipc-offload-shm-regions-%d", (int)getpid());
    int fd = open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) die("open /dev/shm");
    if (ftruncate(fd, 4 * MiB) != 0) die("ftruncate");
    unlink(name);
    file_region(fd, 4 * MiB, "/dev/shm file");
    close(fd);
}

static void memfd_scenario(void) {
    int fd = memfd(4 * MiB);
    file_region(fd, 4 * MiB, "memfd");
    close(fd);
}

static void anon(void) {
    uint8_t *p = map(NULL, 4 * MiB, MAP_SHARED | MAP_ANONYMOUS, -1);
    roundtrip(p, 4 * MiB, 1, "shared anonymous");
    munmap(p, 4 * MiB);
}

static void private_scenario(void) {
    char name[64];
    snprintf(name, sizeof name, "/dev/shm/ipc-offload-shm-regions-%d", (int)getpid());
    int fd = open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) die("open /dev/shm");
    if (ftruncate(fd, 4 * MiB) != 0) die("ftruncate");
    unlink(name);
    uint8_t *p = map(NULL, 4 * MiB, MAP_PRIVATE, fd);
    roundtrip(p, 4 * MiB, 0, "private mapping of a /dev/shm file");
    munmap(p, 4 * MiB);
    close(fd);
    p = map(NULL, 4 * MiB, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    roundtrip(p, 4 * MiB, 0, "private anonymous");
    munmap(p, 4 * MiB);
    fd = memfd(4 * MiB);
    p = map(NULL, 4 * MiB, MAP_PRIVATE, fd);
    roundtrip(p, 4 * MiB, 0, "private mapping of a memfd");
    munmap(p, 4 * MiB);
    close(fd);
}

/* A shared mapping of a file on disk is page-cache I/O, not shared memory
   (unless the directory is itself on tmpfs). */
static void disk(void) {
    char name[64];
    snprintf(name, sizeof name, "shm-regions-disk-%d", (int)getpid());
    int fd = open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) die("open a file in the current directory");
    unlink(name);
    if (ftruncate(fd, 4 * MiB) != 0) die("ftruncate");
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) die("fstatfs");
    int memory = fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC;
    uint8_t *p = map(NULL, 4 * MiB, MAP_SHARED, fd);
    roundtrip(p, 4 * MiB, memory, memory ? "shared file mapping (tmpfs)" : "shared file mapping (disk)");
    munmap(p, 4 * MiB);
    close(fd);
}

static void fixed(void) {
    int fd = memfd(4 * MiB);
    /* munmap, then a private mapping at the same address. */
    uint8_t *a = map(NULL, 4 * MiB, MAP_SHARED, fd);
    roundtrip(a, 1 * MiB, 1, "shared");
    if (munmap(a, 4 * MiB)) die("munmap");
    map_private_again_at(a, 4 * MiB);
    roundtrip(a, 4 * MiB, 0, "munmap, then private at the same address");
    /* A shared mapping over it, then a private one straight over that. */
    map(a, 4 * MiB, MAP_SHARED | MAP_FIXED, fd);
    roundtrip(a + MiB, 1 * MiB, 1, "MAP_FIXED shared over private");
    map_private_at(a, 4 * MiB);
    roundtrip(a, 4 * MiB, 0, "MAP_FIXED private over shared");
    /* Shared over the middle of a private mapping. */
    map(a + MiB, 2 * MiB, MAP_SHARED | MAP_FIXED, fd);
    roundtrip(a, 512 * KiB, 0, "private head");
    roundtrip(a + MiB, 2 * MiB, 1, "shared middle");
    roundtrip(a + 3 * MiB, 1 * MiB, 0, "private tail");
    /* A copy that straddles private and shared memory is shm. */
    roundtrip(a + MiB - 256 * KiB, 512 * KiB, 1, "straddling");
    /* A failed MAP_FIXED_NOREPLACE over the shared part changes nothing. */
    void *r = mmap(a + MiB, MiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (r != MAP_FAILED) { printf("MAP_FIXED_NOREPLACE replaced\n"); exit(2); }
    roundtrip(a + MiB, 1 * MiB, 1, "after a refused MAP_FIXED_NOREPLACE");
    munmap(a, 4 * MiB);
    close(fd);
}

static void partial(void) {
    int fd = memfd(8 * MiB);
    uint8_t *a = map(NULL, 8 * MiB, MAP_SHARED, fd);
    if (munmap(a + 2 * MiB, 2 * MiB)) die("munmap");
    roundtrip(a, 1 * MiB, 1, "head, after unmapping the middle");
    roundtrip(a + 4 * MiB, 4 * MiB, 1, "tail, after unmapping the middle");
    map_private_again_at(a + 2 * MiB, 2 * MiB);
    roundtrip(a + 2 * MiB, 2 * MiB, 0, "private in the hole");
    if (munmap(a, MiB)) die("munmap");
    map_private_again_at(a, MiB);
    roundtrip(a, 1 * MiB, 0, "private where the first MiB was");
    roundtrip(a + MiB, 1 * MiB, 1, "the second MiB, still shared");
    /* One munmap across the rest: private, shared, and the shared tail. */
    if (munmap(a + MiB, 6 * MiB)) die("munmap");
    map_private_again_at(a + MiB, 6 * MiB);
    map_private_at(a, 8 * MiB);
    roundtrip(a, 8 * MiB, 0, "private over everything");
    munmap(a, 8 * MiB);
    close(fd);
}

static void mremap_scenario(void) {
    int fd = memfd(16 * MiB);
    /* Grow, forced to move by a mapping right after the region. */
    uint8_t *p = map(NULL, 4 * MiB, MAP_SHARED, fd);
    uint8_t *guard = mmap(p + 4 * MiB, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    uint8_t *q = mremap(p, 4 * MiB, 8 * MiB, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) die("mremap grow");
    if (guard != MAP_FAILED && q == p) { printf("mremap did not move\n"); exit(2); }
    roundtrip(q + 6 * MiB, 2 * MiB, 1, "grown (moved): the new part");
    roundtrip(q, 1 * MiB, 1, "grown (moved): the old part");
    if (q != p) {
        map_private_again_at(p, 4 * MiB);
        roundtrip(p, 4 * MiB, 0, "private where the region was before it moved");
        munmap(p, 4 * MiB);
    }
    if (guard != MAP_FAILED) munmap(guard, 4096);
    /* Grow in place (room made first). */
    uint8_t *room = map(NULL, 16 * MiB, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    munmap(room, 16 * MiB);
    uint8_t *g = map_again_at(room, 4 * MiB, MAP_SHARED, fd);
    uint8_t *h = mremap(g, 4 * MiB, 12 * MiB, 0);
    if (h != g) die("mremap in place");
    roundtrip(g + 8 * MiB, 4 * MiB, 1, "grown in place");
    /* Shrink: the tail, mapped private again, is not shared. */
    if (mremap(g, 12 * MiB, 2 * MiB, 0) != g) die("mremap shrink");
    map_private_again_at(g + 2 * MiB, 10 * MiB);
    roundtrip(g + 2 * MiB, 8 * MiB, 0, "private where a shrunk region's tail was");
    roundtrip(g, 2 * MiB, 1, "shrunk");
    /* MREMAP_FIXED onto a private mapping. */
    uint8_t *t = map(NULL, 8 * MiB, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    roundtrip(t, 1 * MiB, 0, "a private target");
    if (mremap(q, 8 * MiB, 8 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, t) != t) die("mremap fixed");
    roundtrip(t + 4 * MiB, 4 * MiB, 1, "moved onto it with MREMAP_FIXED");
    map_private_again_at(q, 8 * MiB);
    roundtrip(q, 8 * MiB, 0, "private where it came from");
    /* A duplicate of a shared mapping (old size 0): both are shared. */
    uint8_t *d = mremap(t, 0, 4 * MiB, MREMAP_MAYMOVE);
    if (d == MAP_FAILED) die("mremap duplicate");
    roundtrip(d, 4 * MiB, 1, "duplicate (old size 0)");
    roundtrip(t, 1 * MiB, 1, "the original of the duplicate");
    /* MREMAP_DONTUNMAP (Linux 5.13 for shared mappings): both stay shared. */
    uint8_t *m = mremap(d, 4 * MiB, 4 * MiB, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    if (m == MAP_FAILED) {
        printf("MREMAP_DONTUNMAP: not supported here\n");
    } else {
        roundtrip(m, 4 * MiB, 1, "MREMAP_DONTUNMAP: the new range");
        roundtrip(d, 4 * MiB, 1, "MREMAP_DONTUNMAP: the old range");
        munmap(m, 4 * MiB);
    }
    munmap(d, 4 * MiB);
    /* A private mapping moved by mremap stays private. */
    uint8_t *v = map(NULL, 2 * MiB, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    uint8_t *w = mremap(v, 2 * MiB, 6 * MiB, MREMAP_MAYMOVE);
    if (w == MAP_FAILED) die("mremap private");
    roundtrip(w, 6 * MiB, 0, "private, grown");
    munmap(w, 6 * MiB);
    munmap(t, 8 * MiB);
    munmap(q, 8 * MiB);
    munmap(g, 12 * MiB);
    close(fd);
}

/* More separate shared ranges than the index holds: the last ones are not
   indexed and their copies stay in the memcpy class (bytes unaffected);
   once they are unmapped, new regions are indexed again. */
static void full(void) {
    const size_t pages = INDEX_CAPACITY + 104, page = 4096, span = 64 * KiB;
    int fd = memfd(page);
    /* A private reservation, then one shared page (the memfd's only one)
       at every other page: no two shared pages touch, so each is a range
       of its own. */
    uint8_t *base = map(NULL, 2 * pages * page + span, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    for (size_t i = 0; i < pages; i++) map(base + 2 * i * page, page, MAP_SHARED | MAP_FIXED, fd);
    fill(base, page, 77); /* every shared page shows it */
    /* 64 KiB from the first page meets indexed shared pages; from the last
       16 shared pages, none that is indexed. */
    uint8_t *last = base + 2 * (pages - 16) * page;
    for (int k = 0; k < 2; k++) {
        memcpy(dst_buf, k ? last : base, span);
        counted(!k, span);
        for (size_t i = 0; i < span; i++) {
            uint8_t want = (i / page) % 2 ? 0 : pat(i % page, 77);
            if (dst_buf[i] != want) { printf("full: byte %zu wrong\n", i); exit(1); }
        }
    }
    printf("full index: %zu shared ranges mapped\n", pages);
    if (munmap(base, 2 * pages * page + span)) die("munmap");
    close(fd);
    fd = memfd(2 * MiB);
    uint8_t *p = map(NULL, 2 * MiB, MAP_SHARED, fd);
    roundtrip(p, 2 * MiB, 1, "after the index emptied");
    munmap(p, 2 * MiB);
    close(fd);
}

/* Threads: mappers map and unmap shared and private memory (MAP_FIXED
   over their own mappings too) while copiers move bytes between private
   buffers and a shared region of their own, checking every byte. */
static atomic_int stop_mapping, failures;

static void *mapper(void *arg) {
    uint32_t x = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
    int fd = memfd(2 * MiB);
    while (!stop_mapping) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        size_t n = ((x % 8) + 1) * 256 * KiB;
        int shared = x & 1;
        uint8_t *p = mmap(NULL, n, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS,
                          shared ? fd : -1, 0);
        if (p == MAP_FAILED) die("mmap (mapper)");
        p[n - 1] = (uint8_t)x;
        if (x & 2) {
            /* Replace it in place with the other kind. */
            void *r = mmap(p, n, PROT_READ | PROT_WRITE,
                           MAP_FIXED | (shared ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED), shared ? -1 : fd, 0);
            if (r != p) die("mmap MAP_FIXED (mapper)");
        }
        if (x & 4) {
            uint8_t *q = mremap(p, n, n + 256 * KiB, MREMAP_MAYMOVE);
            if (q == MAP_FAILED) die("mremap (mapper)");
            p = q;
            n += 256 * KiB;
        }
        if (munmap(p, n)) die("munmap (mapper)");
    }
    close(fd);
    return NULL;
}

struct copier {
    int id, rounds;
    uint8_t *region, *src, *dst;
};

static void *copier(void *arg) {
    struct copier *c = arg;
    size_t n = 1 * MiB;
    for (int r = 0; r < c->rounds; r++) {
        uint32_t seed = (uint32_t)(c->id * 100000 + r);
        fill(c->src, n, seed);
        memcpy(c->region, c->src, n);
        memcpy(c->dst, c->region, n);
        memcpy(c->src, c->dst, n); /* private to private */
        if (check(c->dst, n, seed) >= 0 || check(c->src, n, seed) >= 0) failures++;
    }
    return NULL;
}

static void threads(void) {
    enum { MAPPERS = 3, COPIERS = 3, ROUNDS = 300 };
    pthread_t m[MAPPERS], c[COPIERS];
    struct copier cs[COPIERS];
    /* The copiers' regions are mapped first: a shared mmap racing with
       many unmaps may be left out of the index (counted as raced), which
       would make the expected counts below wrong, not the bytes. */
    for (int i = 0; i < COPIERS; i++)
        cs[i] = (struct copier){i, ROUNDS, map(NULL, MiB, MAP_SHARED | MAP_ANONYMOUS, -1), map_or_die(MiB),
                                map_or_die(MiB)};
    for (int i = 0; i < MAPPERS; i++) pthread_create(&m[i], NULL, mapper, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < COPIERS; i++) pthread_create(&c[i], NULL, copier, &cs[i]);
    for (int i = 0; i < COPIERS; i++) pthread_join(c[i], NULL);
    stop_mapping = 1;
    for (int i = 0; i < MAPPERS; i++) pthread_join(m[i], NULL);
    if (failures) { printf("threads: %d rounds had wrong bytes\n", failures); exit(1); }
    shm_calls += 2 * COPIERS * ROUNDS;
    shm_bytes += 2 * COPIERS * ROUNDS * MiB;
    memcpy_calls += COPIERS * ROUNDS;
    memcpy_bytes += COPIERS * ROUNDS * MiB;
    printf("threads: %d copiers x %d rounds, bytes exact\n", COPIERS, ROUNDS);
}

/* A timer signal whose handler maps and unmaps shared and private memory,
   interrupting the main thread's own mapping calls (and the library's
   index updates inside them) at random points; then copies, and a private
   mapping where a shared one was. */
static atomic_long handler_maps;

static void on_timer(int sig) {
    (void)sig;
    int saved = errno;
    void *p = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        ((volatile uint8_t *)p)[0] = 1;
        munmap(p, 64 * KiB);
    }
    p = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) munmap(p, 64 * KiB);
    handler_maps++;
    errno = saved;
}

static void signals(void) {
    struct sigaction sa = {.sa_handler = on_timer, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL)) die("sigaction");
    struct itimerval every = {{0, 100}, {0, 100}}, off = {{0, 0}, {0, 0}};
    if (setitimer(ITIMER_REAL, &every, NULL)) die("setitimer");
    int fd = memfd(MiB);
    for (int i = 0; i < 20000; i++) {
        uint8_t *p = mmap(NULL, MiB, PROT_READ | PROT_WRITE, i % 2 ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS,
                          i % 2 ? fd : -1, 0);
        if (p == MAP_FAILED) die("mmap");
        p[i % MiB] = 1;
        if (munmap(p, MiB)) die("munmap");
    }
    setitimer(ITIMER_REAL, &off, NULL);
    uint8_t *a = map(NULL, 4 * MiB, MAP_SHARED, fd);
    roundtrip(a, 1 * MiB, 1, "shared, after the signals");
    if (munmap(a, 4 * MiB)) die("munmap");
    map_private_again_at(a, 4 * MiB);
    roundtrip(a, 4 * MiB, 0, "private where it was");
    munmap(a, 4 * MiB);
    close(fd);
    printf("signals: the handler ran %s\n", handler_maps > 100 ? "often" : "rarely");
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: shm_regions SCENARIO\n"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    src_buf = map_or_die(8 * MiB);
    dst_buf = map_or_die(8 * MiB);
    /* Warm-up: the library's threads (copy workers, stats writer) start on
       its first large copy, and stdout's buffer on the first printf; done
       now, their mappings cannot land in a range a scenario unmaps and
       maps again. One shm copy, counted. */
    uint8_t *w = map(NULL, MiB, MAP_SHARED | MAP_ANONYMOUS, -1);
    memcpy(w, src_buf, MiB);
    counted(1, MiB);
    munmap(w, MiB);
    printf("%s\n", argv[1]);
    const char *s = argv[1];
    if (!strcmp(s, "posix")) posix();
    else if (!strcmp(s, "memfd")) memfd_scenario();
    else if (!strcmp(s, "devshm")) devshm();
    else if (!strcmp(s, "anon")) anon();
    else if (!strcmp(s, "private")) private_scenario();
    else if (!strcmp(s, "disk")) disk();
    else if (!strcmp(s, "fixed")) fixed();
    else if (!strcmp(s, "partial")) partial();
    else if (!strcmp(s, "mremap")) mremap_scenario();
    else if (!strcmp(s, "full")) full();
    else if (!strcmp(s, "threads")) threads();
    else if (!strcmp(s, "signals")) signals();
    else { fprintf(stderr, "unknown scenario %s\n", s); return 2; }
    printf("expect shm %zu %zu memcpy %zu %zu\n", (size_t)shm_calls, (size_t)shm_bytes, (size_t)memcpy_calls,
           (size_t)memcpy_bytes);
    return 0;
}
