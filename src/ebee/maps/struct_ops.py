"""STRUCT_OPS (kernel/bpf/bpf_struct_ops.c): a kernel function table filled with programs.

The value is the kernel's ``struct bpf_struct_ops_X`` (named by
``btf_vmlinux_value_type_id`` in the kernel's BTF): a header and the table
``struct X`` whose function pointers name programs.  The map is created with
Linux's checks (key_size 4, max_entries 1, ``BPF_F_LINK`` the only flag, a
value type); its element holds the value user space wrote, and the programs
each function pointer names (``m.progs``).  Registering the table with the
subsystem it implements (what updating the element or attaching a link does in
Linux) is not modelled.
"""
from __future__ import annotations

import errno as E
from typing import Any

from .. import uapi as U
from ..btf import BTF, Kind
from ..btf.errors import BTFError
from ..uapi import MapType
from .base import Map
from .errors import map_error


def _value_type(tid: int):
    """The kernel's ``struct bpf_struct_ops_X`` with this id (None: not one; False: no
    kernel BTF to tell)."""
    try:
        t = BTF.load_vmlinux()[tid]
    except (BTFError, OSError):
        return False
    except (KeyError, IndexError):
        return None
    return t if t.kind is Kind.STRUCT and t.name.startswith("bpf_struct_ops_") else None


class StructOpsMap(Map):
    map_type = MapType.STRUCT_OPS
    # bpf_struct_ops_map_alloc_check() checks the flags with the other attributes
    create_flags = ~0

    def check_attr(self) -> None:
        if (self.key_size != 4 or self.max_entries != 1 or
                self.flags & ~(U.BPF_F_LINK | U.BPF_F_VTYPE_BTF_OBJ_FD) or
                not self.btf_vmlinux_value_type_id):
            raise map_error(E.EINVAL, "struct_ops maps need key_size 4, max_entries 1, only "
                                      "BPF_F_LINK and a kernel value type")
        vt = _value_type(self.btf_vmlinux_value_type_id)
        if vt is None:
            raise map_error(U.ENOTSUPP, f"BTF type {self.btf_vmlinux_value_type_id} is not a "
                                        f"struct_ops value type of this kernel")
        if vt is not False and self.value_size != vt.size:
            raise map_error(E.EINVAL, f"value_size {self.value_size} is not the size of "
                                      f"struct {vt.name} ({vt.size})")

    def alloc(self) -> None:
        self.value: bytes | None = None
        self.progs: dict[int, Any] = {}     # offset in the value -> the program there

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        if int.from_bytes(key, "little"):
            raise map_error(E.ENOENT)
        return self.value if self.value is not None else bytes(self.value_size)

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        if flags:
            raise map_error(E.EINVAL, "struct_ops updates take no flags")
        if int.from_bytes(key, "little"):
            raise map_error(E.E2BIG)
        if self.value is not None and not self.flags & U.BPF_F_LINK:
            raise map_error(E.EBUSY, "the struct_ops table is registered already")
        self.value = bytes(value)

    def _sys_delete(self, key: bytes) -> None:
        if self.flags & U.BPF_F_LINK:
            raise map_error(U.ENOTSUPP, "a link-based struct_ops map is detached by its link")
        if self.value is None:
            raise map_error(E.ENOENT)
        self.value = None

    def _get_next_key(self, key: bytes | None) -> bytes:
        if key is not None and int.from_bytes(key, "little") == 0:
            raise map_error(E.ENOENT)
        return bytes(4)
