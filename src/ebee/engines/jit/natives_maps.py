"""``bpf_map_lookup_elem`` in native code, on the maps' own memory (``ebee.layouts.maps``).

Verified (unchecked) code looks maps up without leaving native code:

* ARRAY / PERCPU_ARRAY: ``values + index * stride (+ cpu * elem_size)`` after
  the bounds check -- Linux's ``array_map_gen_lookup``;
* HASH / PERCPU_HASH / LRU_HASH / LRU_PERCPU_HASH: the key is hashed exactly
  as the map hashes it (CRC-32, or Linux's jhash for BPF_F_ZERO_SEED tables),
  the bucket's chain walked comparing keys, and LRU tables get the entry's
  reference bit set, as ``HashMap.prog_lookup`` does.

The map type is read from the handle at run time, so one compiled program
serves whatever maps it is bound to; other types (and every map in checked
code, where r1 is not known to be a map) go to the Python helper.  Updates
and deletes stay in Python: the layout leaves chain edits, free lists and LRU
lists to the runtime that owns them.

Concurrency: like an RCU reader in Linux, a native lookup takes no lock.  A
chain walk is bounded by the table's slot count and only ever follows slot
indices, so a lookup racing a Python-side update (on another thread) can miss
or find the element, but never leaves the table's memory.
"""
from __future__ import annotations

from llvmlite import ir

from ...layouts import Layout
from ...layouts.maps import (HASH_JHASH, HTAB_BUCKET_SIZE, HTAB_ENTRY, HTAB_HEADER, MAP_HANDLE,
                             MAP_VIEW_OFF)
from ...maps.jhash import JHASH_INITVAL
from ...uapi import FuncId, MapType
from .irgen import PTR, ModuleGen, c64, i32, i64, native_helper

i8 = ir.IntType(8)
SLOW = 1            # "ask Python": never a value address (those are 8-aligned) nor NULL
_INT_TYPES = {1: i8, 4: i32, 8: i64}


def _crc_table() -> list[int]:
    t = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t.append(c)
    return t


def _ld(b: ir.IRBuilder, base, off, ty=i32, align=1):
    p = b.gep(base, [off if isinstance(off, ir.Value) else c64(off)], source_etype=i8)
    return b.load(p, typ=ty, align=align)


def _member(b: ir.IRBuilder, base, layout: Layout, name: str) -> ir.Value:
    """Load ``name`` of the ``layout`` structure at ``base``, typed and aligned by its size."""
    off, size = layout.members[name]
    return _ld(b, base, off, _INT_TYPES[size], align=size)


def _fn(g: ModuleGen, name: str, ret, args) -> tuple[ir.Function, bool]:
    fn = g.module.globals.get(name)
    if fn is not None:
        return fn, False
    fn = ir.Function(g.module, ir.FunctionType(ret, args), name)
    fn.linkage = "internal"
    return fn, True


def _crc32(g: ModuleGen) -> ir.Function:
    """``i32 ebee_crc32(ptr key, i64 n)``: zlib.crc32 of n bytes."""
    fn, new = _fn(g, "ebee_crc32", i32, [PTR, i64])
    if not new:
        return fn
    tab_ty = ir.ArrayType(i32, 256)
    tab = ir.GlobalVariable(g.module, tab_ty, "ebee_crc32_table")
    tab.global_constant = True
    tab.linkage = "internal"
    tab.initializer = ir.Constant(tab_ty, _crc_table())
    key, n = fn.args
    entry, loop, done = (fn.append_basic_block(x) for x in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_unsigned("==", n, c64(0)), done, loop)
    b.position_at_end(loop)
    k = b.phi(i64)
    crc = b.phi(i32)
    k.add_incoming(c64(0), entry)
    crc.add_incoming(ir.Constant(i32, 0xFFFFFFFF), entry)
    byte = b.zext(_ld(b, key, k, i8), i32)
    idx = b.zext(b.and_(b.xor(crc, byte), ir.Constant(i32, 0xFF)), i64)
    t = b.load(b.gep(tab, [c64(0), idx]), typ=i32)
    crc2 = b.xor(t, b.lshr(crc, ir.Constant(i32, 8)))
    k2 = b.add(k, c64(1))
    k.add_incoming(k2, loop)
    crc.add_incoming(crc2, loop)
    b.cbranch(b.icmp_unsigned("<", k2, n), loop, done)
    b.position_at_end(done)
    out = b.phi(i32)
    out.add_incoming(ir.Constant(i32, 0xFFFFFFFF), entry)
    out.add_incoming(crc2, loop)
    b.ret(b.xor(out, ir.Constant(i32, 0xFFFFFFFF)))
    return fn


def _jhash(g: ModuleGen) -> ir.Function:
    """``i32 ebee_jhash(ptr key, i64 n)``: Linux's jhash(key, n, 0).

    For n a multiple of 4 this equals jhash2 over the words (the tail is
    zero-padded either way), which is what ``htab_map_hash`` uses then.
    """
    fn, new = _fn(g, "ebee_jhash", i32, [PTR, i64])
    if not new:
        return fn
    key, n = fn.args
    entry, loop, body, tail, empty = (fn.append_basic_block(x) for x in
                                      ("entry", "loop", "body", "tail", "empty"))
    b = ir.IRBuilder(entry)
    rotl = g.intrinsic("llvm.fshl.i32", ir.FunctionType(i32, [i32, i32, i32]))

    def rol(x, k):
        return b.call(rotl, [x, x, ir.Constant(i32, k)])

    def mix(a, bb, c):
        a = b.sub(a, c); a = b.xor(a, rol(c, 4)); c = b.add(c, bb)       # noqa: E702
        bb = b.sub(bb, a); bb = b.xor(bb, rol(a, 6)); a = b.add(a, c)     # noqa: E702
        c = b.sub(c, bb); c = b.xor(c, rol(bb, 8)); bb = b.add(bb, a)     # noqa: E702
        a = b.sub(a, c); a = b.xor(a, rol(c, 16)); c = b.add(c, bb)       # noqa: E702
        bb = b.sub(bb, a); bb = b.xor(bb, rol(a, 19)); a = b.add(a, c)    # noqa: E702
        c = b.sub(c, bb); c = b.xor(c, rol(bb, 4)); bb = b.add(bb, a)     # noqa: E702
        return a, bb, c

    def final(a, bb, c):
        c = b.xor(c, bb); c = b.sub(c, rol(bb, 14))      # noqa: E702
        a = b.xor(a, c); a = b.sub(a, rol(c, 11))        # noqa: E702
        bb = b.xor(bb, a); bb = b.sub(bb, rol(a, 25))    # noqa: E702
        c = b.xor(c, bb); c = b.sub(c, rol(bb, 16))      # noqa: E702
        a = b.xor(a, c); a = b.sub(a, rol(c, 4))         # noqa: E702
        bb = b.xor(bb, a); bb = b.sub(bb, rol(a, 14))    # noqa: E702
        c = b.xor(c, bb); c = b.sub(c, rol(bb, 24))      # noqa: E702
        return c

    init = b.add(ir.Constant(i32, JHASH_INITVAL), b.trunc(n, i32))
    b.branch(loop)
    b.position_at_end(loop)
    va, vb, vc, off, left = (b.phi(t) for t in (i32, i32, i32, i64, i64))
    for v, x in ((va, init), (vb, init), (vc, init), (off, c64(0)), (left, n)):
        v.add_incoming(x, entry)
    b.cbranch(b.icmp_unsigned(">", left, c64(12)), body, tail)
    b.position_at_end(body)
    a2, b2, c2 = mix(b.add(va, _ld(b, key, off)), b.add(vb, _ld(b, key, b.add(off, c64(4)))),
                     b.add(vc, _ld(b, key, b.add(off, c64(8)))))
    for v, x in ((va, a2), (vb, b2), (vc, c2), (off, b.add(off, c64(12))), (left, b.sub(left, c64(12)))):
        v.add_incoming(x, body)
    b.branch(loop)
    b.position_at_end(tail)
    fin = fn.append_basic_block("final")
    b.cbranch(b.icmp_unsigned("==", left, c64(0)), empty, fin)
    b.position_at_end(empty)
    b.ret(vc)
    b.position_at_end(fin)
    # the last 1..12 bytes, zero-padded to three little-endian words
    words = []
    for w in range(3):
        acc = ir.Constant(i32, 0)
        for k in range(4):
            pos = w * 4 + k
            inside = b.icmp_unsigned(">", left, c64(pos))
            safe = b.select(inside, c64(pos), c64(0))
            byte = b.zext(_ld(b, key, b.add(off, safe), i8), i32)
            byte = b.select(inside, byte, ir.Constant(i32, 0))
            acc = b.or_(acc, b.shl(byte, ir.Constant(i32, 8 * k)))
        words.append(acc)
    b.ret(final(b.add(va, words[0]), b.add(vb, words[1]), b.add(vc, words[2])))
    return fn


def _keyeq(g: ModuleGen) -> ir.Function:
    """``i1 ebee_keyeq(ptr a, ptr b, i64 n)``."""
    fn, new = _fn(g, "ebee_keyeq", ir.IntType(1), [PTR, PTR, i64])
    if not new:
        return fn
    pa, pb, n = fn.args
    entry, words, wbody, bytes_, bbody, yes, no = (fn.append_basic_block(x) for x in
                                                   ("entry", "words", "wbody", "bytes", "bbody",
                                                    "yes", "no"))
    b = ir.IRBuilder(entry)
    b.branch(words)
    b.position_at_end(words)
    k = b.phi(i64)
    k.add_incoming(c64(0), entry)
    b.cbranch(b.icmp_unsigned("<=", b.add(k, c64(8)), n), wbody, bytes_)
    b.position_at_end(wbody)
    eq = b.icmp_unsigned("==", _ld(b, pa, k, i64), _ld(b, pb, k, i64))
    k.add_incoming(b.add(k, c64(8)), wbody)
    b.cbranch(eq, words, no)
    b.position_at_end(bytes_)
    j = b.phi(i64)
    j.add_incoming(k, words)
    more = fn.append_basic_block("more")
    b.cbranch(b.icmp_unsigned("<", j, n), more, yes)
    b.position_at_end(more)
    eq = b.icmp_unsigned("==", _ld(b, pa, j, i8), _ld(b, pb, j, i8))
    j.add_incoming(b.add(j, c64(1)), bbody)
    b.cbranch(eq, bbody, no)
    b.position_at_end(bbody)
    b.branch(bytes_)
    b.position_at_end(yes)
    b.ret(ir.Constant(ir.IntType(1), 1))
    b.position_at_end(no)
    b.ret(ir.Constant(ir.IntType(1), 0))
    return fn


def _lookup(g: ModuleGen) -> ir.Function:
    """``i64 ebee_map_lookup(ptr ts, i64 map, i64 key)``: value address, 0, or SLOW."""
    fn, new = _fn(g, "ebee_map_lookup", i64, [PTR, i64, i64])
    if not new:
        return fn
    ts, mp, key = fn.args
    blocks = {x: fn.append_basic_block(x) for x in
              ("entry", "array", "array_in", "hash", "crc", "jh", "walk", "loop", "cmp", "next",
               "found", "lru", "setref", "value", "miss", "slow")}
    b = ir.IRBuilder(blocks["entry"])
    h = b.inttoptr(b.sub(mp, c64(MAP_VIEW_OFF)), PTR)     # the handle precedes the view
    kp = b.inttoptr(key, PTR)
    mtype = _member(b, h, MAP_HANDLE, "type")
    cpu = g.ts_load(b, "cpu", ts)
    is_pc = b.or_(b.icmp_unsigned("==", mtype, ir.Constant(i32, int(MapType.PERCPU_ARRAY))),
                  b.or_(b.icmp_unsigned("==", mtype, ir.Constant(i32, int(MapType.PERCPU_HASH))),
                        b.icmp_unsigned("==", mtype, ir.Constant(i32, int(MapType.LRU_PERCPU_HASH)))))
    # a CPU a per-CPU map was not created for: the helper path stops the run
    # (Map.cpu_slot), as the interpreter's does, instead of an address past the values
    no_slot = b.and_(is_pc, b.icmp_unsigned(">=", cpu,
                                            b.zext(_member(b, h, MAP_HANDLE, "ncpus"), i64)))
    dispatch = fn.append_basic_block("dispatch")
    b.cbranch(no_slot, blocks["slow"], dispatch)
    b.position_at_end(dispatch)
    sw = b.switch(mtype, blocks["slow"])
    for t in (MapType.ARRAY, MapType.PERCPU_ARRAY):
        sw.add_case(ir.Constant(i32, int(t)), blocks["array"])
    for t in (MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH):
        sw.add_case(ir.Constant(i32, int(t)), blocks["hash"])

    def percpu_off(bld, elem_size):
        return bld.select(is_pc, bld.mul(cpu, elem_size), c64(0))

    # -- arrays
    b.position_at_end(blocks["array"])
    idx = b.zext(_ld(b, kp, 0), i64)
    inside = b.icmp_unsigned("<", idx, b.zext(_member(b, h, MAP_HANDLE, "max_entries"), i64))
    b.cbranch(inside, blocks["array_in"], blocks["miss"])
    b.position_at_end(blocks["array_in"])
    es = b.zext(_member(b, h, MAP_HANDLE, "elem_size"), i64)
    stride = b.mul(es, b.zext(_member(b, h, MAP_HANDLE, "slots"), i64))
    base = _member(b, h, MAP_HANDLE, "values")
    b.ret(b.add(b.add(base, b.mul(idx, stride)), percpu_off(b, es)))

    # -- hash tables
    b.position_at_end(blocks["hash"])
    ctl = b.inttoptr(_member(b, h, MAP_HANDLE, "ctl"), PTR)
    ks = b.zext(_member(b, ctl, HTAB_HEADER, "key_size"), i64)
    kind = _member(b, ctl, HTAB_HEADER, "hash_kind")
    b.cbranch(b.icmp_unsigned("==", kind, ir.Constant(i32, HASH_JHASH)), blocks["jh"], blocks["crc"])
    b.position_at_end(blocks["crc"])
    hc = b.call(_crc32(g), [kp, ks])
    b.branch(blocks["walk"])
    b.position_at_end(blocks["jh"])
    hj = b.call(_jhash(g), [kp, ks])
    b.branch(blocks["walk"])
    b.position_at_end(blocks["walk"])
    hv = b.phi(i32)
    hv.add_incoming(hc, blocks["crc"])
    hv.add_incoming(hj, blocks["jh"])
    nb = _member(b, ctl, HTAB_HEADER, "n_buckets")
    bucket = b.zext(b.and_(hv, b.sub(nb, ir.Constant(i32, 1))), i64)
    buckets = b.inttoptr(_member(b, ctl, HTAB_HEADER, "buckets"), PTR)
    first = _ld(b, buckets, b.mul(bucket, c64(HTAB_BUCKET_SIZE)), align=HTAB_BUCKET_SIZE)
    entries = b.inttoptr(_member(b, ctl, HTAB_HEADER, "entries"), PTR)
    esz = b.zext(_member(b, ctl, HTAB_HEADER, "entry_size"), i64)
    nslots = _member(b, ctl, HTAB_HEADER, "nslots")
    b.branch(blocks["loop"])
    b.position_at_end(blocks["loop"])
    cur = b.phi(i32)
    steps = b.phi(i32)
    cur.add_incoming(first, blocks["walk"])
    steps.add_incoming(ir.Constant(i32, 0), blocks["walk"])
    live = b.and_(b.icmp_unsigned("!=", cur, ir.Constant(i32, 0)), b.icmp_unsigned("<=", steps, nslots))
    b.cbranch(live, blocks["cmp"], blocks["miss"])
    b.position_at_end(blocks["cmp"])
    slot = b.zext(b.sub(cur, ir.Constant(i32, 1)), i64)
    ent = b.gep(entries, [b.mul(slot, esz)], source_etype=i8)
    same_hash = b.icmp_unsigned("==", _member(b, ent, HTAB_ENTRY, "hash"), hv)
    with b.if_then(same_hash):
        eq = b.call(_keyeq(g), [b.gep(ent, [c64(HTAB_ENTRY.off("key"))], source_etype=i8), kp, ks])
        with b.if_then(eq):
            b.branch(blocks["found"])
    b.branch(blocks["next"])
    b.position_at_end(blocks["next"])
    cur.add_incoming(_member(b, ent, HTAB_ENTRY, "next"), blocks["next"])
    steps.add_incoming(b.add(steps, ir.Constant(i32, 1)), blocks["next"])
    b.branch(blocks["loop"])
    b.position_at_end(blocks["found"])
    is_lru = b.or_(b.icmp_unsigned("==", mtype, ir.Constant(i32, int(MapType.LRU_HASH))),
                   b.icmp_unsigned("==", mtype, ir.Constant(i32, int(MapType.LRU_PERCPU_HASH))))
    b.cbranch(is_lru, blocks["lru"], blocks["value"])
    b.position_at_end(blocks["lru"])
    refp = b.gep(ent, [c64(HTAB_ENTRY.off("lru_ref"))], source_etype=i8)
    b.cbranch(b.icmp_unsigned("==", b.load(refp, typ=i8), ir.Constant(i8, 0)), blocks["setref"],
              blocks["value"])
    b.position_at_end(blocks["setref"])
    b.store(ir.Constant(i8, 1), refp)
    b.branch(blocks["value"])
    b.position_at_end(blocks["value"])
    vstride = b.zext(_member(b, ctl, HTAB_HEADER, "stride"), i64)
    values = _member(b, ctl, HTAB_HEADER, "values")
    es = b.zext(_member(b, h, MAP_HANDLE, "elem_size"), i64)
    b.ret(b.add(b.add(values, b.mul(slot, vstride)), percpu_off(b, es)))

    b.position_at_end(blocks["miss"])
    b.ret(c64(0))
    b.position_at_end(blocks["slow"])
    b.ret(c64(SLOW))
    return fn


@native_helper(FuncId.map_lookup_elem)
def _map_lookup_elem(g: ModuleGen, insn) -> ir.Value:
    b = g.b
    slot = g.layout.slot("helper", int(FuncId.map_lookup_elem))
    if g.checked:      # r1 may be anything: only the runtime can tell a map pointer
        return g.callback(slot, insn.pc, None, g.args15())
    fast = b.call(_lookup(g), [g.ts, g.get(1), g.get(2)])
    with b.if_else(b.icmp_unsigned("==", fast, c64(SLOW)), likely=False) as (then, other):
        with then:
            slow = g.callback(slot, insn.pc, None, g.args15())
            slow_bb = b.block
        with other:
            fast_bb = b.block
    phi = b.phi(i64)
    phi.add_incoming(slow, slow_bb)
    phi.add_incoming(fast, fast_bb)
    return phi
