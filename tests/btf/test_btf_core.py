"""CO-RE relocations: against libbpf (bpftool's debug log and xlated dumps) and by construction."""
from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import re
import struct

import pytest
from elftools.elf.elffile import ELFFile

import ebee
from btf_testlib import DATA, run_bpftool
from ebee import uapi as U
from ebee.btf import BTF, Kind
from ebee.btf.builder import BTFBuilder
from ebee.btf.core import (POISON_HELPER_ID, CoreError, CoreRelocator, apply_core_relos,
                           essential_name_len, patch_slots, types_match)
from ebee.btf.elf import btf_sections
from ebee.btf.ext import BTFExt, CoreRelo

RK = U.CoreReloKind
LD_IMM64 = U.BPF_LD | U.BPF_IMM | U.BPF_DW


EXAMPLES = DATA.parent.parent.parent / "examples"


def _has_core_relos(path) -> bool:
    try:
        s = btf_sections(path.read_bytes())
        return bool(s.btf_ext) and any(BTFExt.from_bytes(s.btf_ext, BTF.from_bytes(s.btf))
                                       .core_relos.values())
    except Exception:
        return False


#: every shipped example that uses CO-RE is checked against libbpf too
CORE_EXAMPLES = sorted(p for p in EXAMPLES.rglob("*.o") if _has_core_relos(p))


class Obj:
    """A test object: BTF, .BTF.ext, and each function's raw slots."""

    def __init__(self, name):
        from elftools.elf.elffile import ELFFile
        data = (DATA / name).read_bytes()
        s = btf_sections(data)
        self.btf = BTF.from_bytes(s.btf, pointer_size=s.pointer_size)
        self.ext = BTFExt.from_bytes(s.btf_ext, self.btf)
        elf = ELFFile(io.BytesIO(data))
        self.funcs: dict[str, tuple[str, int, list[list[int]]]] = {}   # name -> sec, start, slots
        for sym in elf.get_section_by_name(".symtab").iter_symbols():
            if sym["st_info"]["type"] != "STT_FUNC":
                continue
            sec = elf.get_section(sym["st_shndx"])
            raw = sec.data()[sym["st_value"]:sym["st_value"] + sym["st_size"]]
            self.funcs[sym.name] = (sec.name, sym["st_value"] // 8,
                                    [list(x) for x in struct.iter_unpack("<BBhi", raw)])

    def func_at(self, sec: str, insn: int) -> str:
        for name, (s, start, slots) in self.funcs.items():
            if s == sec and start <= insn < start + len(slots):
                return name
        raise AssertionError(f"no function at {sec}+{insn}")

    def relocate(self, target: BTF) -> dict[tuple[str, int], tuple]:
        """(function, relo # in its section) -> (insn in function, value or 'poison', new size)."""
        r = CoreRelocator(self.btf, target)
        out = {}
        for sec, relos in self.ext.core_relos.items():
            for idx, relo in enumerate(relos):
                fn = self.func_at(sec, relo.insn)
                _, start, slots = self.funcs[fn]
                res = r.resolve(relo, idx)
                msg = patch_slots(slots, relo.insn - start, res)
                out[(fn, idx)] = (relo.insn - start, "poison" if msg else res.new_val,
                                  res.new_sz if res.new_sz != res.orig_sz and not msg else None)
        return out


# ------------------------------------------------------------------------------ libbpf


_PATCHED = re.compile(r"libbpf: prog '(\w+)': relo #(\d+): patched insn #(\d+) \([A-Z0-9/]+\) "
                      r"(?:imm64|imm|off) \d+ -> (\d+)$")
_MEMSZ = re.compile(r"libbpf: prog '(\w+)': relo #(\d+): patched insn #\d+ \(LDX/ST/STX\) "
                    r"mem_sz \d+ -> (\d+)$")
_POISON = re.compile(r"libbpf: prog '(\w+)': relo #(\d+): substituting insn #(\d+) w/ invalid")


def libbpf_relocations(path, pin: str) -> dict[tuple[str, int], tuple]:
    """What libbpf did, from bpftool's debug log (the load itself may be rejected)."""
    log = run_bpftool("-d", "prog", "loadall", str(path), pin, check=False).stderr
    out: dict[tuple[str, int], list] = {}
    for line in log.splitlines():
        if m := _PATCHED.match(line):
            out[(m[1], int(m[2]))] = [int(m[3]), int(m[4]), None]
        elif m := _MEMSZ.match(line):
            out[(m[1], int(m[2]))][2] = int(m[3])
        elif m := _POISON.match(line):
            key = (m[1], int(m[2]))
            insn = min(int(m[3]), out[key][0]) if key in out else int(m[3])
            out[key] = [insn, "poison", None]
    return {k: tuple(v) for k, v in out.items()}


@pytest.mark.parametrize("name", ["core_kern.o", "core_poison.o"] + CORE_EXAMPLES,
                         ids=lambda p: getattr(p, "name", p))
def test_relocations_match_libbpf(name, vmlinux, pin_dir):
    obj = Obj(name)
    mine = obj.relocate(vmlinux)
    theirs = libbpf_relocations(DATA / name, str(pin_dir))
    assert len(theirs) == len(mine) >= (8 if isinstance(name, str) else 1)
    assert mine == theirs


def test_poisons_and_size_adjustments_are_covered(vmlinux):
    res = Obj("core_poison.o").relocate(vmlinux)
    assert sum(v[1] == "poison" for v in res.values()) == 4
    assert any(v[2] == 4 for v in res.values())      # an 8-byte load shrunk to the kernel's 4


def _xlated(prog_pin: str) -> list[tuple[int, int, int]]:
    """(code, off, imm) per slot of the kernel's xlated program."""
    out = []
    for e in json.loads(run_bpftool("-j", "prog", "dump", "xlated", "pinned", prog_pin,
                                    "opcodes").stdout):
        o = e["opcodes"]
        code = int(o["code"], 16)
        off = struct.unpack("<h", bytes(int(x, 16) for x in o["off"]))[0]
        raw = bytes(int(x, 16) for x in o["imm"])     # 8 bytes (both halves) for ld_imm64
        imm = struct.unpack_from("<i", raw)[0]
        out.append((code, off, imm))
        if code == LD_IMM64:
            out.append((0, 0, struct.unpack_from("<i", raw, 4)[0]))
    return out


@pytest.mark.parametrize("name", ["core_kern.o"] + CORE_EXAMPLES,
                         ids=lambda p: getattr(p, "name", p))
def test_relocated_instructions_match_the_kernels_xlated(name, vmlinux, pin_dir):
    """The offsets and immediates in the program the kernel accepted are ebee's."""
    obj = Obj(name)
    results = obj.relocate(vmlinux)
    with contextlib.ExitStack() as stack:
        _load_and_pin(DATA / name, pin_dir, stack)
        checked = _compare_xlated(obj, results, pin_dir)
    assert len(results) - 4 <= checked and checked >= (35 if isinstance(name, str) else 1)


def _load_and_pin(path, pin_dir, stack) -> None:
    """Every program of ``path`` in the kernel, pinned under ``pin_dir`` by name.

    bpftool here carries libbpf 1.1, which skips ``.struct_ops.link`` and so loads
    struct_ops programs without their attach type (ENOTSUPP): those objects go through
    ebee's kernel backend (their relocations were compared with libbpf's debug log
    above; here the kernel must accept them and keep the offsets).
    """
    with open(path, "rb") as f:
        struct_ops = ELFFile(f).get_section_by_name(".struct_ops.link") is not None
    if not struct_ops:
        run_bpftool("prog", "loadall", str(path), str(pin_dir))
        return
    os.makedirs(pin_dir, exist_ok=True)          # bpftool loadall would make it
    k = stack.enter_context(ebee.load(path).load_kernel())
    for name, prog in k.programs.items():
        prog.pin(f"{pin_dir}/{name}")


def _compare_xlated(obj, results, pin_dir) -> int:
    checked = 0
    for fn, (sec, _, slots) in obj.funcs.items():
        if sec == ".text":
            continue            # subprograms are not pinned on their own
        theirs = _xlated(f"{pin_dir}/{fn}")
        # align on opcodes (the kernel may rewrite or inline around helper calls)
        sm = difflib.SequenceMatcher(a=[s[0] for s in slots], b=[t[0] for t in theirs],
                                     autojunk=False)
        pos = {a + k: b + k for a, b, n in sm.get_matching_blocks() for k in range(n)}
        for (f, _), (insn, _, _) in results.items():
            if f != fn or insn not in pos:
                continue        # the verifier removed it as dead code (a known branch)
            code, off, imm = theirs[pos[insn]]
            mine = slots[insn]
            assert (code, off) == (mine[0], mine[2]), (fn, insn)
            if code != LD_IMM64 and code & 0x07 in (U.BPF_ALU, U.BPF_ALU64):
                assert imm == mine[3], (fn, insn)
            elif code == LD_IMM64:
                assert imm == mine[3] and theirs[pos[insn] + 1][2] == slots[insn + 1][3]
            checked += 1
    return checked


# ------------------------------------------------------------------------------ by construction


def test_essential_names():
    cases = {"task_struct": 11, "task_struct___2": 11, "a___b___c": 5, "x___": 4,
             "___x": 4, "a____b": 6, "": 0, "s___flavor_x": 1}
    for name, n in cases.items():
        assert essential_name_len(name) == n, name


def _target_task(pid_off: int, with_flags: bool = True, name: str = "task_struct") -> BTFBuilder:
    b = BTFBuilder()
    i = b.add_int("int", 4, signed=True)
    u = b.add_int("unsigned int", 4)
    c = b.add_int("char", 1, signed=True)
    arr = b.add_array(c, i, 16)
    ptr = b.next_id + 1
    members = [("pid", i, pid_off * 8), ("tgid", i, pid_off * 8 + 32),
               ("comm", arr, pid_off * 8 + 64), ("real_parent", ptr, pid_off * 8 + 192)]
    if with_flags:
        members.append(("flags", u, pid_off * 8 + 256))
    b.add_struct(name, pid_off + 64, members)
    b.add_ptr(ptr - 1)
    return b


def test_custom_target_moves_offsets():
    obj = Obj("core_kern.o")
    target = _target_task(100).build()
    r = CoreRelocator(obj.btf, target)
    by_access = {}
    for sec, relos in obj.ext.core_relos.items():
        for idx, relo in enumerate(relos):
            if relo.kind is RK.FIELD_BYTE_OFFSET and obj.btf[relo.type_id].name == "task_struct___t":
                by_access[relo.access_str] = r.resolve(relo, idx)
    assert by_access["0:0"].new_val == 100 and by_access["0:1"].new_val == 104
    assert by_access["0:3"].new_val == 124
    assert by_access["0:2:5"].new_val == 113                 # comm[5]
    assert by_access["0:5"].poison                           # no sched_migrated in this target


def test_field_exists_and_missing_type():
    obj = Obj("core_kern.o")
    target = _target_task(0, with_flags=False).build()
    r = CoreRelocator(obj.btf, target)
    got = {}
    for sec, relos in obj.ext.core_relos.items():
        for idx, relo in enumerate(relos):
            got.setdefault((relo.kind, obj.btf[relo.type_id].name, relo.access_str),
                           r.resolve(relo, idx))
    assert got[(RK.FIELD_EXISTS, "task_struct___t", "0:6")].new_val == 0     # no flags
    assert got[(RK.TYPE_EXISTS, "task_struct___t", "0")].new_val == 1
    assert got[(RK.TYPE_SIZE, "task_struct___t", "0")].new_val == 64
    assert got[(RK.TYPE_ID_TARGET, "task_struct___t", "0")].new_val == target.find("task_struct").id
    assert got[(RK.ENUMVAL_EXISTS, "bpf_map_type___t", "1")].new_val == 0    # no such enum
    assert got[(RK.ENUMVAL_VALUE, "bpf_map_type___t", "1")].poison
    assert got[(RK.TYPE_MATCHES, "list_head___t", "0")].new_val == 0


def test_ambiguous_candidates_fail_the_load():
    obj = Obj("core_kern.o")
    b = _target_task(0)
    i = b.add_int("int2", 4, signed=True)
    b.add_struct("task_struct___other", 64, [("pid", i, 256)])
    r = CoreRelocator(obj.btf, b.build())
    relo = next(x for x in obj.ext.core_relos["kprobe/do_nanosleep"] if x.access_str == "0:0")
    with pytest.raises(CoreError, match="field offset ambiguity"):
        r.resolve(relo, 0)


def test_agreeing_candidates_are_fine_and_pruned():
    obj = Obj("core_kern.o")
    b = _target_task(8)
    i = b.add_int("int2", 4, signed=True)
    b.add_struct("task_struct___copy", 72, [("pid", i, 64)])
    r = CoreRelocator(obj.btf, b.build())
    relo = next(x for x in obj.ext.core_relos["kprobe/do_nanosleep"] if x.access_str == "0:0")
    assert r.resolve(relo, 0).new_val == 8
    assert len(r.candidates(relo.type_id)) == 2


def _local(kind: RK, access: str, type_id: int) -> CoreRelo:
    return CoreRelo(0, type_id, access, kind)


def test_malformed_relocations():
    b = BTFBuilder()
    i = b.add_int("int", 4, signed=True)
    s = b.add_struct("s", 8, [("a", i, 0), ("b", i, 32)])
    anon = b.add_struct("", 4, [("x", i, 0)])
    btf = b.build()
    r = CoreRelocator(btf, btf)
    for relo, message in [(_local(RK.FIELD_BYTE_OFFSET, "0:7", s), "member 7"),
                          (_local(RK.FIELD_BYTE_OFFSET, "0::1", s), "malformed access string"),
                          (_local(RK.FIELD_BYTE_OFFSET, "0:-1", s), "malformed access string"),
                          (_local(RK.TYPE_SIZE, "1", s), "must be \"0\""),
                          (_local(RK.ENUMVAL_VALUE, "0", s), "does not name an enumerator"),
                          (_local(RK.FIELD_BYTE_OFFSET, "0:0", anon), "anonymous"),
                          (_local(RK.FIELD_BYTE_OFFSET, "0:0:1", s), "unexpected kind INT")]:
        with pytest.raises(CoreError, match=message):
            r.resolve(relo)


def test_patch_validates_the_instruction():
    b = BTFBuilder()
    i = b.add_int("int", 4, signed=True)
    s = b.add_struct("s", 8, [("a", i, 0), ("b", i, 32)])
    local = b.build()
    t = BTFBuilder()
    ti = t.add_int("int", 4, signed=True)
    t.add_struct("s", 16, [("b", ti, 96)])
    res = CoreRelocator(local, t.build()).resolve(_local(RK.FIELD_BYTE_OFFSET, "0:1", s))
    assert (res.orig_val, res.new_val) == (4, 12)
    alu = [[U.BPF_ALU64 | U.BPF_ADD | U.BPF_K, 1, 0, 4]]
    assert patch_slots(alu, 0, res) is None and alu[0][3] == 12
    ldx = [[U.BPF_LDX | U.BPF_MEM | U.BPF_W, 0x21, 4, 0]]
    assert patch_slots(ldx, 0, res) is None and ldx[0][2] == 12
    with pytest.raises(CoreError, match="unexpected ALU/ALU64 value: got 5"):
        patch_slots([[U.BPF_ALU64 | U.BPF_ADD | U.BPF_K, 1, 0, 5]], 0, res)
    with pytest.raises(CoreError, match="register operand"):
        patch_slots([[U.BPF_ALU64 | U.BPF_ADD | U.BPF_X, 0x21, 0, 4]], 0, res)
    with pytest.raises(CoreError, match="unrecognized instruction"):
        patch_slots([[U.BPF_JMP | U.BPF_JA, 0, 4, 0]], 0, res)
    missing = CoreRelocator(local, BTFBuilder().build()).resolve(
        _local(RK.FIELD_BYTE_OFFSET, "0:1", s))
    lddw = [[LD_IMM64, 1, 0, 4], [0, 0, 0, 0]]
    assert "failed to resolve" in patch_slots(lddw, 0, missing)
    assert lddw == [[U.BPF_JMP | U.BPF_CALL, 0, 0, POISON_HELPER_ID]] * 2


def test_bitfield_shifts_for_both_byte_orders():
    for order, lshift in (("little", 64 - (3 + 5)), ("big", 3 + 32)):
        b = BTFBuilder(byteorder=order)
        u = b.add_int("unsigned int", 4)
        s = b.add_struct("bf", 4, [("a", u, 0, 3), ("b", u, 3, 5)])
        btf = b.build()
        r = CoreRelocator(btf, btf)
        got = {k: r.resolve(_local(k, "0:1", s)) for k in (RK.FIELD_LSHIFT_U64,
                                                           RK.FIELD_RSHIFT_U64,
                                                           RK.FIELD_BYTE_SIZE,
                                                           RK.FIELD_BYTE_OFFSET)}
        assert got[RK.FIELD_LSHIFT_U64].new_val == lshift, order
        assert got[RK.FIELD_RSHIFT_U64].new_val == 64 - 5
        assert got[RK.FIELD_BYTE_SIZE].new_val == 4 and got[RK.FIELD_BYTE_OFFSET].new_val == 0


def test_types_match_rules():
    def mk(fn):
        b = BTFBuilder()
        ids = fn(b)
        return b.build(), ids

    la, (ls, le) = mk(lambda b: (b.add_struct("s", 8, [("x", b.add_int("int", 4, signed=True), 0)]),
                                 b.add_enum("e", 4, [("A", 1)])))
    ta, (ts, te) = mk(lambda b: (b.add_struct("s", 16, [("y", b.add_int("long", 8, signed=True), 0),
                                                        ("x", b.add_int("int", 4, signed=True), 64)]),
                                 b.add_enum64("e", 4, [("B", 0), ("A", 9)])))
    assert types_match(la, ls, ta, ts)          # members by name, extra target members allowed
    assert types_match(la, le, ta, te)          # enum vs enum64 of the same size, names only
    ub, (us,) = mk(lambda b: (b.add_struct("s", 8, [("x", b.add_int("int", 4), 0)]),))
    assert not types_match(ub, us, ta, ts)      # signedness differs
    fb, (fp,) = mk(lambda b: (b.add_ptr(b.add_fwd("s")),))
    tb, (tp,) = mk(lambda b: (b.add_ptr(b.add_struct("s", 4, [])),))
    assert types_match(fb, fp, tb, tp)          # a fwd behind a pointer matches the struct
    ab, (a3,) = mk(lambda b: (b.add_array(b.add_int("int", 4, signed=True), 1, 3),))
    a4b, (a4,) = mk(lambda b: (b.add_array(b.add_int("int", 4, signed=True), 1, 4),))
    assert not types_match(ab, a3, a4b, a4)


def test_apply_core_relos_on_instructions(vmlinux):
    from ebee.isa import decode, encode
    obj = Obj("core_kern.o")
    data = {}
    from elftools.elf.elffile import ELFFile
    elf = ELFFile(io.BytesIO((DATA / "core_kern.o").read_bytes()))
    for sec in obj.ext.core_relos:
        data[sec] = decode(elf.get_section_by_name(sec).data())
    report = apply_core_relos(data, obj.ext, obj.btf, vmlinux)
    assert not report.poisoned and len(report.results) == sum(map(len, obj.ext.core_relos.values()))
    expect = Obj("core_kern.o")
    expect.relocate(vmlinux)
    for sec, insns in report.insns.items():
        slots = [s for name, (s_, start, sl) in sorted(expect.funcs.items(), key=lambda x: x[1][1])
                 if s_ == sec for s in sl]
        assert encode(insns) == b"".join(struct.pack("<BBhi", *s) for s in slots)
    assert report.summary()["byte_off"] > 10
    assert data[next(iter(data))] is not report.insns[next(iter(data))]


def test_no_target_btf_is_an_error():
    obj = Obj("core_kern.o")
    relo = obj.ext.core_relos["kprobe/do_nanosleep"][0]
    with pytest.raises(CoreError, match="no target BTF"):
        CoreRelocator(obj.btf, None).resolve(relo)
    assert CoreRelocator(obj.btf, None).resolve(
        next(r for r in obj.ext.core_relos["kprobe/do_nanosleep"]
             if r.kind is RK.TYPE_ID_LOCAL)).new_val > 0


def test_poisoned_instruction_reports_its_relocation_when_run(vmlinux):
    """The interpreter names the failed relocation when it reaches a poisoned insn."""
    ebee = pytest.importorskip("ebee")
    from ebee.errors import VMError
    from ebee.engines import Machine
    from ebee.memory import Region
    try:
        obj = ebee.load(DATA / "core_poison.o")
    except Exception as e:           # the loader is another package's work in progress
        pytest.skip(f"ebee.load unavailable: {e}")
    prog = obj.programs["core_poison"]
    m = Machine()
    task = m.memory.add(Region(4096, "task"))
    ctx = m.memory.add(Region(struct.pack("<QQ", 0, task.start), "ctx"))
    try:
        with pytest.raises(VMError, match=r"CO-RE relocation #3 failed: .*task_struct___p\.tgid"):
            m.bind(prog.insns).run(ctx.start)
    finally:
        m.memory.remove(ctx)
        m.memory.remove(task)
        obj.close()
