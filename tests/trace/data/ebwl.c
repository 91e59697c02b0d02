/* The parity workload: deterministic calls (uprobe targets) and system calls.
 *   ebwl N       N rounds of ebwl_target/square/str/neg, a getpid() each; then
 *                three failing openat()s and five write()s to /dev/null
 *   ebwl N sys   N getpid() calls only (the output-path benchmark) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((noinline)) int ebwl_target(int a, int b) { __asm__ volatile(""); return a + b; }
__attribute__((noinline)) long ebwl_square(long x) { __asm__ volatile(""); return x * x; }
__attribute__((noinline)) int ebwl_str(const char *s) { __asm__ volatile(""); return (int)strlen(s); }
__attribute__((noinline)) int ebwl_neg(int x) { __asm__ volatile(""); return -x; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    char buf[64];
    if (argc > 2 && argv[2][0] == 's') {        /* "sys": n getpid() calls, nothing else */
        for (int i = 0; i < n; i++)
            syscall(SYS_getpid);
        return 0;
    }
    long acc = 0;
    for (int i = 1; i <= n; i++) {
        acc += ebwl_target(i, i * 2);
        acc += ebwl_square(i);
        snprintf(buf, sizeof buf, "item-%d", i % 4);
        acc += ebwl_str(buf);
        acc += ebwl_neg(i);
        syscall(SYS_getpid);
    }
    for (int i = 0; i < 3; i++) {
        int fd = open("/tmp/ebwl-does-not-exist", O_RDONLY);
        if (fd >= 0) close(fd);
    }
    int fd = open("/dev/null", O_WRONLY);
    for (int i = 1; i <= 5; i++) write(fd, buf, i * 3);
    close(fd);
    return (int)(acc & 1);
}
