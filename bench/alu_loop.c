/* (a) in C, compiled with gcc -O2 at bench time: the physical limit for the
 * ALU loop of jit_progs.c (same arithmetic, same seed).  Timed in thread CPU
 * time, as ebee's batch runs are and as the kernel's test-run timer (which
 * stops while the task is rescheduled) effectively is. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) uint64_t alu_loop(uint64_t x)
{
	uint64_t acc = 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < 1000; i++) {
		acc += x * (uint64_t)i;
		acc ^= acc >> 7;
		acc = (acc << 3) | (acc >> 61);
		x += (acc & 0xff) | 1;
	}
	return (acc ^ x) & 1;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	volatile uint64_t len = 64, sink = 0;
	struct timespec a, b;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	for (long k = 0; k < n; k++)
		sink += alu_loop(len);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	printf("%.3f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	return (int)(sink & 0);
}
