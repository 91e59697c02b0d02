"""ctypes layouts of the kernel's bpf(2) and perf_event_open(2) structures.

Each bpf command's part of ``union bpf_attr`` is its own structure, laid out as
in include/uapi/linux/bpf.h of Linux 6.18 (tests/kernel/test_attrs.py checks
every offset against the running kernel's BTF).  The kernel accepts a shorter
attr than its own union and zero-fills the rest, and accepts a longer one as
long as the bytes it does not know are zero, so these layouts work on older
kernels for every field left at zero.
"""
from __future__ import annotations

import ctypes

c_u8, c_u16, c_u32, c_u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
c_s32, c_s64 = ctypes.c_int32, ctypes.c_int64


class Attr(ctypes.Structure):
    def __repr__(self) -> str:
        fields = ", ".join(f"{f[0]}={getattr(self, f[0])!r}" for f in self._fields_
                           if not f[0].startswith("_"))
        return f"{type(self).__name__}({fields})"


# --- maps -----------------------------------------------------------------------------

class MapCreateAttr(Attr):
    _fields_ = [
        ("map_type", c_u32), ("key_size", c_u32), ("value_size", c_u32), ("max_entries", c_u32),
        ("map_flags", c_u32), ("inner_map_fd", c_u32), ("numa_node", c_u32),
        ("map_name", ctypes.c_char * 16), ("map_ifindex", c_u32), ("btf_fd", c_u32),
        ("btf_key_type_id", c_u32), ("btf_value_type_id", c_u32),
        ("btf_vmlinux_value_type_id", c_u32), ("map_extra", c_u64),
        ("value_type_btf_obj_fd", c_s32), ("map_token_fd", c_s32),
    ]


class MapElemAttr(Attr):
    """MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY (``value`` is
    ``next_key`` there), MAP_LOOKUP_AND_DELETE_ELEM, MAP_FREEZE (only ``map_fd``)."""
    _fields_ = [("map_fd", c_u32), ("key", c_u64), ("value", c_u64), ("flags", c_u64)]


class MapBatchAttr(Attr):
    _fields_ = [
        ("in_batch", c_u64), ("out_batch", c_u64), ("keys", c_u64), ("values", c_u64),
        ("count", c_u32), ("map_fd", c_u32), ("elem_flags", c_u64), ("flags", c_u64),
    ]


# --- programs -------------------------------------------------------------------------

class ProgLoadAttr(Attr):
    _fields_ = [
        ("prog_type", c_u32), ("insn_cnt", c_u32), ("insns", c_u64), ("license", c_u64),
        ("log_level", c_u32), ("log_size", c_u32), ("log_buf", c_u64), ("kern_version", c_u32),
        ("prog_flags", c_u32), ("prog_name", ctypes.c_char * 16), ("prog_ifindex", c_u32),
        ("expected_attach_type", c_u32), ("prog_btf_fd", c_u32), ("func_info_rec_size", c_u32),
        ("func_info", c_u64), ("func_info_cnt", c_u32), ("line_info_rec_size", c_u32),
        ("line_info", c_u64), ("line_info_cnt", c_u32), ("attach_btf_id", c_u32),
        # attach_prog_fd for freplace/fentry on a BPF program; attach_btf_obj_fd for a
        # module's BTF (the same slot in the kernel's union)
        ("attach_prog_fd", c_u32), ("core_relo_cnt", c_u32), ("fd_array", c_u64),
        ("core_relos", c_u64), ("core_relo_rec_size", c_u32), ("log_true_size", c_u32),
        ("prog_token_fd", c_s32), ("fd_array_cnt", c_u32),
    ]


class TestRunAttr(Attr):
    _fields_ = [
        ("prog_fd", c_u32), ("retval", c_u32), ("data_size_in", c_u32), ("data_size_out", c_u32),
        ("data_in", c_u64), ("data_out", c_u64), ("repeat", c_u32), ("duration", c_u32),
        ("ctx_size_in", c_u32), ("ctx_size_out", c_u32), ("ctx_in", c_u64), ("ctx_out", c_u64),
        ("flags", c_u32), ("cpu", c_u32), ("batch_size", c_u32),
    ]


class ProgAttachAttr(Attr):
    """PROG_ATTACH / PROG_DETACH (``target_fd`` is ``target_ifindex`` for tcx)."""
    _fields_ = [
        ("target_fd", c_u32), ("attach_bpf_fd", c_u32), ("attach_type", c_u32),
        ("attach_flags", c_u32), ("replace_bpf_fd", c_u32), ("relative_fd", c_u32),
        ("expected_revision", c_u64),
    ]


class ProgQueryAttr(Attr):
    _fields_ = [
        ("target_fd", c_u32), ("attach_type", c_u32), ("query_flags", c_u32),
        ("attach_flags", c_u32), ("prog_ids", c_u64), ("count", c_u32),
        ("prog_attach_flags", c_u64), ("link_ids", c_u64), ("link_attach_flags", c_u64),
        ("revision", c_u64),
    ]


class RawTracepointAttr(Attr):
    _fields_ = [("name", c_u64), ("prog_fd", c_u32), ("cookie", c_u64)]


# --- objects: pinning, ids, info, BTF ----------------------------------------------------

class ObjAttr(Attr):
    """OBJ_PIN / OBJ_GET."""
    _fields_ = [("pathname", c_u64), ("bpf_fd", c_u32), ("file_flags", c_u32), ("path_fd", c_s32)]


class GetIdAttr(Attr):
    """*_GET_NEXT_ID (``start_id``) and *_GET_FD_BY_ID (the id in ``start_id``)."""
    _fields_ = [("start_id", c_u32), ("next_id", c_u32), ("open_flags", c_u32),
                ("fd_by_id_token_fd", c_s32)]


class InfoAttr(Attr):
    _fields_ = [("bpf_fd", c_u32), ("info_len", c_u32), ("info", c_u64)]


class BtfLoadAttr(Attr):
    _fields_ = [
        ("btf", c_u64), ("btf_log_buf", c_u64), ("btf_size", c_u32), ("btf_log_size", c_u32),
        ("btf_log_level", c_u32), ("btf_log_true_size", c_u32), ("btf_flags", c_u32),
        ("btf_token_fd", c_s32),
    ]


class EnableStatsAttr(Attr):
    _fields_ = [("type", c_u32)]


class TaskFdQueryAttr(Attr):
    _fields_ = [
        ("pid", c_u32), ("fd", c_u32), ("flags", c_u32), ("buf_len", c_u32), ("buf", c_u64),
        ("prog_id", c_u32), ("fd_type", c_u32), ("probe_offset", c_u64), ("probe_addr", c_u64),
    ]


# --- links ------------------------------------------------------------------------------

class _KprobeMulti(Attr):
    _fields_ = [("flags", c_u32), ("cnt", c_u32), ("syms", c_u64), ("addrs", c_u64),
                ("cookies", c_u64)]


class _Tracing(Attr):
    _fields_ = [("target_btf_id", c_u32), ("cookie", c_u64)]


class _Relative(Attr):
    """tcx, netkit and cgroup links: where in the chain the program goes."""
    _fields_ = [("relative_fd", c_u32), ("expected_revision", c_u64)]


class _UprobeMulti(Attr):
    _fields_ = [("path", c_u64), ("offsets", c_u64), ("ref_ctr_offsets", c_u64),
                ("cookies", c_u64), ("cnt", c_u32), ("flags", c_u32), ("pid", c_u32)]


class _Netfilter(Attr):
    _fields_ = [("pf", c_u32), ("hooknum", c_u32), ("priority", c_s32), ("flags", c_u32)]


class _Iter(Attr):
    _fields_ = [("iter_info", c_u64), ("iter_info_len", c_u32)]


class _LinkTarget(ctypes.Union):
    _fields_ = [
        ("target_btf_id", c_u32), ("iter", _Iter), ("perf_event_cookie", c_u64),
        ("kprobe_multi", _KprobeMulti), ("tracing", _Tracing), ("netfilter", _Netfilter),
        ("tcx", _Relative), ("uprobe_multi", _UprobeMulti), ("netkit", _Relative),
        ("cgroup", _Relative),
    ]


class LinkCreateAttr(Attr):
    """LINK_CREATE: ``prog_fd`` (``map_fd`` for struct_ops), ``target_fd`` (or
    ``target_ifindex``), then the per-link-type part in ``u``."""
    _fields_ = [("prog_fd", c_u32), ("target_fd", c_u32), ("attach_type", c_u32),
                ("flags", c_u32), ("u", _LinkTarget)]


class LinkUpdateAttr(Attr):
    _fields_ = [("link_fd", c_u32), ("new_prog_fd", c_u32), ("flags", c_u32),
                ("old_prog_fd", c_u32)]


class LinkDetachAttr(Attr):
    _fields_ = [("link_fd", c_u32)]


class IterCreateAttr(Attr):
    _fields_ = [("link_fd", c_u32), ("flags", c_u32)]


class ProgBindMapAttr(Attr):
    _fields_ = [("prog_fd", c_u32), ("map_fd", c_u32), ("flags", c_u32)]


# --- OBJ_GET_INFO_BY_FD results ------------------------------------------------------------

class BpfProgInfo(Attr):
    _fields_ = [
        ("type", c_u32), ("id", c_u32), ("tag", c_u8 * 8), ("jited_prog_len", c_u32),
        ("xlated_prog_len", c_u32), ("jited_prog_insns", c_u64), ("xlated_prog_insns", c_u64),
        ("load_time", c_u64), ("created_by_uid", c_u32), ("nr_map_ids", c_u32),
        ("map_ids", c_u64), ("name", ctypes.c_char * 16), ("ifindex", c_u32),
        ("gpl_compatible", c_u32, 1), ("netns_dev", c_u64), ("netns_ino", c_u64),
        ("nr_jited_ksyms", c_u32), ("nr_jited_func_lens", c_u32), ("jited_ksyms", c_u64),
        ("jited_func_lens", c_u64), ("btf_id", c_u32), ("func_info_rec_size", c_u32),
        ("func_info", c_u64), ("nr_func_info", c_u32), ("nr_line_info", c_u32),
        ("line_info", c_u64), ("jited_line_info", c_u64), ("nr_jited_line_info", c_u32),
        ("line_info_rec_size", c_u32), ("jited_line_info_rec_size", c_u32),
        ("nr_prog_tags", c_u32), ("prog_tags", c_u64), ("run_time_ns", c_u64),
        ("run_cnt", c_u64), ("recursion_misses", c_u64), ("verified_insns", c_u32),
        ("attach_btf_obj_id", c_u32), ("attach_btf_id", c_u32),
    ]


class BpfMapInfo(Attr):
    _fields_ = [
        ("type", c_u32), ("id", c_u32), ("key_size", c_u32), ("value_size", c_u32),
        ("max_entries", c_u32), ("map_flags", c_u32), ("name", ctypes.c_char * 16),
        ("ifindex", c_u32), ("btf_vmlinux_value_type_id", c_u32), ("netns_dev", c_u64),
        ("netns_ino", c_u64), ("btf_id", c_u32), ("btf_key_type_id", c_u32),
        ("btf_value_type_id", c_u32), ("btf_vmlinux_id", c_u32), ("map_extra", c_u64),
        ("hash", c_u64), ("hash_size", c_u32),
    ]


class BpfBtfInfo(Attr):
    _fields_ = [("btf", c_u64), ("btf_size", c_u32), ("id", c_u32), ("name", c_u64),
                ("name_len", c_u32), ("kernel_btf", c_u32)]


class _LinkRawTp(Attr):
    _fields_ = [("tp_name", c_u64), ("tp_name_len", c_u32), ("cookie", c_u64)]


class _LinkTracing(Attr):
    _fields_ = [("attach_type", c_u32), ("target_obj_id", c_u32), ("target_btf_id", c_u32),
                ("cookie", c_u64)]


class _LinkCgroup(Attr):
    _fields_ = [("cgroup_id", c_u64), ("attach_type", c_u32)]


class _LinkNetns(Attr):
    _fields_ = [("netns_ino", c_u32), ("attach_type", c_u32)]


class _LinkIfindex(Attr):
    _fields_ = [("ifindex", c_u32), ("attach_type", c_u32)]


class _LinkXdp(Attr):
    _fields_ = [("ifindex", c_u32)]


class _LinkStructOps(Attr):
    _fields_ = [("map_id", c_u32)]


class _LinkMap(Attr):
    _fields_ = [("map_id", c_u32), ("attach_type", c_u32)]


class _LinkKprobeMulti(Attr):
    _fields_ = [("addrs", c_u64), ("count", c_u32), ("flags", c_u32), ("missed", c_u64),
                ("cookies", c_u64)]


class _LinkUprobeMulti(Attr):
    _fields_ = [("path", c_u64), ("offsets", c_u64), ("ref_ctr_offsets", c_u64),
                ("cookies", c_u64), ("path_size", c_u32), ("count", c_u32), ("flags", c_u32),
                ("pid", c_u32)]


class _PerfUprobe(Attr):
    _fields_ = [("file_name", c_u64), ("name_len", c_u32), ("offset", c_u32), ("cookie", c_u64),
                ("ref_ctr_offset", c_u64)]


class _PerfKprobe(Attr):
    _fields_ = [("func_name", c_u64), ("name_len", c_u32), ("offset", c_u32), ("addr", c_u64),
                ("missed", c_u64), ("cookie", c_u64)]


class _PerfTracepoint(Attr):
    _fields_ = [("tp_name", c_u64), ("name_len", c_u32), ("cookie", c_u64)]


class _PerfEvent(Attr):
    _fields_ = [("config", c_u64), ("type", c_u32), ("cookie", c_u64)]


class _PerfKind(ctypes.Union):
    _fields_ = [("uprobe", _PerfUprobe), ("kprobe", _PerfKprobe),
                ("tracepoint", _PerfTracepoint), ("event", _PerfEvent)]


class _LinkPerfEvent(Attr):
    _fields_ = [("type", c_u32), ("u", _PerfKind)]


class _LinkInfoUnion(ctypes.Union):
    _fields_ = [
        ("raw_tracepoint", _LinkRawTp), ("tracing", _LinkTracing), ("cgroup", _LinkCgroup),
        ("netns", _LinkNetns), ("xdp", _LinkXdp), ("struct_ops", _LinkStructOps),
        ("netfilter", _Netfilter), ("kprobe_multi", _LinkKprobeMulti),
        ("uprobe_multi", _LinkUprobeMulti), ("perf_event", _LinkPerfEvent),
        ("tcx", _LinkIfindex), ("netkit", _LinkIfindex), ("sockmap", _LinkMap),
        # the iter member is the largest (target name, map id, cgroup/task): room for it
        ("_iter", c_u64 * 4),
    ]


class BpfLinkInfo(Attr):
    _fields_ = [("type", c_u32), ("id", c_u32), ("prog_id", c_u32), ("u", _LinkInfoUnion)]


class FuncInfoRec(Attr):
    _fields_ = [("insn_off", c_u32), ("type_id", c_u32)]


class LineInfoRec(Attr):
    _fields_ = [("insn_off", c_u32), ("file_name_off", c_u32), ("line_off", c_u32),
                ("line_col", c_u32)]


# --- perf_event_open(2) --------------------------------------------------------------------

class PerfEventAttr(Attr):
    """struct perf_event_attr (PERF_ATTR_SIZE_VER8, 136 bytes)."""
    _fields_ = [
        ("type", c_u32), ("size", c_u32), ("config", c_u64),
        ("sample_period", c_u64),            # or sample_freq with freq=1
        ("sample_type", c_u64), ("read_format", c_u64),
        ("disabled", c_u64, 1), ("inherit", c_u64, 1), ("pinned", c_u64, 1),
        ("exclusive", c_u64, 1), ("exclude_user", c_u64, 1), ("exclude_kernel", c_u64, 1),
        ("exclude_hv", c_u64, 1), ("exclude_idle", c_u64, 1), ("mmap", c_u64, 1),
        ("comm", c_u64, 1), ("freq", c_u64, 1), ("inherit_stat", c_u64, 1),
        ("enable_on_exec", c_u64, 1), ("task", c_u64, 1), ("watermark", c_u64, 1),
        ("precise_ip", c_u64, 2), ("mmap_data", c_u64, 1), ("sample_id_all", c_u64, 1),
        ("exclude_host", c_u64, 1), ("exclude_guest", c_u64, 1),
        ("exclude_callchain_kernel", c_u64, 1), ("exclude_callchain_user", c_u64, 1),
        ("mmap2", c_u64, 1), ("comm_exec", c_u64, 1), ("use_clockid", c_u64, 1),
        ("context_switch", c_u64, 1), ("write_backward", c_u64, 1), ("namespaces", c_u64, 1),
        ("ksymbol", c_u64, 1), ("bpf_event", c_u64, 1), ("aux_output", c_u64, 1),
        ("cgroup", c_u64, 1), ("text_poke", c_u64, 1), ("build_id", c_u64, 1),
        ("inherit_thread", c_u64, 1), ("remove_on_exec", c_u64, 1), ("sigtrap", c_u64, 1),
        ("_reserved_1", c_u64, 26),
        ("wakeup_events", c_u32),            # or wakeup_watermark with watermark=1
        ("bp_type", c_u32),
        ("config1", c_u64),                  # bp_addr, kprobe_func, uprobe_path
        ("config2", c_u64),                  # bp_len, kprobe_addr, probe_offset
        ("branch_sample_type", c_u64), ("sample_regs_user", c_u64),
        ("sample_stack_user", c_u32), ("clockid", c_s32), ("sample_regs_intr", c_u64),
        ("aux_watermark", c_u32), ("sample_max_stack", c_u16), ("_reserved_2", c_u16),
        ("aux_sample_size", c_u32), ("aux_action", c_u32), ("sig_data", c_u64),
        ("config3", c_u64),
    ]


class PerfEventMmapPage(Attr):
    """The head of a perf ring: only the fields a reader needs, at their offsets."""
    _fields_ = [
        ("version", c_u32), ("compat_version", c_u32), ("_head", c_u8 * 1016),
        ("data_head", c_u64), ("data_tail", c_u64), ("data_offset", c_u64),
        ("data_size", c_u64),
    ]
