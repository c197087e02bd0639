/*
 * Another preload that interposes memcpy, as tracing shims and malloc
 * replacements do: counts the calls that reach it, passes them on with
 * dlsym(RTLD_NEXT), and reports the count on stderr at exit. Placed after
 * libipc_offload.so in LD_PRELOAD it sees what the library passes on (its
 * fast path and its engine's part copies); placed before, it calls the
 * library. Build with -shared -fPIC -fno-builtin.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef void *(*copy_fn)(void *, const void *, size_t);
static copy_fn next;
static atomic_ulong calls;

__attribute__((constructor)) static void resolve(void) { next = (copy_fn)dlsym(RTLD_NEXT, "memcpy"); }

void *memcpy(void *dst, const void *src, size_t n) {
    calls++;
    if (next) return next(dst, src, n);
    volatile char *d = dst;
    const volatile char *s = src;
    for (size_t i = 0; i < n; i++) d[i] = s[i];
    return dst;
}

__attribute__((destructor)) static void report(void) {
    fprintf(stderr, "count_memcpy: %lu calls\n", (unsigned long)calls);
}
