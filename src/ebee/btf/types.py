"""BTF type records: one immutable dataclass per kind.

A record carries its own type ``id`` and ``name`` ("" when anonymous) plus
the kind-specific fields of ``include/uapi/linux/btf.h``, already decoded:
member bit offsets and bitfield sizes are split out whatever the struct's
kind_flag, enum values are signed or unsigned as the kind_flag says, and
linkage is an ``IntEnum``.  References to other types are type ids (ints);
``BTF`` resolves them, so records stay small and hashable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator

from ..uapi import BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED, BtfFuncLinkage, BtfKind, BtfVarLinkage

Kind = BtfKind

#: kinds that only qualify another type (skipped by ``BTF.resolve``)
MODIFIERS = frozenset({Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG})


@dataclass(frozen=True, slots=True)
class Type:
    """Common part of every BTF type."""
    id: int
    name: str

    kind: ClassVar[Kind] = Kind.UNKN

    def refs(self) -> Iterator[int]:
        """Type ids this type refers to, in encoding order."""
        return iter(())

    @property
    def anonymous(self) -> bool:
        return not self.name

    def __str__(self) -> str:
        return f"[{self.id}] {self.kind.name} '{self.name or '(anon)'}'"


@dataclass(frozen=True, slots=True)
class Void(Type):
    """Type id 0: ``void``."""
    kind: ClassVar[Kind] = Kind.UNKN


@dataclass(frozen=True, slots=True)
class Int(Type):
    size: int
    encoding: int        # BTF_INT_SIGNED | BTF_INT_CHAR | BTF_INT_BOOL bits
    bits_offset: int
    nr_bits: int
    kind: ClassVar[Kind] = Kind.INT

    @property
    def signed(self) -> bool:
        return bool(self.encoding & BTF_INT_SIGNED)

    @property
    def is_char(self) -> bool:
        return bool(self.encoding & BTF_INT_CHAR)

    @property
    def is_bool(self) -> bool:
        return bool(self.encoding & BTF_INT_BOOL)


@dataclass(frozen=True, slots=True)
class _Ref(Type):
    """A kind that is just a reference to another type."""
    type_id: int

    def refs(self) -> Iterator[int]:
        yield self.type_id


@dataclass(frozen=True, slots=True)
class Ptr(_Ref):
    kind: ClassVar[Kind] = Kind.PTR


@dataclass(frozen=True, slots=True)
class Typedef(_Ref):
    kind: ClassVar[Kind] = Kind.TYPEDEF


@dataclass(frozen=True, slots=True)
class Volatile(_Ref):
    kind: ClassVar[Kind] = Kind.VOLATILE


@dataclass(frozen=True, slots=True)
class Const(_Ref):
    kind: ClassVar[Kind] = Kind.CONST


@dataclass(frozen=True, slots=True)
class Restrict(_Ref):
    kind: ClassVar[Kind] = Kind.RESTRICT


@dataclass(frozen=True, slots=True)
class TypeTag(_Ref):
    kflag: bool = False       # set: the tag is a plain __attribute__((NAME))
    kind: ClassVar[Kind] = Kind.TYPE_TAG


@dataclass(frozen=True, slots=True)
class Array(Type):
    type_id: int
    index_type_id: int
    nelems: int
    kind: ClassVar[Kind] = Kind.ARRAY

    def refs(self) -> Iterator[int]:
        yield self.type_id
        yield self.index_type_id


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    type_id: int
    bits_offset: int
    bitfield_size: int = 0     # 0: not a bitfield

    @property
    def byte_offset(self) -> int:
        return self.bits_offset // 8


@dataclass(frozen=True, slots=True)
class Composite(Type):
    """STRUCT or UNION."""
    size: int
    members: tuple[Member, ...]
    kflag: bool = False        # set: member offsets carry bitfield sizes

    def refs(self) -> Iterator[int]:
        for m in self.members:
            yield m.type_id

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"{self.kind.name.lower()} {self.name or '(anon)'} has no member {name!r}")


@dataclass(frozen=True, slots=True)
class Struct(Composite):
    kind: ClassVar[Kind] = Kind.STRUCT


@dataclass(frozen=True, slots=True)
class Union(Composite):
    kind: ClassVar[Kind] = Kind.UNION


@dataclass(frozen=True, slots=True)
class EnumValue:
    name: str
    value: int


@dataclass(frozen=True, slots=True)
class _EnumBase(Type):
    size: int
    values: tuple[EnumValue, ...]
    signed: bool = False

    def value_of(self, name: str) -> int:
        for v in self.values:
            if v.name == name:
                return v.value
        raise KeyError(f"enum {self.name or '(anon)'} has no value {name!r}")


@dataclass(frozen=True, slots=True)
class Enum(_EnumBase):
    kind: ClassVar[Kind] = Kind.ENUM


@dataclass(frozen=True, slots=True)
class Enum64(_EnumBase):
    kind: ClassVar[Kind] = Kind.ENUM64


@dataclass(frozen=True, slots=True)
class Fwd(Type):
    is_union: bool = False
    kind: ClassVar[Kind] = Kind.FWD


@dataclass(frozen=True, slots=True)
class Func(_Ref):
    linkage: BtfFuncLinkage = BtfFuncLinkage.STATIC
    kind: ClassVar[Kind] = Kind.FUNC


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class FuncProto(Type):
    return_type_id: int
    params: tuple[Param, ...]
    kind: ClassVar[Kind] = Kind.FUNC_PROTO

    def refs(self) -> Iterator[int]:
        yield self.return_type_id
        for p in self.params:
            yield p.type_id

    @property
    def variadic(self) -> bool:
        return bool(self.params) and self.params[-1].type_id == 0


@dataclass(frozen=True, slots=True)
class Var(_Ref):
    linkage: BtfVarLinkage = BtfVarLinkage.STATIC
    kind: ClassVar[Kind] = Kind.VAR


@dataclass(frozen=True, slots=True)
class VarSecinfo:
    type_id: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Datasec(Type):
    size: int
    vars: tuple[VarSecinfo, ...]
    kind: ClassVar[Kind] = Kind.DATASEC

    def refs(self) -> Iterator[int]:
        for v in self.vars:
            yield v.type_id


@dataclass(frozen=True, slots=True)
class Float(Type):
    size: int
    kind: ClassVar[Kind] = Kind.FLOAT


@dataclass(frozen=True, slots=True)
class DeclTag(_Ref):
    component_idx: int = -1    # -1: the tag is on type_id itself, else member/param index
    kind: ClassVar[Kind] = Kind.DECL_TAG


VOID = Void(0, "")

#: the record class of each kind
CLASSES: dict[Kind, type[Type]] = {
    Kind.INT: Int, Kind.PTR: Ptr, Kind.ARRAY: Array, Kind.STRUCT: Struct, Kind.UNION: Union,
    Kind.ENUM: Enum, Kind.FWD: Fwd, Kind.TYPEDEF: Typedef, Kind.VOLATILE: Volatile,
    Kind.CONST: Const, Kind.RESTRICT: Restrict, Kind.FUNC: Func, Kind.FUNC_PROTO: FuncProto,
    Kind.VAR: Var, Kind.DATASEC: Datasec, Kind.FLOAT: Float, Kind.DECL_TAG: DeclTag,
    Kind.TYPE_TAG: TypeTag, Kind.ENUM64: Enum64,
}


def kind_of(spec: "Kind | str | int") -> Kind:
    """``Kind.STRUCT``, ``"struct"``, ``"STRUCT"`` or ``4`` -> ``Kind.STRUCT``."""
    if isinstance(spec, str):
        try:
            return Kind[spec.upper()]
        except KeyError:
            raise ValueError(f"unknown BTF kind {spec!r}") from None
    return Kind(spec)
