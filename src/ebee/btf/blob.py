"""A raw BTF blob as u32 records that can be patched and appended to: how the loader
edits an object's BTF the way libbpf does (finalizing DATASECs for the kernel, resizing
a global array) without re-encoding it."""
from __future__ import annotations

from array import array

from ..uapi import BtfKind
from .btf import EXTRA_WORDS, HEADER


class BTFBlob:
    """A raw BTF blob split into records that can be patched and appended to."""

    def __init__(self, data: bytes):
        (self.magic, self.version, self.flags, hdr_len, type_off, type_len, str_off,
         str_len) = HEADER.unpack_from(data, 0)
        base = hdr_len
        self.types = array("I", data[base + type_off:base + type_off + type_len])
        self.strings = bytearray(data[base + str_off:base + str_off + str_len])
        self.offs: list[int] = []       # word index of each record; type id = index + 1
        i = 0
        while i < len(self.types):
            info = self.types[i + 1]
            fixed, per = EXTRA_WORDS[BtfKind((info >> 24) & 0x1F)]
            self.offs.append(i)
            i += 3 + fixed + per * (info & 0xFFFF)

    # -- reading -------------------------------------------------------------------------------
    def kind(self, tid: int) -> BtfKind:
        return BtfKind((self.types[self.offs[tid - 1] + 1] >> 24) & 0x1F)

    def vlen(self, tid: int) -> int:
        return self.types[self.offs[tid - 1] + 1] & 0xFFFF

    def name(self, tid: int) -> str:
        return self.string(self.types[self.offs[tid - 1]])

    def string(self, off: int) -> str:
        end = self.strings.index(0, off)
        return self.strings[off:end].decode(errors="replace")

    def ids(self, kind: BtfKind):
        return [t for t in range(1, len(self.offs) + 1) if self.kind(t) == kind]

    def word(self, tid: int, n: int) -> int:
        return self.types[self.offs[tid - 1] + n]

    def set_word(self, tid: int, n: int, value: int) -> None:
        self.types[self.offs[tid - 1] + n] = value & 0xFFFFFFFF

    # -- appending -------------------------------------------------------------------------------
    def add_string(self, s: str) -> int:
        off = len(self.strings)
        self.strings += s.encode() + b"\0"
        return off

    def add_type(self, words: list[int]) -> int:
        self.offs.append(len(self.types))
        self.types.extend(w & 0xFFFFFFFF for w in words)
        return len(self.offs)

    def to_bytes(self) -> bytes:
        types = self.types.tobytes()
        hdr = HEADER.pack(self.magic, self.version, self.flags, HEADER.size, 0, len(types),
                          len(types), len(self.strings))
        return hdr + types + bytes(self.strings)
