// SPDX-License-Identifier: GPL-2.0
/* One object whose BTF has every kind: INT (all encodings), PTR, ARRAY,
 * STRUCT (bitfields, anonymous members, packing), UNION, ENUM (signed,
 * 1-byte), ENUM64, FWD (struct and union), TYPEDEF, VOLATILE, CONST,
 * RESTRICT, FUNC, FUNC_PROTO (incl. varargs), VAR, DATASEC (.data, .bss,
 * .rodata, custom, .kconfig, .ksyms), FLOAT, DECL_TAG and TYPE_TAG -- plus a
 * BTF-defined map whose key and value are structs, for value printing.
 * Build: see Makefile. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __user __attribute__((btf_type_tag("user")))

struct fwd_only;                 /* FWD struct */
union fwd_union;                 /* FWD union */

typedef unsigned int u32_t __tag("typedef_tag");

enum color { RED, GREEN = 5, BLUE };
enum temp { COLD = -10, WARM = 20 };                      /* signed enum */
enum small { S_A, S_B } __attribute__((packed));          /* 1-byte enum */
enum wide { W_SMALL = 1, W_BIG = 0x1234567890ULL };       /* ENUM64 */
enum { ANON_CONST_A = 7, ANON_CONST_B };                  /* top-level anonymous enum */

struct bits {
	unsigned int a:3;
	int b:5;
	unsigned long long c:40;
	_Bool flag:1;
	unsigned char tail;
} __tag("struct_tag");

struct __attribute__((packed)) packed_s {
	char c;
	int i;
	short s;
};

struct padded {
	char c;
	long l;                   /* 7 bytes of implicit padding before */
	char end[3];
	int after_gap __attribute__((aligned(16)));
};

union num {
	int i;
	float f;
	double d;
	unsigned char bytes[8];
};

struct nested {
	int kind;
	union {                   /* anonymous union */
		struct {          /* anonymous struct */
			__u16 lo, hi;
		};
		__u32 both;
	};
	struct { int x, y; } point;   /* named member of anonymous type */
	int matrix[2][3];
	const volatile int cv;
	char *restrict_target;
	int __user *user_ptr;         /* TYPE_TAG */
	struct fwd_only *fwd;
	union fwd_union *fwd_u;
	int (*callback)(int, const char *) __tag("member_tag");
	int (*vararg_fn)(const char *fmt, ...);
	void (*(*fn_returning_fn)(int))(long);
	enum color color;
	enum temp temp;
	enum small small;
	enum wide wide;
	__int128 big;
	unsigned __int128 ubig;
	signed char sc;
	unsigned char uc;
	char ch;
	_Bool b;
	float fl;
	double db;
	struct bits bits;
	struct packed_s packed;
	struct padded padded;
	union num num;
	u32_t typedefed;
	int flex[];
};

struct key {
	__u32 id;
	char name[8];
};

struct value {
	__u64 count;
	enum color color;
	struct bits bits;
	int arr[3];
	void *ptr;
	char label[6];
	__s8 small_signed;
	_Bool ok;
	__int128 huge;
	enum wide wide;
	enum temp temp;
	const char *name;
	union { __u32 word; __u8 bytes[4]; } raw;   /* no float: bpftool 7.1 cannot print those */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct key);
	__type(value, struct value);
} kv SEC(".maps");

struct nested global_nested;                               /* .bss */
int initialized = 42;                                      /* .data */
const volatile int ro_config = 3;                          /* .rodata */
int custom_var SEC(".data.custom") = 1;                    /* .data.custom */
static volatile __u64 static_counter;                      /* static VAR */
extern int LINUX_KERNEL_VERSION __attribute__((section(".kconfig"), weak));
extern int bpf_kfunc_example(int x) __attribute__((section(".ksyms"), weak));
int tagged_var __tag("var_tag") = 9;

static __attribute__((noinline)) int helper_fn(int a __tag("param_tag"), int *restrict out)
{
	*out = a * 2;
	return a + 1;
}

__attribute__((noinline)) int global_fn(struct nested *n) __tag("func_tag")
{
	if (!n)
		return 0;
	return n->kind + n->matrix[1][2];
}

SEC("xdp")
int uses_everything(struct xdp_md *ctx)
{
	struct key k = { .id = 1 };
	struct value *v = bpf_map_lookup_elem(&kv, &k);
	int out = 0;

	static_counter++;
	if (v)
		v->count += helper_fn(initialized + ro_config + custom_var, &out);
	if (LINUX_KERNEL_VERSION > 0 && bpf_kfunc_example)
		out += bpf_kfunc_example(out);
	return global_fn(&global_nested) + out + tagged_var;
}

char LICENSE[] SEC("license") = "GPL";
