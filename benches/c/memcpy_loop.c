/*
 * 10^6 memcpy calls of N bytes (default 64) through the PLT: what callgrind
 * counts with and without the library in benches/hook_instructions.sh.
 */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], 0, 0) : 64;
    static char a[4096 + 1], b[4096];
    if (n > sizeof b) return 2;
    for (long i = 0; i < 1000000; i++) memcpy(a + (i & 1), b, n);
    return a[0];
}
