// A lirc_mode2 decoder of the NEC infrared protocol, as the kernel's ir-nec-decoder
// decodes it: a 9 ms pulse and 4.5 ms space lead 32 bits (address, ~address, command,
// ~command, least significant bit first), each a 562.5 us pulse then a 562.5 us (0)
// or 1687.5 us (1) space, and a final pulse.  A 9 ms pulse, 2.25 ms space and a pulse
// is a repeat.  Scancodes and protocols (enum rc_proto, linux/lirc.h) are the kernel's.
#include <linux/bpf.h>
#include <linux/lirc.h>
#include <bpf/bpf_helpers.h>

enum { IDLE, LEADER_SPACE, BIT_PULSE, BIT_SPACE, REPEAT_PULSE };

struct nec_state {
	__u32 state;
	__u32 bits;
	__u32 count;
	__u32 keys;		/* frames decoded */
	__u32 repeats;
	__u32 errors;		/* frames abandoned on a sample out of place */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nec_state);
} nec SEC(".maps");

/* within 25% of the nominal duration (microseconds) */
static int near(__u32 us, __u32 nominal)
{
	return us * 4 > nominal * 3 && us * 4 < nominal * 5;
}

static void emit(unsigned int *sample, __u32 bits)
{
	__u32 addr = bits & 0xff, naddr = (bits >> 8) & 0xff;
	__u32 cmd = (bits >> 16) & 0xff, ncmd = bits >> 24;

	if ((cmd ^ ncmd) != 0xff)
		bpf_rc_keydown(sample, RC_PROTO_NEC32,
			       addr << 24 | naddr << 16 | cmd << 8 | ncmd, 0);
	else if ((addr ^ naddr) != 0xff)
		bpf_rc_keydown(sample, RC_PROTO_NECX, addr << 16 | naddr << 8 | cmd, 0);
	else
		bpf_rc_keydown(sample, RC_PROTO_NEC, addr << 8 | cmd, 0);
}

SEC("lirc_mode2")
int nec_decode(unsigned int *sample)
{
	__u32 v = *sample, us = v & LIRC_VALUE_MASK, k = 0;
	int pulse = LIRC_IS_PULSE(v);
	struct nec_state *s = bpf_map_lookup_elem(&nec, &k);

	if (!s)
		return 0;
	if (!pulse && !LIRC_IS_SPACE(v)) {	/* timeout, overflow, frequency */
		s->state = IDLE;
		return 0;
	}
	switch (s->state) {
	case IDLE:
		if (pulse && near(us, 9000))
			s->state = LEADER_SPACE;
		return 0;
	case LEADER_SPACE:
		if (!pulse && near(us, 4500)) {
			s->state = BIT_PULSE;
			s->bits = 0;
			s->count = 0;
			return 0;
		}
		if (!pulse && near(us, 2250)) {
			s->state = REPEAT_PULSE;
			return 0;
		}
		break;
	case REPEAT_PULSE:
		if (pulse && near(us, 562)) {
			bpf_rc_repeat(sample);
			s->repeats++;
			s->state = IDLE;
			return 0;
		}
		break;
	case BIT_PULSE:
		if (pulse && near(us, 562)) {
			if (s->count == 32) {
				emit(sample, s->bits);
				s->keys++;
				s->state = IDLE;
			} else {
				s->state = BIT_SPACE;
			}
			return 0;
		}
		break;
	case BIT_SPACE:
		if (!pulse && (near(us, 562) || near(us, 1687))) {
			if (near(us, 1687))
				s->bits |= 1u << (s->count & 31);
			s->count++;
			s->state = BIT_PULSE;
			return 0;
		}
		break;
	}
	s->errors++;
	s->state = (pulse && near(us, 9000)) ? LEADER_SPACE : IDLE;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
