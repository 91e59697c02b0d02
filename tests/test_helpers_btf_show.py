"""bpf_snprintf_btf and bpf_seq_printf_btf: ebee's btf_show() against the kernel's.

One syscall program renders the object in its ``obj`` global as the vmlinux type
``type_id`` with ``flags``; an iterator program does the same into its seq_file.  The
kernel runs the same object through BPF_PROG_TEST_RUN and an iterator read, with the
same globals.  Types are a deterministic sample of the running kernel's BTF (every
kind btf_show() handles: structs, unions, arrays, bitfields, enums, typedefs,
modifiers, pointers, and the kinds it reports as unsupported), the data mostly zero
bytes so that zero-skipping is exercised; EBEE_SLOW=1 takes a larger sample.
Pointers without BTF_F_PTR_RAW are hashed by the kernel with a boot-time key, so
there the 16 hex digits of a non-NULL pointer are compared as a shape.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import ebee
from ebee.btf import BTF, Kind
from ebee.btf.show import render
from ebee.testrun.iter import read_iter
from ebee.uapi import BTF_F_COMPACT, BTF_F_NONAME, BTF_F_PTR_RAW, BTF_F_ZERO

SRC = Path(__file__).parent / "data" / "btfshow" / "btf_show.c"
OBJ_SIZE = 1024
OUT_SIZE = 4096
SLOW = os.environ.get("EBEE_SLOW") == "1"
#: a hashed or raw pointer: "0x" and exactly 16 hex digits
POINTER = re.compile(rb"(?<![0-9A-Za-z_])0x[0-9a-f]{16}(?![0-9a-f])")


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("needs the kernel's BTF (/sys/kernel/btf/vmlinux)")
    return BTF.load_vmlinux()


@pytest.fixture(scope="module")
def obj_path(tmp_path_factory) -> Path:
    clang = shutil.which("clang-19")
    if clang is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("needs clang-19 and libbpf headers")
    out = tmp_path_factory.mktemp("btfshow") / "btf_show.o"
    r = subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
                        "-I/usr/include/x86_64-linux-gnu", "-c", str(SRC), "-o", str(out)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return out


def _shows_safely(btf: BTF, tid: int) -> bool:
    """Types the kernel renders without reading past ``obj``: sized at most OBJ_SIZE, or
    kinds shown without reading memory.  Three are left out because the kernel oopses on
    them: FUNC_PROTO has no show operation, nor has void behind a typedef or modifier
    (btf_modifier_show+0xbd, seen here; ebee prints both as unsupported kinds), and
    btf_var_show() of 6.18.44-fc-v1147 dereferences the NULL resolved_ids of the vmlinux BTF
    (a NULL-pointer read at 0x7a14 in btf_var_show+0x47, seen here; Debian's 6.12 sources
    resolve the VAR's type instead, which is what ebee does)."""
    t = btf[tid]
    for _ in range(40):
        if t.kind is Kind.VAR:
            return False
        if t.kind is Kind.TYPEDEF or t.kind in (
                Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
            t = btf[t.type_id]
            continue
        break
    if t.kind in (Kind.FUNC_PROTO, Kind.UNKN):
        return False
    if t.kind in (Kind.FWD, Kind.FUNC, Kind.FLOAT, Kind.DECL_TAG, Kind.DATASEC):
        return True
    try:
        return btf.sizeof(t) <= OBJ_SIZE
    except Exception:
        return False


def sample_types(btf: BTF, n: int) -> list[int]:
    """``n`` type ids spread over the whole BTF, plus named ones that cover each
    rendering rule (bitfields, char arrays, unions, enums, 128-bit ints)."""
    named = []
    for name, kind in (("iphdr", "STRUCT"), ("ethhdr", "STRUCT"), ("tcphdr", "STRUCT"),
                       ("in6_addr", "STRUCT"), ("sock_common", "STRUCT"), ("bpf_insn", "STRUCT"),
                       ("task_cputime", "STRUCT"), ("bpf_prog_type", "ENUM"), ("__u64", "TYPEDEF"),
                       ("__int128", "INT"), ("ipv6hdr", "STRUCT"), ("flowi4", "STRUCT"),
                       ("qstr", "STRUCT"), ("callback_head", "STRUCT"), ("bpf_attr", "UNION")):
        try:
            named.append(btf.find(name, kind).id)
        except KeyError:
            pass
    total = btf.type_count
    step = max(1, total // n)
    spread = [tid for tid in range(1, total, step)]
    return [t for t in dict.fromkeys(named + spread) if _shows_safely(btf, t)]


def case(tid: int) -> tuple[bytes, int]:
    """The object's bytes (mostly zero) and the flags for type ``tid``."""
    rnd = random.Random(tid)
    zero = rnd.choice((0.0, 0.5, 0.8, 0.95))
    data = bytes(0 if rnd.random() < zero else rnd.choice((rnd.randrange(256), 0x41 + tid % 26))
                 for _ in range(OBJ_SIZE))
    return data, rnd.randrange(16)


def masked(text: bytes, flags: int) -> bytes:
    """``text`` with hashed pointers as a shape; a pointer cut by a full buffer goes too."""
    if flags & BTF_F_PTR_RAW:
        return text
    return re.sub(rb"0x[0-9a-f]{0,15}\0$", b"0xCUT", POINTER.sub(b"0xPTR", text))


class Pair:
    """The object loaded in ebee and in the kernel, with the same globals."""

    def __init__(self, path: Path, kernel: bool):
        self.ours = ebee.load(path)
        self.ko = None
        if kernel:
            from ebee.kernel import load_object
            self.ko = load_object(ebee.load(path), programs=["show", "seq_show"])

    def set(self, **values) -> None:
        for k, v in values.items():
            setattr(self.ours.bss, k, v)
        if self.ko is not None:
            self.ko.maps[".bss"].update(bytes(4), bytes(self.ours.bss.map.lookup(0)))

    def snprintf(self) -> tuple[tuple[int, bytes], tuple[int, bytes] | None]:
        self.ours.bss.out = bytes(OUT_SIZE)
        self.ours.programs["show"].run()
        ours = (self.ours.bss.ret, bytes(self.ours.bss.map.lookup(0)))
        theirs = None
        if self.ko is not None:
            self.ko.maps[".bss"].update(bytes(4), bytes(self.ours.bss.map.lookup(0)))
            self.ko.programs["show"].run()
            raw = bytes(self.ko.maps[".bss"].lookup(bytes(4)))
            theirs = (int.from_bytes(raw[self._off("ret"):self._off("ret") + 8], "little",
                                     signed=True), raw)
        return ours, theirs

    def out(self, raw: bytes) -> bytes:
        return raw[self._off("out"):self._off("out") + OUT_SIZE]

    def _off(self, name: str) -> int:
        return self.ours.bss._vars[name][0]

    def close(self) -> None:
        if self.ko is not None:
            self.ko.close()


@pytest.fixture(scope="module")
def pair(obj_path, request):
    from ebee.kernel import bpf_available
    p = Pair(obj_path, kernel=not bpf_available())
    request.addfinalizer(p.close)
    return p


def _kernel_or_skip(pair: Pair) -> None:
    if pair.ko is None:
        pytest.skip("bpf() cannot load programs here: nothing to compare with")


@pytest.mark.kernel
def test_snprintf_btf_agrees_with_the_kernel_over_a_sample_of_vmlinux(vmlinux, pair):
    _kernel_or_skip(pair)
    types = sample_types(vmlinux, 20000 if SLOW else 160)
    differ = []
    kinds = set()
    for tid in types:
        data, flags = case(tid)
        pair.set(obj=data, type_id=tid, flags=flags, out_size=0, ptr_size=0, addr=0)
        (r1, raw1), (r2, raw2) = pair.snprintf()
        o1, o2 = pair.out(raw1), pair.out(raw2)
        n = min(max(r1, 0) + 1, OUT_SIZE)
        if r1 != r2 or masked(o1[:n], flags) != masked(o2[:n], flags):
            differ.append((tid, str(vmlinux[tid]), flags, r1, r2, o1[:n], o2[:n]))
        kinds.add(vmlinux[tid].kind)
    assert not differ, differ[:3]
    assert {Kind.STRUCT, Kind.UNION, Kind.ARRAY, Kind.INT, Kind.PTR, Kind.ENUM, Kind.TYPEDEF,
            Kind.FUNC} <= kinds


@pytest.mark.kernel
def test_snprintf_btf_truncates_as_vsnprintf(vmlinux, pair):
    """Small buffers: the text cut to size - 1 bytes and a NUL, the whole length
    returned; pointers raw so every byte compares."""
    _kernel_or_skip(pair)
    tid = vmlinux.find("iphdr", "STRUCT").id
    sk = vmlinux.find("sock_common", "STRUCT").id
    for t in (tid, sk):
        data, _ = case(t)
        for size in (1, 2, 7, 31, 32, 33, 100, 333):
            for flags in (BTF_F_PTR_RAW, BTF_F_PTR_RAW | BTF_F_COMPACT | BTF_F_ZERO):
                pair.set(obj=data, type_id=t, flags=flags, out_size=size, ptr_size=0, addr=0)
                (r1, raw1), (r2, raw2) = pair.snprintf()
                assert r1 == r2 > 0
                assert pair.out(raw1)[:size + 1] == pair.out(raw2)[:size + 1]
                assert pair.out(raw1)[min(r1, size - 1)] == 0


@pytest.mark.kernel
@pytest.mark.parametrize("what, values", [
    ("bad flag", dict(flags=1 << 4)),
    ("high flag", dict(flags=1 << 63)),
    ("btf_ptr size 12", dict(ptr_size=12)),
    ("type id 0", dict(type_id=0)),
    ("type id past the last", dict(type_id=(1 << 31) - 1)),
    ("negative type id", dict(type_id=1 << 31)),
    ("NULL object", dict(addr=1 << 64)),     # addr & ... below: 0 means obj, so wrap
    ("user address", dict(addr=0x10000)),
    ("non-canonical address", dict(addr=0x8000000000000000)),
])
def test_snprintf_btf_errors_agree(vmlinux, pair, what, values):
    _kernel_or_skip(pair)
    v = {"obj": bytes(OBJ_SIZE), "type_id": vmlinux.find("iphdr", "STRUCT").id, "flags": 0,
         "out_size": 0, "ptr_size": 0, "addr": 0}
    v.update(values)
    if v["addr"] == 1 << 64:
        v["addr"] = 8           # the first page: a NULL-like pointer
    pair.set(**v)
    (r1, raw1), (r2, raw2) = pair.snprintf()
    assert r1 == r2 < 0, what
    assert pair.out(raw1) == pair.out(raw2) == bytes(OUT_SIZE)


def _seq_text(pair: Pair) -> tuple[bytes, bytes | None]:
    ours = read_iter(pair.ours.programs["seq_show"]).text
    theirs = None
    if pair.ko is not None:
        from ebee.kernel.iter import read_iter as kernel_read
        pair.ko.maps[".bss"].update(bytes(4), bytes(pair.ours.bss.map.lookup(0)))
        theirs = kernel_read(pair.ko.programs["seq_show"])
    return ours, theirs


@pytest.mark.kernel
def test_seq_printf_btf_agrees_with_the_kernel(vmlinux, pair):
    _kernel_or_skip(pair)
    types = sample_types(vmlinux, 400 if SLOW else 40)
    for tid in types:
        data, flags = case(tid)
        pair.set(obj=data, type_id=tid, flags=flags | BTF_F_PTR_RAW, out_size=0, ptr_size=0,
                 addr=0)
        ours, theirs = _seq_text(pair)
        assert ours == theirs, (tid, str(vmlinux[tid]))


def test_render_of_an_ip_header(vmlinux):
    """The kernel's text for this header (checked against bpf_snprintf_btf above)."""
    tid = vmlinux.find("iphdr", "STRUCT").id
    data = bytes.fromhex("4500003c1c4640004006b1e6c0a80001c0a800c7")
    assert render(vmlinux, tid, data, BTF_F_COMPACT) == (
        "(struct iphdr){.ihl = (__u8)0x5,.version = (__u8)0x4,.tot_len = (__be16)15360,"
        ".id = (__be16)17948,.frag_off = (__be16)64,.ttl = (__u8)64,.protocol = (__u8)6,"
        ".check = (__sum16)59057,(union){(struct){.saddr = (__be32)16820416,"
        ".daddr = (__be32)3338709184,},.addrs = (struct){.saddr = (__be32)16820416,"
        ".daddr = (__be32)3338709184,},},}")
    assert render(vmlinux, tid, data, BTF_F_COMPACT | BTF_F_NONAME) == (
        "{0x5,0x4,15360,17948,64,64,6,59057,{{16820416,3338709184,},"
        "{16820416,3338709184,},},}")
    eth = vmlinux.find("ethhdr", "STRUCT").id
    assert render(vmlinux, eth, b"ab\0cde" + bytes(8), BTF_F_COMPACT) == (
        "(struct ethhdr){.h_dest = (unsigned char[])['a','b',],}")
    with pytest.raises(ValueError):
        render(vmlinux, tid, data[:10])
