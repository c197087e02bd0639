/*
 * Two ends of one stream, one of them moved apart (another uid, another pid
 * namespace) before it execs this program again: the isolation tests check
 * that the transfer is byte-exact and whether shared memory was passed.
 *
 * usage: uid_pair ROLE KIND HOW TOTAL DIR
 *   ROLE  the end the moved child takes: read | write (the parent the other)
 *   KIND  unix (a socketpair) | pipe | fifo (DIR/fifo, opened by path)
 *   HOW   same   the child stays as it is (the control)
 *         nobody the child drops to uid and gid 65534 before its exec
 *         pidns  the child's child runs in a new pid namespace, same uid
 *   TOTAL bytes to send, written and read 1 MiB at a time
 * internal: uid_pair child ROLE KIND FD|PATH TOTAL
 *
 * Each end prints, before it closes its end,
 *   ROLE: N bytes ok memfd_fds F memfd_maps M modes [MODE/SEALS,...] others_opened K uid U
 * F and M count the memfds it holds and maps (a ring), MODE/SEALS are each
 * held memfd's permission bits (octal) and seals (hex), K how many of them
 * a process of uid 65534 could open through /proc/PID/fd (checked as root).
 * A wrong byte prints BAD; the parent exits 0 when both ends were exact.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "common.h"

static const uint32_t SEED = 0x1501;
static const size_t PIECE = 1u << 20;

/* Whether a process of uid 65534 can open /proc/PID/fd/FD (forks one). */
static int nobody_can_open(pid_t pid, int fd) {
    pid_t child = fork();
    if (child == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
        if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) _exit(2);
        _exit(open(path, O_RDONLY) >= 0 ? 1 : 0);
    }
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) && WEXITSTATUS(st) == 1;
}

/* The memfds this process holds (each as "MODE/SEALS", and whether uid
   65534 could open it, when we are root) and maps. */
static void memfds(int *fds, int *maps, int *others, char *modes, size_t cap) {
    *fds = *maps = *others = 0;
    modes[0] = 0;
    char link[64], target[256];
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0 || (target[n] = 0, strncmp(target, "/memfd:", 7) != 0)) continue;
        (*fds)++;
        struct stat st;
        if (fstat(fd, &st) == 0) {
            size_t used = strlen(modes);
            snprintf(modes + used, cap - used, "%s%o/%x", used ? "," : "", st.st_mode & 07777, fcntl(fd, F_GET_SEALS));
        }
        if (geteuid() == 0) *others += nobody_can_open(getpid(), fd);
    }
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strstr(line, "/memfd:")) (*maps)++;
    fclose(f);
}

static int report(const char *role, size_t n, int ok) {
    int fds, maps, others;
    char modes[256];
    memfds(&fds, &maps, &others, modes, sizeof modes);
    printf("%s: %zu bytes %s memfd_fds %d memfd_maps %d modes [%s] others_opened %d uid %u\n", role, n,
           ok ? "ok" : "BAD", fds, maps, modes, others, geteuid());
    fflush(stdout);
    return ok ? 0 : 1;
}

static int reader(int fd, size_t total) {
    uint8_t *buf = map_or_die(PIECE);
    struct stream_check s = {SEED, 0, 0};
    for (;;) {
        ssize_t r = read(fd, buf, PIECE);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { perror("read"); return 1; }
        if (r == 0) break;
        stream_verify(&s, buf, (size_t)r);
    }
    int rc = report("read", s.checked, !s.bad && s.checked == total);
    close(fd);
    return rc;
}

static int writer(int fd, size_t total) {
    uint8_t *buf = map_or_die(PIECE);
    size_t sent = 0;
    while (sent < total) {
        size_t n = total - sent < PIECE ? total - sent : PIECE;
        for (size_t i = 0; i < n; i++) buf[i] = pat(sent + i, SEED);
        for (size_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { perror("write"); return 1; }
            off += (size_t)w;
        }
        sent += n;
    }
    int rc = report("write", sent, 1);
    close(fd);
    return rc;
}

static int open_end(const char *kind, const char *where, int read_end) {
    if (strcmp(kind, "fifo") != 0) return atoi(where);
    int fd = open(where, read_end ? O_RDONLY : O_WRONLY);
    if (fd < 0) perror(where);
    return fd;
}

static int end(const char *role, const char *kind, const char *where, size_t total) {
    int read_end = strcmp(role, "read") == 0;
    int fd = open_end(kind, where, read_end);
    if (fd < 0) return 1;
    return read_end ? reader(fd, total) : writer(fd, total);
}

static void become(const char *how) {
    if (strcmp(how, "nobody") == 0) {
        if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) {
            perror("dropping to nobody");
            _exit(3);
        }
    } else if (strcmp(how, "pidns") == 0) {
        if (unshare(CLONE_NEWPID)) { perror("unshare"); _exit(3); }
        pid_t inner = fork(); /* the first child of a new namespace is its pid 1 */
        if (inner < 0) { perror("fork"); _exit(3); }
        if (inner > 0) {
            int st;
            while (waitpid(inner, &st, 0) < 0 && errno == EINTR) {}
            _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 4);
        }
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 6 && strcmp(argv[1], "child") == 0) return end(argv[2], argv[3], argv[4], strtoull(argv[5], 0, 0));
    if (argc != 6) { fprintf(stderr, "usage: see the comment at the top of uid_pair.c\n"); return 2; }
    const char *role = argv[1], *kind = argv[2], *how = argv[3], *dir = argv[5];
    size_t total = strtoull(argv[4], 0, 0);
    int child_reads = strcmp(role, "read") == 0;
    int mine = -1, theirs = -1;
    char where[512];
    if (strcmp(kind, "unix") == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) { perror("socketpair"); return 2; }
        mine = sv[0], theirs = sv[1];
    } else if (strcmp(kind, "pipe") == 0) {
        int p[2];
        if (pipe(p)) { perror("pipe"); return 2; }
        mine = child_reads ? p[1] : p[0];
        theirs = child_reads ? p[0] : p[1];
    } else if (strcmp(kind, "fifo") == 0) {
        snprintf(where, sizeof where, "%s/fifo", dir);
        if (mkfifo(where, 0600) || chmod(where, 0666)) { perror("mkfifo"); return 2; }
    } else {
        fprintf(stderr, "unknown kind %s\n", kind);
        return 2;
    }
    if (theirs >= 0) snprintf(where, sizeof where, "%d", theirs);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        if (mine >= 0) close(mine);
        become(how);
        char *args[] = {argv[0], "child", (char *)role, (char *)kind, where, argv[4], NULL};
        execv(argv[0], args);
        perror("execv");
        _exit(3);
    }
    if (theirs >= 0) close(theirs);
    if (mine >= 0) snprintf(where, sizeof where, "%d", mine);
    int rc = end(child_reads ? "write" : "read", kind, where, total);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("child ended with status %#x\n", st);
        rc = 1;
    }
    return rc;
}
