#!/usr/bin/env python3
"""Regenerate src/ebee/uapi.py from the kernel's own definitions.

The enums (commands, map/program/attach/link types, helper ids, flags) are read
from the running kernel's BTF, dumped as C by bpftool:

    bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h
    python3 tools/gen_uapi.py vmlinux.h > src/ebee/uapi.py

The instruction-encoding macros of bpf_common.h / bpf.h are #defines, which BTF
does not carry; they live in DEFINES below and tests/test_uapi.py checks them
against /usr/include/linux/bpf.h where that header exists.
"""
from __future__ import annotations

import re
import sys

# Named uapi enums we export, as (C enum name, Python class name, prefix to strip).
NAMED = [
    ("bpf_cmd", "Cmd", "BPF_"),
    ("bpf_map_type", "MapType", "BPF_MAP_TYPE_"),
    ("bpf_prog_type", "ProgType", "BPF_PROG_TYPE_"),
    ("bpf_attach_type", "AttachType", "BPF_"),
    ("bpf_link_type", "LinkType", "BPF_LINK_TYPE_"),
    ("bpf_func_id", "FuncId", "BPF_FUNC_"),
    ("bpf_stats_type", "StatsType", "BPF_STATS_"),
    ("xdp_action", "XdpAction", "XDP_"),
    ("sk_action", "SkAction", "SK_"),
    ("bpf_ret_code", "RetCode", "BPF_"),
    ("bpf_adj_room_mode", "AdjRoomMode", "BPF_ADJ_ROOM_"),
    ("bpf_hdr_start_off", "HdrStartOff", "BPF_HDR_START_"),
    ("bpf_lwt_encap_mode", "LwtEncapMode", "BPF_LWT_ENCAP_"),
    ("bpf_task_fd_type", "TaskFdType", "BPF_FD_TYPE_"),
    ("bpf_perf_event_type", "PerfEventType", "BPF_PERF_EVENT_"),
    ("bpf_addr_space_cast", "AddrSpaceCast", "BPF_ADDR_SPACE_"),
    ("bpf_cond_pseudo_jmp", "CondPseudoJmp", "BPF_"),
    ("btf_func_linkage", "BtfFuncLinkage", "BTF_FUNC_"),
    ("bpf_core_relo_kind", "CoreReloKind", "BPF_CORE_"),
    ("perf_type_id", "PerfType", "PERF_TYPE_"),
    ("perf_sw_ids", "PerfSwId", "PERF_COUNT_SW_"),
    ("perf_hw_id", "PerfHwId", "PERF_COUNT_HW_"),
    ("perf_event_sample_format", "PerfSample", "PERF_SAMPLE_"),
    ("perf_event_type", "PerfRecord", "PERF_RECORD_"),
]

# Anonymous uapi enums exported as classes, as (first member, Python class name, prefix to
# strip); members outside the prefix (NR_BTF_KINDS) are left out.
ANON_NAMED = [
    ("BTF_KIND_UNKN", "BtfKind", "BTF_KIND_"),
    ("BTF_VAR_STATIC", "BtfVarLinkage", "BTF_VAR_"),
]

# Anonymous enums whose members are kernel-internal, not uapi.
SKIP_ANON = {"BPF_MAX_TRAMP_LINKS", "BPF_SKEL_KERNEL", "BPF_STREAM_MAX_CAPACITY",
             "TCP_BPF_IPV4", "TCP_BPF_BASE"}

DEFINES = '''\
# --- instruction encoding (include/uapi/linux/bpf_common.h, bpf.h) ---
# instruction classes
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07
# load/store sizes
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18
# load/store modes
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xc0
# ALU operations
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xa0
BPF_MOV = 0xb0
BPF_ARSH = 0xc0
BPF_END = 0xd0
# operand source
BPF_K = 0x00
BPF_X = 0x08
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08
# jump operations
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xa0
BPF_JLE = 0xb0
BPF_JSLT = 0xc0
BPF_JSLE = 0xd0
BPF_JCOND = 0xe0
# atomic operations (in imm)
BPF_FETCH = 0x01
BPF_XCHG = 0xe0 | BPF_FETCH
BPF_CMPXCHG = 0xf0 | BPF_FETCH
BPF_LOAD_ACQ = 0x100
BPF_STORE_REL = 0x110
# src_reg of BPF_LD | BPF_IMM | BPF_DW
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
# src_reg of BPF_JMP | BPF_CALL
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2
# --- limits ---
BPF_MAXINSNS = 4096                  # unprivileged program size
BPF_COMPLEXITY_LIMIT_INSNS = 1000000 # privileged size / processed insns
MAX_BPF_STACK = 512
MAX_CALL_FRAMES = 8
MAX_TAIL_CALL_CNT = 33
MAX_BPF_REG = 11
MAX_BPF_FUNC_ARGS = 12               # include/linux/bpf.h: arguments of a traced kernel function
BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8
BPF_BUILD_ID_SIZE = 20
# --- BPF_PROG_LOAD prog_flags ---
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6
BPF_F_TEST_REG_INVARIANTS = 1 << 7
BPF_F_TOKEN_FD = 1 << 16
# --- BPF_PROG_ATTACH flags ---
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_LINK = 1 << 13
# --- BPF_PROG_TEST_RUN flags ---
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2
BPF_F_QUERY_EFFECTIVE = 1 << 0
# --- BTF (include/uapi/linux/btf.h) ---
BTF_MAGIC = 0xeB9F
BTF_VERSION = 1
BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2
# bpf_snprintf_btf() / bpf_seq_printf_btf() flags (enum in include/uapi/linux/bpf.h)
BTF_F_COMPACT = 1 << 0
BTF_F_NONAME = 1 << 1
BTF_F_PTR_RAW = 1 << 2
BTF_F_ZERO = 1 << 3
# --- perf_event_open(2) (include/uapi/linux/perf_event.h) ---
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_EVENT_IOC_QUERY_BPF = 0xc008240a
# --- sockets (include/uapi/asm-generic/socket.h, linux/if_ether.h) ---
SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27
ETH_P_ALL = 0x0003
# --- namespaces (include/uapi/linux/sched.h) ---
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
# --- mounts (include/uapi/linux/mount.h, sys/mount.h) ---
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
# --- netlink (include/uapi/linux/netlink.h, rtnetlink.h) ---
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200
NLM_F_CAPPED = 0x100
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 1 << 15
NLA_ALIGNTO = 4
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46
# --- XDP on a device (include/uapi/linux/if_link.h) ---
IFLA_IFNAME = 3
IFLA_XDP = 43
IFLA_XDP_FD = 1
IFLA_XDP_ATTACHED = 2
IFLA_XDP_FLAGS = 3
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
IFLA_XDP_HW_PROG_ID = 7
IFLA_XDP_EXPECTED_FD = 8
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2
XDP_ATTACHED_HW = 3
XDP_ATTACHED_MULTI = 4
# --- tc (include/uapi/linux/rtnetlink.h, pkt_sched.h, pkt_cls.h) ---
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_TAG = 10
TCA_BPF_ID = 11
TCA_BPF_FLAG_ACT_DIRECT = 1 << 0
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
TC_H_CLSACT = TC_H_INGRESS
TC_H_MIN_INGRESS = 0xFFF2
TC_H_MIN_EGRESS = 0xFFF3
TC_H_MAJ_MASK = 0xFFFF0000
TC_H_MIN_MASK = 0x0000FFFF
# --- packets and test runs (linux/if_ether.h, in.h, socket.h, pkt_cls.h, filter.h, net/xdp.h) ---
ETH_ALEN = 6
ETH_HLEN = 14
ETH_P_802_3_MIN = 0x0600
ETH_P_802_3 = 0x0001
ETH_P_802_2 = 0x0004
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IPV6 = 0x86DD
ETH_P_MPLS_UC = 0x8847
AF_INET = 2
AF_INET6 = 10
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3
TC_ACT_UNSPEC = -1
TC_ACT_OK = 0
TC_ACT_RECLASSIFY = 1
TC_ACT_SHOT = 2
TC_ACT_PIPE = 3
TC_ACT_STOLEN = 4
TC_ACT_QUEUED = 5
TC_ACT_REPEAT = 6
TC_ACT_REDIRECT = 7
TC_ACT_TRAP = 8
XDP_PACKET_HEADROOM = 256
SKF_AD_OFF = -0x1000
SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
# classic BPF (include/uapi/linux/filter.h, bpf_common.h)
BPF_MISC = 0x07
BPF_RET = 0x06
BPF_LEN = 0x80
BPF_MSH = 0xa0
BPF_A = 0x10
BPF_TAX = 0x00
BPF_TXA = 0x80
BPF_MEMWORDS = 16
BPF_MAXINSNS_CLASSIC = 4096         # BPF_MAXINSNS for SO_ATTACH_FILTER programs
SKF_AD_PROTOCOL = 0
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
SKF_AD_NLATTR = 12
SKF_AD_NLATTR_NEST = 16
SKF_AD_MARK = 20
SKF_AD_QUEUE = 24
SKF_AD_HATYPE = 28
SKF_AD_RXHASH = 32
SKF_AD_CPU = 36
SKF_AD_ALU_XOR_X = 40
SKF_AD_VLAN_TAG = 44
SKF_AD_VLAN_TAG_PRESENT = 48
SKF_AD_PAY_OFFSET = 52
SKF_AD_RANDOM = 56
SKF_AD_VLAN_TPID = 60
SKF_AD_MAX = 64
# --- maps and helpers: kernel-internal limits user space observes (kernel/bpf/*.c) ---
ENOTSUPP = 524                      # include/linux/errno.h; returned by bpf() for unsupported ops
PCPU_MIN_UNIT_SIZE = 32 << 10       # bound on a per-CPU value
KMALLOC_MAX_SIZE = 1 << 22          # x86-64: 1 << (MAX_PAGE_ORDER + PAGE_SHIFT)
INT_MAX = (1 << 31) - 1            # include/linux/limits.h; bound on a map value_size
LPM_DATA_SIZE_MAX = 256
LPM_DATA_SIZE_MIN = 1
PERF_MAX_STACK_DEPTH = 127
TASK_COMM_LEN = 16
MAX_TRACE_PRINTK_VARARGS = 3
MAX_BPRINTF_VARARGS = 12
MAX_BPRINTF_BUF = 1024
BPF_LRU_LOCAL_FREE_TARGET = 128     # LOCAL_FREE_TARGET in bpf_lru_list.c
BPF_LRU_PERCPU_FREE_TARGET = 4      # PERCPU_FREE_TARGET in bpf_lru_list.c
BLOOM_DEFAULT_NR_HASH_FUNCS = 5
# bpf_local_storage.h: U16_MAX - sizeof(struct bpf_local_storage_elem) (128 on x86-64)
BPF_LOCAL_STORAGE_MAX_VALUE_SIZE = 0xFFFF - 128
BPF_ADDR_PERCPU = -1                # off of the verifier's 'mov rX = percpu address' (filter.h)
# --- kfunc flags (include/linux/btf.h) ---
KF_ACQUIRE = 1 << 0
KF_RELEASE = 1 << 1
KF_RET_NULL = 1 << 2
KF_TRUSTED_ARGS = 1 << 4
KF_SLEEPABLE = 1 << 5
KF_DESTRUCTIVE = 1 << 6
KF_RCU = 1 << 7
KF_ITER_NEW = 1 << 8
KF_ITER_NEXT = 1 << 9
KF_ITER_DESTROY = 1 << 10
KF_RCU_PROTECTED = 1 << 11
'''


def parse_enums(text: str):
    named = {}
    for m in re.finditer(r"^enum (\w+) \{\n(.*?)\n\};", text, re.S | re.M):
        named[m.group(1)] = re.findall(r"^\t(\w+) = (-?\d+)U?L?L?,", m.group(2), re.M)
    anon = []
    for m in re.finditer(r"^enum \{\n(.*?)\n\};", text, re.S | re.M):
        members = re.findall(r"^\t(\w+) = (-?\d+)U?L?L?,", m.group(1), re.M)
        names = [n for n, _ in members]
        for first, pyname, prefix in ANON_NAMED:
            if names and names[0] == first:
                named[pyname] = [(n, v) for n, v in members if n.startswith(prefix)
                                 and n != prefix + "MAX"]
        if names and all(n.startswith(("BPF_", "XDP_", "TCP_BPF")) for n in names):
            if not SKIP_ANON.intersection(names):
                anon.append(members)
    return named, anon


HELPER_NAMES = '''

def helper_name(fid: int) -> str:
    """Linux's name for a helper id (``bpf_map_lookup_elem``), or ``unknown``."""
    try:
        return "bpf_" + FuncId(fid).name
    except ValueError:
        return "unknown"


def helper_id(name: str) -> int | None:
    """The id of a helper by name, with or without the ``bpf_`` prefix."""
    try:
        return int(FuncId[name[4:] if name.startswith("bpf_") else name])
    except KeyError:
        return None'''


def main(path: str) -> None:
    named, anon = parse_enums(open(path).read())
    out = ['"""Linux BPF uapi constants, identical to include/uapi/linux/bpf.h.',
           "",
           "Generated by tools/gen_uapi.py from the kernel's BTF (enums) and the",
           "uapi headers (#defines); do not edit by hand. Every other module takes",
           'its constants from here."""',
           "from __future__ import annotations",
           "",
           "from enum import IntEnum",
           "",
           DEFINES]
    for cname, pyname, prefix in NAMED + [(py, py, pre) for _, py, pre in ANON_NAMED]:
        members = named[cname]
        out.append(f"\nclass {pyname}(IntEnum):")
        out.append(f'    """enum {cname}"""' if cname != pyname else
                   f'    """anonymous enum of {prefix}* values"""')
        seen = set()
        for name, value in members:
            if name.startswith("__") or name.startswith("MAX_"):
                continue
            short = name[len(prefix):] if name.startswith(prefix) else name
            if short == "MAX":   # perf enums' counts (PERF_TYPE_MAX ...), not values
                continue
            if short[0].isdigit():
                short = "_" + short
            if short in seen:
                continue
            seen.add(short)
            out.append(f"    {short} = {value}")
    out.append(HELPER_NAMES)
    out.append("\n\n# --- flag enums (anonymous in bpf.h) ---")
    for members in anon:
        for name, value in members:
            out.append(f"{name} = {int(value):#x}" if int(value) > 255 else f"{name} = {value}")
        out.append("")
    sys.stdout.write("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
