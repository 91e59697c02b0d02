"""What the AOT runtime can run: the offload rules ``ebee aot`` verifies programs against.

Linux verifies a program bound to a device with that device's restrictions
(kernel/bpf/offload.c, ``bpf_prog_dev_bound_init`` and the verifier's
``bpf_prog_offload_verify_insn``): only XDP and SCHED_CLS programs, only the
helpers the device implements, only maps offloaded to the same device.  The AOT
runtime is such a device, in software: these tables say what it implements,
and :func:`check` refuses anything else with the instruction that needs it.
"""
from __future__ import annotations

from typing import Iterable

from .. import uapi as U
from ..errors import EbeeError
from ..isa import Instruction, Kind

F = U.FuncId
M = U.MapType

#: helper id -> the runtime's function (ebee_h_<name>)
HELPERS: dict[int, str] = {int(f): f.name for f in (
    F.map_lookup_elem, F.map_update_elem, F.map_delete_elem, F.ktime_get_ns, F.trace_printk,
    F.get_prandom_u32, F.get_smp_processor_id, F.get_numa_node_id, F.csum_diff,
    F.xdp_adjust_head, F.xdp_adjust_meta, F.xdp_adjust_tail, F.xdp_get_buff_len,
    F.xdp_load_bytes, F.xdp_store_bytes, F.ringbuf_output, F.ringbuf_reserve,
    F.ringbuf_submit, F.ringbuf_discard, F.ringbuf_query, F.loop, F.ktime_get_boot_ns,
    F.ktime_get_coarse_ns, F.ktime_get_tai_ns)}
TAIL_CALL = int(F.tail_call)

#: the helpers that only make sense on an XDP context
XDP_HELPERS = {int(f) for f in (F.xdp_adjust_head, F.xdp_adjust_meta, F.xdp_adjust_tail,
                                F.xdp_get_buff_len, F.xdp_load_bytes, F.xdp_store_bytes)}

MAP_TYPES = (M.HASH, M.ARRAY, M.PROG_ARRAY, M.PERCPU_HASH, M.PERCPU_ARRAY, M.LRU_HASH,
             M.LRU_PERCPU_HASH, M.LPM_TRIE, M.RINGBUF)

#: program types the runtime has a run for (None: raw instructions on a memory block)
PROG_TYPES = (U.ProgType.XDP,)


class OffloadError(EbeeError, ValueError):
    """The AOT runtime cannot run this program (one line, naming the instruction)."""


def helper_name(fid: int) -> str:
    try:
        return f"helper bpf_{F(fid).name} (#{fid})"
    except ValueError:
        return f"helper #{fid}"


def map_type_name(mt: int) -> str:
    try:
        return M(mt).name.lower()
    except ValueError:
        return f"#{mt}"


def check(prog: str, insns: Iterable[Instruction], text, map_type_of, prog_type) -> None:
    """Refuse what the runtime cannot run.  ``text(pc)`` disassembles an instruction;
    ``map_type_of(insn)`` is the type of the map an lddw refers to."""
    if prog_type is not None and prog_type not in PROG_TYPES:
        name = getattr(prog_type, "name", str(prog_type)).lower()
        raise OffloadError(f"{prog}: program type {name} cannot be offloaded; the AOT runtime "
                           f"runs {', '.join(p.name.lower() for p in PROG_TYPES)} programs")
    for i in insns:
        k = i.kind

        def refuse(why: str) -> None:
            raise OffloadError(f"{prog}: pc {i.pc}: {text(i.pc)}: {why}")
        if k is Kind.CALL:
            fid = i.imm & 0xFFFFFFFF
            if fid == TAIL_CALL:
                continue
            if fid not in HELPERS:
                refuse(f"{helper_name(fid)} is not supported by the AOT runtime")
            if fid in XDP_HELPERS and prog_type != U.ProgType.XDP:
                refuse(f"{helper_name(fid)} needs an XDP context")
        elif k is Kind.CALL_KFUNC:
            refuse("kfunc calls cannot be offloaded")
        elif k in (Kind.LD_ABS, Kind.LD_IND):
            refuse("legacy packet access (LD_ABS/LD_IND) needs a socket buffer")
        elif k is Kind.ADDR_SPACE_CAST:
            refuse("arena address-space casts cannot be offloaded")
        elif k is Kind.LD_IMM64 and i.src not in (0, U.BPF_PSEUDO_FUNC):
            if i.src not in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
                refuse(f"lddw with src_reg {i.src} cannot be offloaded")
            mt = map_type_of(i)
            if mt not in MAP_TYPES:
                refuse(f"map of type {map_type_name(mt)} is not offloaded with the program "
                       f"(the AOT runtime has {', '.join(t.name.lower() for t in MAP_TYPES)})")
