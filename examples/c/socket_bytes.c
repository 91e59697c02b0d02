// SPDX-License-Identifier: GPL-2.0
/* Socket filter: count bytes per IP protocol (like the kernel's sockex1),
 * accepting every packet. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/if_packet.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);	/* IP protocol number */
	__type(value, __u64);	/* bytes */
} proto_bytes SEC(".maps");

SEC("socket")
int socket_bytes(struct __sk_buff *skb)
{
	__u8 proto;
	__u32 key;
	__u64 *bytes;

	if (skb->pkt_type == PACKET_OUTGOING)
		return skb->len;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, protocol), &proto, 1) < 0)
		return skb->len;
	key = proto;
	bytes = bpf_map_lookup_elem(&proto_bytes, &key);
	if (bytes)
		__sync_fetch_and_add(bytes, skb->len);
	return skb->len;
}

char LICENSE[] SEC("license") = "GPL";
