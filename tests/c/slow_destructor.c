/*
 * A shared library whose destructor takes 300 ms: loaded beside
 * libipc_offload.so, it keeps the process alive after the library wrote its
 * final stats, long enough for a periodic write to try to replace them.
 */
#include <unistd.h>

__attribute__((destructor)) static void linger(void) { usleep(300 * 1000); }
