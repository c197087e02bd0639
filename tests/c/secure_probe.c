/*
 * Run set-user-ID or with a file capability (AT_SECURE) and without, under
 * the library preloaded from a trusted directory. Prints
 *   secure S          getauxval(AT_SECURE)
 *   memcpy from LIB   the object whose memcpy the program calls
 *   copies ok         after three checked 8 MiB copies
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/auxv.h>
#include "common.h"

int main(void) {
    Dl_info info = {0};
    void *m = dlsym(RTLD_DEFAULT, "memcpy");
    printf("secure %lu\n", getauxval(AT_SECURE));
    printf("memcpy from %s\n", m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "?");
    size_t n = 8u << 20;
    uint8_t *src = map_or_die(n), *dst = map_or_die(n);
    fill(src, n, 5);
    for (int i = 0; i < 3; i++) {
        memcpy(dst, src, n);
        if (check(dst, n, 5) >= 0) { printf("copy %d differs\n", i); return 1; }
    }
    printf("copies ok\n");
    return 0;
}
