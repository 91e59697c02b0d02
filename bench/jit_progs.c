// SPDX-License-Identifier: GPL-2.0
/* Workloads of bench/jit.py, compiled with clang at bench time and run, from the
 * same object, by ebee's JIT, ebee's interpreter and the kernel's JIT. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define ALU_ITERS 1000
#define HASH_KEYS 16
#define HELPER_ROUNDS 8

/* (a) an ALU-heavy bounded loop; the seed comes from the packet length so
 * nothing folds to a constant at compile time */
SEC("xdp")
int alu_loop(struct xdp_md *ctx)
{
	__u64 x = ctx->data_end - ctx->data;
	__u64 acc = 0x9e3779b97f4a7c15ULL;

	for (int i = 0; i < ALU_ITERS; i++) {
		acc += x * (__u64)i;
		acc ^= acc >> 7;
		acc = (acc << 3) | (acc >> 61);
		x += (acc & 0xff) | 1;
	}
	return (acc ^ x) & 1 ? XDP_PASS : XDP_DROP;
}

/* (c) a hash-map-heavy counter: 16 lookups (and atomic adds) per run */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int hash_count(struct xdp_md *ctx)
{
	__u32 base = ctx->data_end - ctx->data;

	for (int i = 0; i < HASH_KEYS; i++) {
		__u32 key = base + i;
		__u64 *v = bpf_map_lookup_elem(&counts, &key);

		if (v) {
			__sync_fetch_and_add(v, 1);
		} else {
			__u64 one = 1;

			bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
		}
	}
	return XDP_PASS;
}

/* (d) helper-heavy: clocks, random numbers, CPU id and per-CPU counters */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

SEC("xdp")
int helpers(struct xdp_md *ctx)
{
	__u64 acc = 0;

	for (int i = 0; i < HELPER_ROUNDS; i++) {
		__u32 key = bpf_get_prandom_u32() & 3;
		__u64 *v;

		acc += bpf_ktime_get_ns();
		acc ^= bpf_get_smp_processor_id();
		v = bpf_map_lookup_elem(&percpu, &key);
		if (v)
			*v += 1;
	}
	return acc & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
