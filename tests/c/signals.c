/*
 * A SIGALRM handler that makes large copies, firing every 5 ms while
 * the main thread makes large copies and allocates: some signals land in the
 * middle of a copy (the library must not re-enter its engine) and some
 * outside one. Both threads check every byte.
 *
 * usage: signals [MILLISECONDS]
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include "common.h"

#define H_BYTES ((size_t)2 << 20)
static uint8_t *h_src, *h_dst;
static volatile sig_atomic_t handled, handler_bad;

static void on_alarm(int sig) {
    (void)sig;
    memcpy(h_dst, h_src, H_BYTES);
    if (check(h_dst, H_BYTES, 77) >= 0) handler_bad = 1;
    handled++;
}

int main(int argc, char **argv) {
    int ms = argc > 1 ? atoi(argv[1]) : 1000;
    h_src = map_or_die(H_BYTES);
    h_dst = map_or_die(H_BYTES);
    fill(h_src, H_BYTES, 77);
    size_t n = 8u << 20;
    uint8_t *src = map_or_die(n), *dst = map_or_die(n);
    fill(src, n, 5);
    memcpy(dst, src, n); /* the pool starts outside any handler */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 5000}, {0, 5000}};
    setitimer(ITIMER_REAL, &it, NULL);

    struct timeval start, now;
    gettimeofday(&start, NULL);
    long rounds = 0, bad = 0;
    do {
        void *junk = malloc(1 + rounds % 100000);
        /* Mostly copying, so that many signals land inside a copy; every
         * eighth round clears the destination first and checks it all. */
        if (rounds % 8 == 0) memset(dst, 0, n);
        memcpy(dst, src, n);
        if (rounds % 8 == 0 && check(dst, n, 5) >= 0) bad++;
        free(junk);
        rounds++;
        gettimeofday(&now, NULL);
    } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_usec - start.tv_usec) / 1000 < ms);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("%ld rounds, %d signals handled, %ld bad, handler %s\n", rounds, (int)handled, bad,
           handler_bad ? "bad" : "ok");
    return bad || handler_bad || handled == 0 ? 1 : 0;
}
