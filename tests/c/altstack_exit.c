/*
 * A SIGUSR1 handler running on a small alternate signal stack calls _exit:
 * the library's _exit hook must not need more stack than such a handler has.
 *
 * usage: altstack_exit
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "common.h"

static void on_usr1(int sig) { (void)sig; _exit(3); }

int main(void) {
    size_t n = 4u << 20;
    uint8_t *src = map_or_die(n), *dst = map_or_die(n);
    fill(src, n, 2);
    memcpy(dst, src, n);
    /* 16 KiB of stack above a guard page. */
    size_t size = 16u << 10;
    uint8_t *region = map_or_die(size + 4096);
    mprotect(region, 4096, PROT_NONE);
    stack_t ss = {.ss_sp = region + 4096, .ss_size = size, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    return 1;
}
