// SPDX-License-Identifier: GPL-2.0
/* bench/ringbuf.py's reference: libbpf's ring_buffer__poll draining a pinned kernel
 * ring buffer of N records; prints the records read and the seconds it took. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static long count;

static int on_record(void *ctx, void *data, size_t size)
{
	count++;
	return 0;
}

int main(int argc, char **argv)
{
	struct timespec a, b;
	struct ring_buffer *rb;
	long n;
	int fd;

	if (argc != 3)
		return 2;
	n = atol(argv[2]);
	fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		perror("bpf_obj_get");
		return 1;
	}
	rb = ring_buffer__new(fd, on_record, NULL, NULL);
	if (!rb)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &a);
	while (count < n) {
		int r = ring_buffer__poll(rb, 0);

		if (r < 0)
			return 1;
		if (r == 0)
			break;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%ld %.9f\n", count, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	ring_buffer__free(rb);
	return 0;
}
