#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));
struct bpf_map;
struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

__u8 obj[1024];
char out[4096];
__u32 type_id;
__u64 flags;
/* all in .bss: 0 means the whole buffer / sizeof(struct btf_ptr), others are taken
 * modulo those sizes */
__u32 out_size;
__u32 ptr_size;
__u64 addr;
long ret;

SEC("syscall")
int show(void *ctx)
{
	struct btf_ptr p = {};
	__u32 n = out_size, ps = ptr_size;

	p.ptr = addr ? (void *)addr : obj;
	p.type_id = type_id;
	n &= sizeof(out) - 1;
	if (!n)
		n = sizeof(out);
	ps &= sizeof(p) - 1;
	if (!ps)
		ps = sizeof(p);
	ret = bpf_snprintf_btf(out, n, &p, ps, flags);
	return 0;
}

SEC("iter/bpf_map")
int seq_show(struct bpf_iter__bpf_map *ctx)
{
	struct btf_ptr p = {};

	if (!ctx->map || ctx->meta->seq_num)
		return 0;
	p.ptr = addr ? (void *)addr : obj;
	p.type_id = type_id;
	ret = bpf_seq_printf_btf(ctx->meta->seq, &p, sizeof(p), flags);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
