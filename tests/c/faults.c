/*
 * Faults during a large copy that the program handles itself, as garbage
 * collectors (write barriers) and lazily mapped files do: the last pages of
 * the destination are read-only, and a SIGSEGV handler makes them writable
 * and returns, so the faulting store is retried. The copy must complete.
 * The fault may happen in any thread that copies, the library's workers
 * included: the handler must run there too.
 *
 * usage: faults ROUNDS
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include "common.h"

#define N ((size_t)16 << 20)
#define PROTECTED ((size_t)4 << 20)
static uint8_t *dst;
static atomic_int faults;

static void on_segv(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)ctx;
    uint8_t *addr = info->si_addr;
    if (addr < dst || addr >= dst + N) { signal(SIGSEGV, SIG_DFL); return; }
    mprotect(dst + N - PROTECTED, PROTECTED, PROT_READ | PROT_WRITE);
    faults++;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    uint8_t *src = map_or_die(N);
    dst = map_or_die(N);
    for (int r = 0; r < rounds; r++) {
        fill(src, N, (uint32_t)r);
        memset(dst, 0, N);
        mprotect(dst + N - PROTECTED, PROTECTED, PROT_READ);
        memcpy(dst, src, N);
        if (check(dst, N, (uint32_t)r) >= 0) { printf("round %d: wrong bytes\n", r); return 1; }
    }
    /* Several threads may fault on the same page at once: at least one
     * fault per round, maybe more. */
    if (faults < rounds) { printf("only %d faults in %d rounds\n", faults, rounds); return 1; }
    printf("%d rounds ok\n", rounds);
    return 0;
}
