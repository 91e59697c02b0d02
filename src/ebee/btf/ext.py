"""``.BTF.ext``: per-section func_info, line_info and CO-RE relocation records.

Layout (libbpf's ``struct btf_ext_header``)::

    magic:16 version:8 flags:8 hdr_len:32
    func_info_off:32 func_info_len:32 line_info_off:32 line_info_len:32
    [core_relo_off:32 core_relo_len:32]          (when hdr_len >= 32)

Each info block is ``record_size:32`` followed by, per ELF section,
``sec_name_off:32 num_info:32`` and ``num_info`` records.  Offsets are
relative to the end of the header; names and source text live in the
``.BTF`` string section, so parsing needs the object's BTF.

``insn_off`` in these records is a byte offset into the ELF section, as
clang writes it; ``.insn`` gives the instruction (slot) index.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..uapi import BTF_MAGIC, CoreReloKind
from .errors import BTFError
from .types import Kind
from .btf import BTF


_MIN_REC = {"func_info": 8, "line_info": 16, "core_relo": 16}


@dataclass(frozen=True, slots=True)
class FuncInfo:
    insn_off: int          # byte offset in the section
    type_id: int           # a FUNC type

    @property
    def insn(self) -> int:
        return self.insn_off // 8


@dataclass(frozen=True, slots=True)
class LineInfo:
    insn_off: int
    file_name_off: int
    line_off: int
    line: int
    col: int
    file_name: str = ""
    line_text: str = ""

    @property
    def insn(self) -> int:
        return self.insn_off // 8

    @property
    def line_col(self) -> int:
        return (self.line << 10) | self.col


@dataclass(frozen=True, slots=True)
class CoreRelo:
    insn_off: int
    type_id: int           # local (program BTF) root type
    access_str: str        # "0:1:2" style access spec
    kind: CoreReloKind
    access_str_off: int = 0

    @property
    def insn(self) -> int:
        return self.insn_off // 8


@dataclass(frozen=True)
class BTFExt:
    """Parsed ``.BTF.ext``: records per ELF section name, in file order."""
    func_info: dict[str, tuple[FuncInfo, ...]] = field(default_factory=dict)
    line_info: dict[str, tuple[LineInfo, ...]] = field(default_factory=dict)
    core_relos: dict[str, tuple[CoreRelo, ...]] = field(default_factory=dict)
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16
    core_relo_rec_size: int = 16
    byteorder: str = "little"

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, btf: "BTF") -> "BTFExt":
        """Parse and validate against the object's ``btf`` (names, types, strings)."""
        data = bytes(data)
        if len(data) < 8:
            raise BTFError(f".BTF.ext header truncated: {len(data)} bytes, need at least 8")
        magic = struct.unpack_from("<H", data)[0]
        if magic == BTF_MAGIC:
            e, order = "<", "little"
        elif magic == ((BTF_MAGIC & 0xFF) << 8 | BTF_MAGIC >> 8):
            e, order = ">", "big"
        else:
            raise BTFError(f".BTF.ext: bad magic {data[0]:02x}{data[1]:02x}, "
                           f"expected {BTF_MAGIC:#06x}")
        version, flags, hdr_len = struct.unpack_from(e + "BBI", data, 2)
        if version != 1:
            raise BTFError(f".BTF.ext: unsupported version {version}")
        if flags:
            raise BTFError(f".BTF.ext: unsupported flags {flags:#x}")
        if hdr_len < 24 or hdr_len > len(data):
            raise BTFError(f".BTF.ext: header length {hdr_len} is invalid "
                           f"(data is {len(data)} bytes)")
        fi_off, fi_len, li_off, li_len = struct.unpack_from(e + "IIII", data, 8)
        cr_off = cr_len = 0
        if hdr_len >= 32:
            cr_off, cr_len = struct.unpack_from(e + "II", data, 24)
        body = data[hdr_len:]
        parser = _Parser(body, e, btf)
        fi, fi_size = parser.block("func_info", fi_off, fi_len, parser.func_info)
        li, li_size = parser.block("line_info", li_off, li_len, parser.line_info)
        cr, cr_size = parser.block("core_relo", cr_off, cr_len, parser.core_relo)
        return cls(fi, li, cr, fi_size, li_size, cr_size, order)

    def sections(self) -> list[str]:
        """Every section name with any record, in first-seen order."""
        seen: dict[str, None] = {}
        for d in (self.func_info, self.line_info, self.core_relos):
            for k in d:
                seen.setdefault(k)
        return list(seen)


class _Parser:
    def __init__(self, body: bytes, e: str, btf: "BTF"):
        self.body = body
        self.e = e
        self.btf = btf

    def string(self, off: int, what: str) -> str:
        try:
            return self.btf.string(off)
        except BTFError:
            raise BTFError(f".BTF.ext: {what}: string offset {off} is outside the .BTF string "
                           f"section") from None

    def block(self, what: str, off: int, length: int, rec):
        if not length:
            return {}, _MIN_REC[what]
        body = self.body
        if off + length > len(body):
            raise BTFError(f".BTF.ext: {what} at {off}+{length} runs past the end of the data "
                           f"({len(body)} bytes after the header)")
        if length < 4:
            raise BTFError(f".BTF.ext: {what} is {length} bytes, too short for its record size")
        end = off + length
        rec_size = struct.unpack_from(self.e + "I", body, off)[0]
        if rec_size < _MIN_REC[what] or rec_size % 4:
            raise BTFError(f".BTF.ext: {what} record size {rec_size} is invalid "
                           f"(at least {_MIN_REC[what]}, a multiple of 4)")
        p = off + 4
        out: dict[str, tuple] = {}
        while p < end:
            if p + 8 > end:
                raise BTFError(f".BTF.ext: {what} section header at {p} is truncated")
            name_off, n = struct.unpack_from(self.e + "II", body, p)
            p += 8
            sec = self.string(name_off, f"{what} section name")
            if not n:
                raise BTFError(f".BTF.ext: {what} for section {sec!r} has no records")
            if p + n * rec_size > end:
                raise BTFError(f".BTF.ext: {what} for section {sec!r}: {n} records of "
                               f"{rec_size} bytes run past the end of the block")
            if sec in out:
                raise BTFError(f".BTF.ext: {what} has section {sec!r} twice")
            out[sec] = tuple(rec(body, p + i * rec_size, sec, i) for i in range(n))
            p += n * rec_size
        return out, rec_size

    def func_info(self, body: bytes, p: int, sec: str, i: int) -> FuncInfo:
        insn_off, type_id = struct.unpack_from(self.e + "II", body, p)
        if type_id not in self.btf or self.btf.kind(type_id) is not Kind.FUNC:
            raise BTFError(f".BTF.ext: func_info #{i} of {sec!r}: type [{type_id}] is not a FUNC")
        return FuncInfo(insn_off, type_id)

    def line_info(self, body: bytes, p: int, sec: str, i: int) -> LineInfo:
        insn_off, file_off, line_off, line_col = struct.unpack_from(self.e + "IIII", body, p)
        where = f"line_info #{i} of {sec!r}"
        return LineInfo(insn_off, file_off, line_off, line_col >> 10, line_col & 0x3FF,
                        self.string(file_off, where + " file name"),
                        self.string(line_off, where + " source line"))

    def core_relo(self, body: bytes, p: int, sec: str, i: int) -> CoreRelo:
        insn_off, type_id, acc_off, kind = struct.unpack_from(self.e + "IIII", body, p)
        where = f"core_relo #{i} of {sec!r}"
        if type_id not in self.btf:
            raise BTFError(f".BTF.ext: {where}: type [{type_id}] does not exist")
        try:
            k = CoreReloKind(kind)
        except ValueError:
            raise BTFError(f".BTF.ext: {where}: unknown relocation kind {kind}") from None
        return CoreRelo(insn_off, type_id, self.string(acc_off, where + " access string"), k,
                        acc_off)
