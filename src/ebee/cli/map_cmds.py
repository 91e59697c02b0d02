"""``ebee map``: show, dump, look up, update, delete and pin maps like ``bpftool map``.

Maps are named by their pin path in the ebee pin store (``ebee map dump
/sys/fs/bpf/counts``); ``ebee map pin OBJ NAME PATH`` pins a map of an object.
Keys and values are bytes, as bpftool takes them: ``key 0x0a 0 0 1`` or
``key hex 0a 00 00 01``.  Updates are written through to the store at once.
"""
from __future__ import annotations

from .common import UsageError, print_json
from .fs_cmds import say_pinned
from ..fs import normpath
from ..session.select import KEYWORDS, pinned
from .prog_cmds import _fs_call, load_object, select_pins, store_of


def register(sub) -> None:
    p = sub.add_parser("map", help="show, dump, update and pin maps (like bpftool map)")
    ps = p.add_subparsers(dest="map_cmd", metavar="CMD")
    ps.required = True

    def common(q, json_=True):
        q.add_argument("--store", metavar="DB", help="pin store (default: $EBEE_PIN_STORE or "
                                                      "~/.local/state/ebee/bpffs.sqlite3)")
        if json_:
            q.add_argument("-j", "--json", action="store_true", help="JSON output")

    q = ps.add_parser("show", aliases=["list"], help="list pinned maps: show [id N | pinned "
                                                     "PATH | name NAME | DIR]")
    q.add_argument("sel", nargs="*", metavar="MAP")
    common(q)
    q.set_defaults(func=cmd_show)

    q = ps.add_parser("dump", help="print every element: dump id N | pinned PATH | name NAME")
    q.add_argument("sel", nargs="+", metavar="MAP")
    common(q)
    q.set_defaults(func=cmd_dump)

    q = ps.add_parser("lookup", help="print one element: lookup MAP key BYTES...")
    q.add_argument("sel", nargs="+", metavar="MAP key BYTES")
    common(q)
    q.set_defaults(func=cmd_lookup)

    q = ps.add_parser("update", help="update MAP key BYTES... value BYTES... [any|exist|noexist]")
    q.add_argument("sel", nargs="+", metavar="MAP key BYTES value BYTES")
    common(q)
    q.set_defaults(func=cmd_update)

    q = ps.add_parser("delete", help="delete one element: delete MAP key BYTES...")
    q.add_argument("sel", nargs="+", metavar="MAP key BYTES")
    common(q)
    q.set_defaults(func=cmd_delete)

    q = ps.add_parser("pin", help="pin map NAME of object OBJ at PATH")
    q.add_argument("obj")
    q.add_argument("name")
    q.add_argument("path")
    common(q, json_=False)
    q.set_defaults(func=cmd_pin)


# ---------------------------------------------------------------------------------- parsing

def parse_bytes(tokens: list[str], what: str) -> bytes:
    """bpftool's byte syntax: ``0x0a 0 0 1`` (each token one byte) or ``hex 0a 00 00 01``."""
    if not tokens:
        raise UsageError(f"error: {what}: no bytes given")
    if tokens[0] == "hex":
        try:
            return bytes.fromhex("".join(tokens[1:]))
        except ValueError:
            raise UsageError(f"error: {what}: invalid hex bytes {' '.join(tokens[1:])!r}") from None
    out = bytearray()
    for t in tokens:
        try:
            v = int(t, 0)
        except ValueError:
            raise UsageError(f"error: {what}: invalid byte {t!r}") from None
        if not 0 <= v <= 255:
            raise UsageError(f"error: {what}: byte {t!r} is out of range")
        out.append(v)
    return bytes(out)


def split_spec(spec: list[str], want_value: bool) -> tuple[bytes, bytes | None, int]:
    from .. import uapi as U
    if not spec or spec[0] != "key":
        raise UsageError("error: expected 'key' followed by bytes")
    rest = spec[1:]
    value = None
    flags = U.BPF_ANY
    if rest and rest[-1] in ("any", "exist", "noexist"):
        flags = {"any": U.BPF_ANY, "exist": U.BPF_EXIST, "noexist": U.BPF_NOEXIST}[rest.pop()]
    if "value" in rest:
        i = rest.index("value")
        key, value = parse_bytes(rest[:i], "key"), parse_bytes(rest[i + 1:], "value")
    else:
        key = parse_bytes(rest, "key")
    if want_value and value is None:
        raise UsageError("error: expected 'value' followed by bytes")
    if not want_value and value is not None:
        raise UsageError("error: unexpected 'value'")
    return key, value, flags


def _hex(b: bytes) -> str:
    return " ".join(f"{x:02x}" for x in b)


def _json_bytes(b: bytes) -> list[str]:
    return [f"0x{x:02x}" for x in b]


def _open_map(args, *, spec: bool = False):
    """The one map the selector names (``args.path`` set to its pin); the tokens after
    the selector go to ``args.spec``."""
    st = store_of(args)
    rows, rest = select_pins(st, "map", args.sel)
    if len(rows) != 1:
        raise UsageError(f"error: {len(rows)} maps match; select one by id")
    if rest and not spec:
        raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    args.spec, args.path = rest, rows[0].path
    m = _fs_call(st.get, args.path)
    if hasattr(m, "insns"):
        raise UsageError(f"error: {args.path}: pinned object is a program, not a map")
    return st, m


def _raw_value(m, v) -> bytes:
    if isinstance(v, list):
        return b"".join(x if isinstance(x, bytes) else m.value_conv.pack(x) for x in v)
    return v if isinstance(v, bytes) else m.value_conv.pack(v)


def print_entry(m, key: bytes, value: bytes) -> None:
    """bpftool's plain element format."""
    vs = m.value_size
    break_names = m.key_size > 16 or vs > 16
    single = m.key_size + vs <= 24 and not break_names
    if getattr(m, "percpu", False):
        print(f"key:\n{_hex(key)}")
        for cpu in range(len(value) // vs if vs else 0):
            print(f"value (CPU {cpu:02d}): {_hex(value[cpu * vs:(cpu + 1) * vs])}")
        return
    if single:
        print(f"key: {_hex(key)}  value: {_hex(value)}")
    else:
        print(f"key:\n{_hex(key)}\nvalue:\n{_hex(value)}")


# ---------------------------------------------------------------------------------- commands

def cmd_show(args) -> int:
    from ..uapi import MapType
    st = store_of(args)
    if args.sel:
        found, rest = select_pins(st, "map", args.sel, prefix_ok=True)
        if rest:
            raise UsageError(f"error: unexpected {' '.join(rest)!r}")
    else:
        found = _fs_call(lambda: pinned(st, "map"))
    rows = [(x.id, x.path, x.meta) for x in found]
    if args.json:
        js = [{"id": i, "type": MapType(m["type"]).name.lower(), "name": m["name"],
               "flags": m["flags"], "bytes_key": m["key_size"],
               "bytes_value": m["value_size"], "max_entries": m["max_entries"],
               "frozen": int(m.get("frozen", False)), "pinned": [p]} for i, p, m in rows]
        one = bool(args.sel) and len(rows) == 1 and (
            args.sel[0] in KEYWORDS or args.sel[0].isdigit() or normpath(args.sel[0]) == rows[0][1])
        print_json(js[0] if one else js)
        return 0
    for i, p, m in rows:
        name = f"  name {m['name']}" if m["name"] else ""
        print(f"{i}: {MapType(m['type']).name.lower()}{name}  flags {m['flags']:#x}")
        print(f"\tkey {m['key_size']}B  value {m['value_size']}B  max_entries {m['max_entries']}"
              + ("  frozen" if m.get("frozen") else ""))
        print(f"\tpinned {p}")
    return 0


def _formatted(m, k: bytes, v: bytes) -> dict | None:
    """The element as BTF says (bpftool's "formatted"), or None without BTF."""
    btf = getattr(m, "btf", None)
    if btf is None or not m.btf_value_type_id:
        return None
    key = btf.format_value(m.btf_key_type_id, k, json=True) if m.btf_key_type_id else \
        int.from_bytes(k, "little")
    if getattr(m, "percpu", False):
        vs = m.value_size
        val = [{"cpu": c, "value": btf.format_value(m.btf_value_type_id, v[c * vs:(c + 1) * vs],
                                                    json=True)} for c in range(len(v) // vs)]
        return {"key": key, "values": val}
    return {"key": key, "value": btf.format_value(m.btf_value_type_id, v, json=True)}


def _btf_plain(items: list[dict]) -> str:
    """bpftool's plain output for maps with BTF: a pretty JSON list, elements indented."""
    import json
    parts = []
    for it in items:
        body = json.dumps(it, indent=4).splitlines()
        parts.append("\n".join([body[0]] + ["    " + x for x in body[1:]]))
    return "[" + ",".join(parts) + "\n]"


def cmd_dump(args) -> int:
    from ..fs import persisted_elements
    st, m = _open_map(args)
    elems = list(_fs_call(lambda: list(persisted_elements(m))))
    fmt = [_formatted(m, k, v) for k, v in elems]
    if args.json:
        out = []
        for (k, v), f in zip(elems, fmt):
            d = {"key": _json_bytes(k), "value": _json_bytes(v)}
            if f is not None:
                d["formatted"] = f
            out.append(d)
        print_json(out)
        return 0
    if elems and fmt[0] is not None:
        print(_btf_plain(fmt))
        return 0
    for k, v in elems:
        print_entry(m, k, v)
    print(f"Found {len(elems)} element{'s' if len(elems) != 1 else ''}")
    return 0


def cmd_lookup(args) -> int:
    from ..maps.errors import MapError
    st, m = _open_map(args, spec=True)
    key, _, _ = split_spec(args.spec, False)
    try:
        v = _raw_value(m, m.lookup(key))
    except (MapError, KeyError, ValueError) as e:
        raise UsageError(f"error: lookup failed: {getattr(e, 'strerror', None) or e}") from None
    f = _formatted(m, key, v)
    if args.json:
        d = {"key": _json_bytes(key), "value": _json_bytes(v)}
        if f is not None:
            d["formatted"] = f
        print_json(d)
    elif f is not None:
        import json
        print(json.dumps(f, indent=4))
    else:
        print_entry(m, key, v)
    return 0


def cmd_update(args) -> int:
    from ..maps.errors import MapError
    st, m = _open_map(args, spec=True)
    key, value, flags = split_spec(args.spec, True)
    try:
        m.update(key, value, flags)
    except (MapError, ValueError, TypeError) as e:
        raise UsageError(f"error: update failed: {getattr(e, 'strerror', None) or e}") from None
    st.sync(args.path)
    return 0


def cmd_delete(args) -> int:
    from ..maps.errors import MapError
    st, m = _open_map(args, spec=True)
    key, _, _ = split_spec(args.spec, False)
    try:
        m.delete(key)
    except (MapError, ValueError, KeyError) as e:
        raise UsageError(f"error: delete failed: {getattr(e, 'strerror', None) or e}") from None
    st.sync(args.path)
    return 0


def cmd_pin(args) -> int:
    st = store_of(args)
    obj = load_object(args.obj, store=st)
    m = obj.maps.get(args.name)
    if m is None:
        raise UsageError(f"error: {args.obj}: no map named {args.name!r} "
                         f"(has: {', '.join(obj.maps) or 'none'})")
    _fs_call(st.pin_map, args.path, m)
    say_pinned("map", args.name, args.path, store=st)
    return 0
