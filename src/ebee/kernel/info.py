"""What the kernel holds: walking ids, opening objects by id, and reading their info.

``*_GET_NEXT_ID`` walks the ids of live programs, maps, BTF objects and links;
``*_GET_FD_BY_ID`` opens one; ``OBJ_GET_INFO_BY_FD`` describes it.  The info
records are plain dataclasses with the fields bpftool shows.
"""
from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

from ..uapi import AttachType, Cmd, LinkType, MapType, ProgType
from .attrs import (BpfBtfInfo, BpfLinkInfo, BpfMapInfo, BpfProgInfo, EnableStatsAttr,
                    GetIdAttr, InfoAttr)
from .syscall import addr, bpf


class Kind(Enum):
    """The four kinds of objects the kernel numbers, with their commands."""
    PROG = (Cmd.PROG_GET_NEXT_ID, Cmd.PROG_GET_FD_BY_ID)
    MAP = (Cmd.MAP_GET_NEXT_ID, Cmd.MAP_GET_FD_BY_ID)
    BTF = (Cmd.BTF_GET_NEXT_ID, Cmd.BTF_GET_FD_BY_ID)
    LINK = (Cmd.LINK_GET_NEXT_ID, Cmd.LINK_GET_FD_BY_ID)


def ids(kind: Kind) -> Iterator[int]:
    """The ids of every live object of a kind, in increasing order."""
    next_cmd = kind.value[0]
    cur = 0
    while True:
        attr = GetIdAttr(start_id=cur)
        try:
            bpf(next_cmd, attr)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        cur = attr.next_id
        yield cur


def fd_by_id(kind: Kind, id_: int, open_flags: int = 0) -> int:
    """A new file descriptor for the object with this id (the caller closes it)."""
    try:
        return bpf(kind.value[1], GetIdAttr(start_id=id_, open_flags=open_flags))
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise OSError(e.errno, f"no {kind.name.lower()} with id {id_}") from None
        raise


def _info(fd: int, info: ctypes.Structure) -> ctypes.Structure:
    bpf(Cmd.OBJ_GET_INFO_BY_FD, InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info),
                                         info=addr(info)))
    return info


def fdinfo(fd: int) -> dict[str, str]:
    """/proc/self/fdinfo/FD as a dict (memlock, owner, frozen...)."""
    out = {}
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def _enum(cls, value):
    try:
        return cls(value)
    except ValueError:
        return value


@dataclass
class ProgInfo:
    id: int
    type: ProgType | int
    name: str
    tag: str
    gpl_compatible: bool
    load_time: int              # ns since boot
    created_by_uid: int
    xlated_prog_len: int
    jited_prog_len: int
    map_ids: list[int]
    btf_id: int
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int
    attach_btf_obj_id: int
    attach_btf_id: int
    nr_func_info: int
    nr_line_info: int
    nr_jited_ksyms: int
    ifindex: int
    memlock: int = 0

    @property
    def loaded_at(self) -> int:
        """Load time as seconds since the epoch (what bpftool prints)."""
        return int(boot_time() + self.load_time / 1e9)


@dataclass
class MapInfo:
    id: int
    type: MapType | int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int
    map_extra: int
    ifindex: int
    memlock: int = 0
    frozen: bool = False


@dataclass
class BTFInfo:
    id: int
    name: str
    size: int
    kernel_btf: bool


@dataclass
class LinkInfo:
    id: int
    type: LinkType | int
    prog_id: int
    attach_type: AttachType | int | None = None
    details: dict = field(default_factory=dict)


def prog_info(fd: int, *, map_ids: bool = True) -> ProgInfo:
    info = _info(fd, BpfProgInfo())
    ids_: list[int] = []
    if map_ids and info.nr_map_ids:
        arr = (ctypes.c_uint32 * info.nr_map_ids)()
        again = BpfProgInfo(nr_map_ids=info.nr_map_ids, map_ids=addr(arr))
        _info(fd, again)
        ids_ = list(arr[:again.nr_map_ids])
    fi = fdinfo(fd)
    return ProgInfo(
        id=info.id, type=_enum(ProgType, info.type), name=info.name.decode(errors="replace"),
        tag=bytes(info.tag).hex(), gpl_compatible=bool(info.gpl_compatible),
        load_time=info.load_time, created_by_uid=info.created_by_uid,
        xlated_prog_len=info.xlated_prog_len, jited_prog_len=info.jited_prog_len,
        map_ids=ids_, btf_id=info.btf_id, run_time_ns=info.run_time_ns, run_cnt=info.run_cnt,
        recursion_misses=info.recursion_misses, verified_insns=info.verified_insns,
        attach_btf_obj_id=info.attach_btf_obj_id, attach_btf_id=info.attach_btf_id,
        nr_func_info=info.nr_func_info, nr_line_info=info.nr_line_info,
        nr_jited_ksyms=info.nr_jited_ksyms, ifindex=info.ifindex,
        memlock=int(fi.get("memlock", 0) or 0))


def prog_xlated(fd: int) -> bytes:
    """The program as the verifier rewrote it (what ``bpftool prog dump xlated`` shows)."""
    info = _info(fd, BpfProgInfo())
    if not info.xlated_prog_len:
        return b""   # kernel.kptr_restrict / bpf_jit_harden can hide it
    buf = ctypes.create_string_buffer(info.xlated_prog_len)
    again = _info(fd, BpfProgInfo(xlated_prog_len=info.xlated_prog_len,
                                  xlated_prog_insns=addr(buf)))
    return buf.raw[:again.xlated_prog_len]


@dataclass
class JitedImage:
    """Native code of a program: one image per (sub)program, with its kernel symbol address."""
    code: bytes
    ksyms: list[int]
    func_lens: list[int]

    def functions(self) -> Iterator[tuple[int, bytes]]:
        off = 0
        for addr_, n in zip(self.ksyms or [0], self.func_lens or [len(self.code)]):
            yield addr_, self.code[off:off + n]
            off += n


def prog_jited(fd: int) -> JitedImage:
    info = _info(fd, BpfProgInfo())
    if not info.jited_prog_len:
        return JitedImage(b"", [], [])
    buf = ctypes.create_string_buffer(info.jited_prog_len)
    ks = (ctypes.c_uint64 * max(info.nr_jited_ksyms, 1))()
    fl = (ctypes.c_uint32 * max(info.nr_jited_func_lens, 1))()
    again = _info(fd, BpfProgInfo(jited_prog_len=info.jited_prog_len, jited_prog_insns=addr(buf),
                                  nr_jited_ksyms=info.nr_jited_ksyms, jited_ksyms=addr(ks),
                                  nr_jited_func_lens=info.nr_jited_func_lens,
                                  jited_func_lens=addr(fl)))
    return JitedImage(buf.raw[:again.jited_prog_len], list(ks[:again.nr_jited_ksyms]),
                      list(fl[:again.nr_jited_func_lens]))


def prog_line_info(fd: int) -> tuple[bytes, bytes, int, int]:
    """(func_info records, line_info records, btf_id, func_info_rec_size) of a loaded program."""
    info = _info(fd, BpfProgInfo())
    fi = ctypes.create_string_buffer(max(info.nr_func_info * info.func_info_rec_size, 1))
    li = ctypes.create_string_buffer(max(info.nr_line_info * info.line_info_rec_size, 1))
    again = _info(fd, BpfProgInfo(nr_func_info=info.nr_func_info,
                                  func_info_rec_size=info.func_info_rec_size, func_info=addr(fi),
                                  nr_line_info=info.nr_line_info,
                                  line_info_rec_size=info.line_info_rec_size, line_info=addr(li)))
    return (fi.raw[:again.nr_func_info * again.func_info_rec_size],
            li.raw[:again.nr_line_info * again.line_info_rec_size], again.btf_id,
            again.func_info_rec_size)


def map_info(fd: int) -> MapInfo:
    info = _info(fd, BpfMapInfo())
    fi = fdinfo(fd)
    return MapInfo(
        id=info.id, type=_enum(MapType, info.type), name=info.name.decode(errors="replace"),
        key_size=info.key_size, value_size=info.value_size, max_entries=info.max_entries,
        map_flags=info.map_flags, btf_id=info.btf_id, btf_key_type_id=info.btf_key_type_id,
        btf_value_type_id=info.btf_value_type_id,
        btf_vmlinux_value_type_id=info.btf_vmlinux_value_type_id, map_extra=info.map_extra,
        ifindex=info.ifindex, memlock=int(fi.get("memlock", 0) or 0),
        frozen=fi.get("frozen", "0") not in ("0", ""))


def btf_info(fd: int) -> BTFInfo:
    name = ctypes.create_string_buffer(64)
    info = _info(fd, BpfBtfInfo(name=addr(name), name_len=64))
    return BTFInfo(id=info.id, name=name.value.decode(errors="replace"), size=info.btf_size,
                   kernel_btf=bool(info.kernel_btf))


def btf_data(fd: int) -> bytes:
    """The raw BTF blob of a loaded BTF object."""
    info = _info(fd, BpfBtfInfo())
    buf = ctypes.create_string_buffer(max(info.btf_size, 1))
    again = _info(fd, BpfBtfInfo(btf=addr(buf), btf_size=info.btf_size))
    return buf.raw[:again.btf_size]


def link_info(fd: int) -> LinkInfo:
    info = _info(fd, BpfLinkInfo())
    t = _enum(LinkType, info.type)
    u = info.u
    details: dict = {}
    attach = None
    if t == LinkType.RAW_TRACEPOINT:
        name = ctypes.create_string_buffer(256)
        again = BpfLinkInfo()
        again.u.raw_tracepoint.tp_name, again.u.raw_tracepoint.tp_name_len = addr(name), 256
        _info(fd, again)
        details["tp_name"] = name.value.decode(errors="replace")
    elif t in (LinkType.TRACING,):
        attach = u.tracing.attach_type
        details.update(target_obj_id=u.tracing.target_obj_id,
                       target_btf_id=u.tracing.target_btf_id)
    elif t == LinkType.CGROUP:
        attach = u.cgroup.attach_type
        details["cgroup_id"] = u.cgroup.cgroup_id
    elif t == LinkType.NETNS:
        attach = u.netns.attach_type
        details["netns_ino"] = u.netns.netns_ino
    elif t == LinkType.XDP:
        details["ifindex"] = u.xdp.ifindex
    elif t in (LinkType.TCX, LinkType.NETKIT):
        attach = u.tcx.attach_type
        details["ifindex"] = u.tcx.ifindex
    elif t == LinkType.PERF_EVENT:
        details["perf_event_type"] = u.perf_event.type
    elif t == LinkType.NETFILTER:
        details.update(pf=u.netfilter.pf, hooknum=u.netfilter.hooknum,
                       priority=u.netfilter.priority)
    elif t == LinkType.KPROBE_MULTI:
        details.update(count=u.kprobe_multi.count, missed=u.kprobe_multi.missed)
    return LinkInfo(id=info.id, type=t, prog_id=info.prog_id,
                    attach_type=_enum(AttachType, attach) if attach is not None else None,
                    details=details)


def boot_time() -> float:
    """The epoch time the system booted (bpf load times count from boot)."""
    import time
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def enable_stats(kind: int = 0) -> int:
    """ENABLE_STATS: run_time_ns/run_cnt are counted while the returned fd stays open."""
    return bpf(Cmd.ENABLE_STATS, EnableStatsAttr(type=kind))


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
