"""BTF: the BPF Type Format -- parsing, dumping, pretty-printing and CO-RE.

``BTF.from_bytes(data)`` parses a raw BTF blob (``.BTF`` section or
``/sys/kernel/btf/*``), ``BTF.load_vmlinux()`` the running kernel's.
``ebee.btf.ext.BTFExt`` parses ``.BTF.ext`` (func_info, line_info, CO-RE
relocations) and ``ebee.btf.core`` applies CO-RE relocations.
"""
from __future__ import annotations

from .btf import BTF
from .errors import BTFError
from .types import (MODIFIERS, VOID, Array, Composite, Const, Datasec, DeclTag, Enum, Enum64,
                    EnumValue, Float, Func, FuncProto, Fwd, Int, Kind, Member, Param, Ptr, Restrict,
                    Struct, Type, Typedef, TypeTag, Union, Var, VarSecinfo, Void, Volatile)

__all__ = ["BTF", "BTFError", "Kind", "MODIFIERS", "VOID", "Array", "Composite", "Const",
           "Datasec", "DeclTag", "Enum", "Enum64", "EnumValue", "Float", "Func", "FuncProto",
           "Fwd", "Int", "Member", "Param", "Ptr", "Restrict", "Struct", "Type", "Typedef",
           "TypeTag", "Union", "Var", "VarSecinfo", "Void", "Volatile"]
