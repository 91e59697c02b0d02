"""The pin store: a bpffs equivalent that outlives processes, kept in SQLite.

Linux keeps pinned maps and programs alive in bpffs (``/sys/fs/bpf``) after
the process that made them exits.  ebee has no kernel to keep them, so a
pinned object is written to an SQLite database (WAL mode, synchronous=FULL):
a crash or SIGKILL at any moment leaves either the state before a write or
the state after it, never a torn one.

Paths are bpffs paths (``/sys/fs/bpf/my_map``); they name rows, not files.

The database lives at ``$EBEE_PIN_STORE`` if set (a file path), else
``$XDG_STATE_HOME/ebee/bpffs.sqlite3``, else ``~/.local/state/ebee/bpffs.sqlite3``.

When a pinned map's contents reach the store
-------------------------------------------
* pinning writes the map's metadata and all its elements (one transaction);
* user-space writes through the Python API of a pinned map -- ``update``,
  ``delete``, ``clear``, the batch operations -- are written through in the
  same call (one transaction each);
* writes by programs reach the store when the program run returns
  (``Program.run`` syncs), on :func:`sync_all` / :meth:`PinStore.sync`, and
  when the process exits normally (``atexit``);
* a sync writes only the elements that changed since the last sync, in one
  transaction, so two processes updating different keys of the same pinned
  map both see their writes; for the same key the later sync wins.

Opening a pin (:meth:`PinStore.get`) in a process that did not create it
builds a live map with the stored attributes and elements.  Within one
process a path always gives the same live object, as an fd from
``BPF_OBJ_GET`` names the same kernel map.

ARRAY, PERCPU_ARRAY, HASH and PERCPU_HASH maps are *shared* instead (:data:`SHARED_TYPES`): their values (and tables)
live in a file under :attr:`PinStore.files`, mapped in place into every process that
pins or opens them (:mod:`ebee.maps.shared`).  Their elements are not rows; programs and
user space in all processes meet in the same bytes, and nothing is synced.

Contents that are references to other live objects -- programs in a prog
array, maps in a map-in-map, perf-event and ring-buffer records, sockets --
are not persisted; their maps pin with their attributes only.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import uapi as U
from ..btf import BTF
from ..isa import encode
from ..maps import Map, MapError
from ..maps.shared import MMAP, SharedValues

ENV_VAR = "EBEE_PIN_STORE"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pins (
    path    TEXT PRIMARY KEY,
    kind    TEXT NOT NULL,          -- 'map' | 'prog'
    meta    TEXT NOT NULL,          -- JSON attributes
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS map_elems (
    path  TEXT NOT NULL,
    key   BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (path, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS map_btf (
    path          TEXT PRIMARY KEY,
    btf           BLOB NOT NULL,    -- the raw BTF the map was created with
    key_type_id   INTEGER NOT NULL,
    value_type_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prog_objects (
    path   TEXT PRIMARY KEY,
    object BLOB NOT NULL
);
"""

#: map types whose elements are references to live objects (not persisted)
_REFERENCE_TYPES = frozenset({
    U.MapType.PROG_ARRAY, U.MapType.PERF_EVENT_ARRAY, U.MapType.ARRAY_OF_MAPS,
    U.MapType.HASH_OF_MAPS, U.MapType.CGROUP_ARRAY, U.MapType.DEVMAP, U.MapType.DEVMAP_HASH,
    U.MapType.SOCKMAP, U.MapType.SOCKHASH, U.MapType.CPUMAP, U.MapType.XSKMAP,
    U.MapType.REUSEPORT_SOCKARRAY, U.MapType.RINGBUF, U.MapType.USER_RINGBUF,
    U.MapType.STACK_TRACE, U.MapType.SK_STORAGE, U.MapType.INODE_STORAGE,
    U.MapType.TASK_STORAGE, U.MapType.CGRP_STORAGE, U.MapType.STRUCT_OPS, U.MapType.ARENA,
    U.MapType.QUEUE, U.MapType.STACK, U.MapType.BLOOM_FILTER,
    U.MapType.CGROUP_STORAGE, U.MapType.PERCPU_CGROUP_STORAGE,
})


class PinError(OSError):
    """A pin-store operation failed; carries the errno bpffs would give."""


def default_location() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return Path(base) / "ebee" / "bpffs.sqlite3"


def normpath(path: str) -> str:
    p = os.path.normpath("/" + path.strip()) if not path.startswith("/") else os.path.normpath(path)
    if p in ("/", "."):
        raise PinError(22, f"invalid pin path {path!r}")
    return p


_MEMORY_SNAPSHOT_MAX = 4 << 20     # bytes of map memory a store keeps a copy of


#: map types whose values live in a file every process opening the pin maps (shared, as
#: one kernel map behind a bpffs pin); the other types are copied in and synced
SHARED_TYPES = frozenset({U.MapType.ARRAY, U.MapType.PERCPU_ARRAY, U.MapType.HASH,
                          U.MapType.PERCPU_HASH})


def _meta_of(m) -> dict:
    meta = {"type": int(m.type), "key_size": m.key_size, "value_size": m.value_size,
            "max_entries": m.max_entries, "flags": m.flags, "map_extra": m.map_extra,
            "name": m.name, "numa_node": getattr(m, "numa_node", 0), "frozen": bool(m.frozen)}
    if m.shared is not None:
        meta["file"] = os.path.basename(m.shared.path)
        meta["ncpus"] = m.ncpus
    return meta


def _shareable(m) -> bool:
    r = getattr(m, "value_region", None)
    return m.type in SHARED_TYPES and r is not None and isinstance(r.buf, MMAP) and r.size > 0


class PinStore:
    """One pin store (a SQLite database) and the live objects this process opened from it."""

    def __init__(self, location: str | os.PathLike | None = None):
        self.location = Path(location) if location is not None else default_location()
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._live: dict[str, Any] = {}                 # path -> live map / program
        self._synced: dict[str, dict[bytes, bytes]] = {}  # path -> elements at last sync
        # path -> (the map's memory, its meta) when last synced, for maps whose elements
        # live wholly in their regions: unchanged memory means unchanged elements, and a
        # run's sync is then a memory compare instead of a walk over every element
        self._memory: dict[str, tuple[list[bytes], bool]] = {}

    # -- the database ----------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.location.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(str(self.location), timeout=30, isolation_level=None,
                                     check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as e:
                raise PinError(5, f"pin store {self.location}: {e}") from None
            self._db = db
        return self._db

    def _tx(self):
        return _Tx(self)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self.sync()
                self._db.close()
                self._db = None

    # -- queries ----------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return self.db.execute("SELECT 1 FROM pins WHERE path=?", (normpath(path),)).fetchone() \
            is not None

    def list(self, prefix: str = "/") -> list[tuple[str, str, dict]]:
        pfx = normpath(prefix) if prefix not in ("", "/") else ""
        rows = self.db.execute("SELECT path, kind, meta FROM pins ORDER BY path").fetchall()
        return [(p, k, json.loads(m)) for p, k, m in rows
                if not pfx or p == pfx or p.startswith(pfx + "/")]

    def entries(self) -> list[tuple[int, str, str, dict, float]]:
        """Every pin as (id, path, kind, meta, created): the id is the pin's row, stable
        for as long as the pin exists (what bpftool's object ids are to bpffs)."""
        rows = self.db.execute("SELECT rowid, path, kind, meta, created FROM pins "
                               "ORDER BY rowid").fetchall()
        return [(i, p, k, json.loads(m), c) for i, p, k, m, c in rows]

    def info(self, path: str) -> tuple[str, dict] | None:
        row = self.db.execute("SELECT kind, meta FROM pins WHERE path=?",
                              (normpath(path),)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    # -- maps -----------------------------------------------------------------------------

    def pin_map(self, path: str, m, *, empty: bool = False) -> None:
        """Pin live map ``m`` at ``path`` (EEXIST if the path is taken).

        ``empty``: the caller just created ``m`` and knows it holds nothing (saves a scan).
        """
        p = normpath(path)
        with self._lock:
            if self.exists(p):
                raise PinError(17, f"{p}: File exists")
            created = None
            # a store in memory (":memory:") is one process's: nothing to share, no files
            if m.shared is None and _shareable(m) and str(self.location) != ":memory:":
                created = self._share(m)
            try:
                self._insert_map(p, m, empty)
            except BaseException:
                if created is not None:
                    _unlink(created)
                raise

    @property
    def files(self) -> Path:
        """The directory of the files shared maps' values live in."""
        return self.location.with_name(self.location.name + ".maps")

    def _share(self, m) -> str:
        """Move ``m``'s values into a new file and map it in place; its path."""
        try:
            self.files.mkdir(parents=True, exist_ok=True)
            f = str(self.files / f"{uuid.uuid4().hex}.map")
            table = getattr(m, "table", None)
            with m.lock:
                sv = SharedValues.create(f, bytes(m.value_region.buf), m.stride,
                                         bytes(table.buf) if table is not None else b"")
                try:
                    sv.attach(m.value_region.buf, table.buf if table is not None else None)
                except OSError:
                    sv.close()
                    _unlink(f)
                    raise
                m.shared = sv
        except OSError as e:
            raise PinError(e.errno or 5, f"pin store {self.files}: {e}") from None
        return f

    def _insert_map(self, p: str, m, empty: bool) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM pins WHERE path=?", (p,)).fetchone():
                raise PinError(17, f"{p}: File exists")
            db.execute("INSERT INTO pins VALUES (?, 'map', ?, ?)",
                       (p, json.dumps(_meta_of(m)), time.time()))
            btf = getattr(m, "btf", None)
            if btf is not None and (m.btf_key_type_id or m.btf_value_type_id):
                db.execute("INSERT INTO map_btf VALUES (?, ?, ?, ?)",
                           (p, btf.data, m.btf_key_type_id, m.btf_value_type_id))
            elems = {} if empty or m.shared is not None else dict(persisted_elements(m))
            db.executemany("INSERT INTO map_elems VALUES (?, ?, ?)",
                           [(p, k, v) for k, v in elems.items()])
        self._synced[p] = elems
        self._adopt(p, m)

    def get_map_if_exists(self, path: str):
        p = normpath(path)
        if p in self._live:
            return self._live[p]
        info = self.info(p)
        if info is None:
            return None
        if info[0] != "map":
            raise PinError(22, f"{p}: pinned object is a program, not a map")
        return self._open_map(p, info[1])

    def _open_map(self, p: str, meta: dict):
        btf_kw = {}
        row = self.db.execute("SELECT btf, key_type_id, value_type_id FROM map_btf WHERE path=?",
                              (p,)).fetchone()
        if row is not None:
            btf_kw = {"btf": BTF.from_bytes(bytes(row[0])), "btf_key_type_id": row[1],
                      "btf_value_type_id": row[2]}
        m = Map(U.MapType(meta["type"]), meta["key_size"], meta["value_size"],
                meta["max_entries"], meta["flags"], map_extra=meta.get("map_extra", 0),
                name=meta.get("name", ""), numa_node=meta.get("numa_node", 0),
                ncpus=meta.get("ncpus"), **btf_kw)
        if meta.get("file"):
            f = str(self.files / os.path.basename(meta["file"]))
            try:
                sv = SharedValues.open(f)
                try:
                    table = getattr(m, "table", None)
                    sv.attach(m.value_region.buf, table.buf if table is not None else None)
                except OSError:
                    sv.close()
                    raise
            except OSError as e:
                m.close()
                raise PinError(e.errno or 5, f"{p}: values file {f}: {e}") from None
            m.shared = sv
            if meta.get("frozen"):
                m.freeze()
            self._synced[p] = {}
            self._adopt(p, m)
            return m
        elems = {bytes(k): bytes(v) for k, v in self.db.execute(
            "SELECT key, value FROM map_elems WHERE path=?", (p,))}
        for k, v in elems.items():
            _put(m, k, v)
        if meta.get("frozen"):
            m.freeze()
        self._synced[p] = elems
        self._adopt(p, m)
        return m

    def _adopt(self, p: str, m: Map) -> None:
        """Track ``m`` as the live object of ``p`` and write its user-space updates through."""
        self._live[p] = m
        _STORES.add(self)
        pins = _PINS.setdefault(m, [])
        if not pins:
            m.watchers.append(_write_through)
        pins.append((weakref.ref(self), p))

    def sync(self, path: str | None = None) -> None:
        """Write what changed in live pinned maps since the last sync (one transaction each)."""
        with self._lock:
            paths = [normpath(path)] if path else list(self._live)
            for p in paths:
                m = self._live.get(p)
                if m is None or _kind(m) != "map":
                    continue
                if m.shared is not None:
                    # the values are the file's own; only ``frozen`` can change in the meta
                    if self._memory.get(p, (None, None))[1] != bool(m.frozen):
                        with self._tx() as db:
                            db.execute("UPDATE pins SET meta=? WHERE path=?",
                                       (json.dumps(_meta_of(m)), p))
                        self._memory[p] = ([], bool(m.frozen))
                    if path is None:
                        m.shared.flush()
                    continue
                regions = m.regions if m.elements_in_regions else ()
                # of the meta only ``frozen`` changes in a map's life
                seen = self._memory.get(p)
                if seen is not None and seen[1] == bool(m.frozen) and \
                        len(seen[0]) == len(regions) and \
                        all(memoryview(r.buf) == b for r, b in zip(regions, seen[0])):
                    continue
                try:
                    now = dict(persisted_elements(m))
                except Exception:
                    continue     # a closed map: nothing left to write
                if regions and sum(r.size for r in regions) <= _MEMORY_SNAPSHOT_MAX:
                    self._memory[p] = ([bytes(r.buf) for r in regions], bool(m.frozen))
                old = self._synced.get(p, {})
                if now == old:
                    continue
                with self._tx() as db:
                    if not db.execute("SELECT 1 FROM pins WHERE path=?", (p,)).fetchone():
                        continue    # unpinned meanwhile
                    gone = [(p, k) for k in old if k not in now]
                    changed = [(p, k, v) for k, v in now.items() if old.get(k) != v]
                    db.executemany("DELETE FROM map_elems WHERE path=? AND key=?", gone)
                    db.executemany("INSERT OR REPLACE INTO map_elems VALUES (?, ?, ?)", changed)
                    db.execute("UPDATE pins SET meta=? WHERE path=?",
                               (json.dumps(_meta_of(m)), p))
                self._synced[p] = now

    def _write_key(self, p: str, m, key: bytes | None) -> None:
        """Write one element (or its absence) through to the store."""
        if m.shared is not None:
            return      # the write is already in the shared file
        if key is None or p not in self._live:
            self.sync(p)
            return
        raw = _raw_lookup(m, key)
        with self._lock, self._tx() as db:
            if raw is None:
                db.execute("DELETE FROM map_elems WHERE path=? AND key=?", (p, key))
                self._synced.setdefault(p, {}).pop(key, None)
            else:
                db.execute("INSERT OR REPLACE INTO map_elems VALUES (?, ?, ?)", (p, key, raw))
                self._synced.setdefault(p, {})[key] = raw

    # -- programs ---------------------------------------------------------------------------

    def pin_program(self, path: str, prog) -> None:
        p = normpath(path)
        obj = prog.object
        meta = {"name": prog.name, "section": prog.section, "type": int(prog.type),
                "object_path": obj.path, "insns": sum(i.slots for i in prog.insns), "tag": prog_tag(prog),
                "maps": sorted(obj.maps), "license": prog.license}
        with self._lock, self._tx() as db:
            if db.execute("SELECT 1 FROM pins WHERE path=?", (p,)).fetchone():
                raise PinError(17, f"{p}: File exists")
            db.execute("INSERT INTO pins VALUES (?, 'prog', ?, ?)",
                       (p, json.dumps(meta), time.time()))
            db.execute("INSERT INTO prog_objects VALUES (?, ?)", (p, obj.spec.data))
        self._live[p] = prog

    def _open_program(self, p: str, meta: dict) -> "PinnedProgram":
        row = self.db.execute("SELECT object FROM prog_objects WHERE path=?", (p,)).fetchone()
        if row is None:
            raise PinError(2, f"{p}: pinned program has no object")
        return PinnedProgram(p, meta["name"], U.ProgType(meta["type"]), bytes(row[0]),
                             meta.get("object_path"))

    def adopt_program(self, path: str, prog) -> None:
        """Record ``prog`` as the live program of the pin at ``path`` (after its object was
        loaded again from the pinned bytes)."""
        self._live[normpath(path)] = prog

    # -- generic --------------------------------------------------------------------------------

    def get(self, path: str):
        """The live map or program pinned at ``path`` (ENOENT if none).  A program pinned by
        another process comes back as a :class:`PinnedProgram` (its object's bytes): loading
        it again is the session's business (``ebee.get_pinned``)."""
        p = normpath(path)
        with self._lock:
            if p in self._live:
                return self._live[p]
            info = self.info(p)
            if info is None:
                raise PinError(2, f"{p}: No such file or directory")
            kind, meta = info
            return self._open_map(p, meta) if kind == "map" else self._open_program(p, meta)

    def unpin(self, path: str) -> None:
        p = normpath(path)
        with self._lock, self._tx() as db:
            row = db.execute("SELECT meta FROM pins WHERE path=?", (p,)).fetchone()
            if row is None:
                raise PinError(2, f"{p}: No such file or directory")
            db.execute("DELETE FROM pins WHERE path=?", (p,))
            f = json.loads(row[0]).get("file")
            if f and not any(json.loads(mt).get("file") == f for (mt,) in db.execute(
                    "SELECT meta FROM pins WHERE kind='map'")):
                # live maps in any process keep their mapping, as a map outlives its
                # last pin while fds hold it
                _unlink(str(self.files / os.path.basename(f)))
            db.execute("DELETE FROM map_elems WHERE path=?", (p,))
            db.execute("DELETE FROM map_btf WHERE path=?", (p,))
            db.execute("DELETE FROM prog_objects WHERE path=?", (p,))
        self._live.pop(p, None)
        self._synced.pop(p, None)
        self._memory.pop(p, None)


@dataclass(frozen=True)
class PinnedProgram:
    """A program pin whose program is not live in this process: what it takes to load it."""
    path: str
    name: str
    type: U.ProgType
    object: bytes             # the pinned object's ELF bytes
    object_path: str | None


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, store: PinStore):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.db = self.store.db
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, et, ev, tb) -> None:
        if et is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


def _unlink(f: str) -> None:
    try:
        os.unlink(f)
    except OSError:
        pass


def _kind(o) -> str:
    return "map" if isinstance(o, Map) else "prog"


def persisted_elements(m: Map):
    """(raw key, raw value) of every element a pinned map persists."""
    if m.type in _REFERENCE_TYPES:
        return
    for k in list(m.keys()):
        kb = m.key_conv.pack(k) if not isinstance(k, bytes) else k
        raw = _raw_lookup(m, kb)
        if raw is not None:
            yield kb, raw


def _raw_lookup(m, key: bytes) -> bytes | None:
    try:
        v = m.lookup(key)
    except (MapError, KeyError):
        return None
    if isinstance(v, list):
        return b"".join(x if isinstance(x, bytes) else m.value_conv.pack(x) for x in v)
    return v if isinstance(v, bytes) else m.value_conv.pack(v)


def _put(m, key: bytes, raw: bytes) -> None:
    if m.percpu:
        vs = m.value_size
        m.update(key, [raw[i * vs:(i + 1) * vs] for i in range(len(raw) // vs)][:m.ncpus]
                 if len(raw) // vs >= m.ncpus else raw[:vs])
    else:
        m.update(key, raw)


def _write_through(m: Map, key: bytes | None) -> None:
    """A pinned map's watcher: each user-space write reaches its stores in the same call."""
    for ref, p in list(_PINS.get(m, ())):
        st = ref()
        if st is not None and st._live.get(p) is m:
            st._write_key(p, m, key)


# ---------------------------------------------------------------------------
# the process's stores

_STORES: "weakref.WeakSet[PinStore]" = weakref.WeakSet()
# the stores and paths each live pinned map is pinned at
_PINS: "weakref.WeakKeyDictionary[Map, list[tuple[weakref.ref, str]]]" = weakref.WeakKeyDictionary()
_DEFAULT: dict[str, PinStore] = {}


def default_store() -> PinStore:
    """The store at :func:`default_location` (re-read from the environment each call)."""
    loc = str(default_location())
    st = _DEFAULT.get(loc)
    if st is None:
        st = _DEFAULT[loc] = PinStore(loc)
    return st


def release_default(location: str | os.PathLike) -> None:
    """Close the default store at ``location`` and forget it: its live maps stop writing
    through, so a temporary store (one per test) can be thrown away."""
    st = _DEFAULT.pop(str(location), None)
    if st is None:
        return
    with st._lock:
        try:
            st.close()
        except (sqlite3.Error, PinError):
            pass
        st._live.clear()
        st._synced.clear()
    _STORES.discard(st)


def sync_maps(maps) -> None:
    """Flush the given live maps to every store they are pinned in."""
    for m in maps:
        for ref, p in list(_PINS.get(m, ())):
            st = ref()
            if st is not None and st._live.get(p) is m:
                try:
                    st.sync(p)
                except (sqlite3.Error, PinError):
                    pass


def sync_all() -> None:
    """Flush program-side writes of every pinned map this process holds."""
    for st in list(_STORES):
        try:
            st.sync()
        except (sqlite3.Error, PinError):
            pass


atexit.register(sync_all)


def prog_tag(prog) -> str:
    """The kernel's program tag: the first 8 bytes of SHA-1 over the instructions with
    map fds and addresses blanked (``bpf_prog_calc_tag``)."""
    raw = bytearray(encode(prog.insns))
    i = 0
    while i < len(raw):
        code, regs = raw[i], raw[i + 1]
        if code == (U.BPF_LD | U.BPF_IMM | U.BPF_DW):
            if (regs >> 4) in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
                raw[i + 4:i + 8] = b"\0\0\0\0"
                raw[i + 12:i + 16] = b"\0\0\0\0"
            i += 16
            continue
        i += 8
    return hashlib.sha1(bytes(raw)).hexdigest()[:16]
