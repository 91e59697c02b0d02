"""ebee's on-disk cache: results that are expensive to compute and a pure function of a key.

What is kept (one subdirectory each):

* ``btf/``  -- the running kernel's BTF, parsed: its type index, that it validated, and
  the name indexes (by name; by essential name and kind, what CO-RE looks candidates up
  in), keyed by the SHA-256 of the raw BTF and the parser's source;
* ``jit/``  -- JIT images: the native object and the program-table layout, keyed by the
  program's instructions, checked or unchecked mode, the JIT's source, LLVM's version
  and the host CPU;
* ``verdicts/`` -- verifier verdicts at BPF_PROG_LOAD's defaults (``Program.verdict``),
  keyed by the relocated instructions, the referenced maps' definitions (and frozen
  contents), the program's type, attach target, flags, license and BTF, the kernel and
  ebee's source (see ``ebee.program``).

Where: ``$EBEE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/ebee``, else
``~/.cache/ebee``.  ``EBEE_CACHE=0`` turns it off (nothing read, nothing written).

An entry is one file: a magic line, the SHA-256 of the payload, the full key, the
payload.  Reading checks all three; an entry that fails (truncated, corrupt, written
under another key) is removed and reported as absent, so the caller recomputes and
rewrites it -- a bad entry is never trusted.  Writes go to a temporary file renamed into
place, so a reader never sees half an entry, and a read-only or full disk only means no
cache.  Keys include a digest of the source files that compute the cached value, so an
edited or upgraded ebee never reads what an older one wrote.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

MAGIC = b"ebee-cache 1\n"
_SUM = 32          # bytes of SHA-256
OFF_VALUES = ("0", "off", "no", "false")


def enabled() -> bool:
    """Whether the cache is on (``EBEE_CACHE=0`` turns it off)."""
    return os.environ.get("EBEE_CACHE", "1").strip().lower() not in OFF_VALUES


def root() -> Path:
    """The cache directory (which need not exist yet)."""
    env = os.environ.get("EBEE_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ebee"


def digest(*parts: bytes | str) -> str:
    """A key from parts (each length-prefixed, so no two part lists collide)."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


@lru_cache(maxsize=None)
def source_digest(*files: str) -> str:
    """A digest of source files (the code a cached value depends on): each file's path,
    size and modification time -- any edit, checkout or reinstall changes it, and a
    stat costs a fraction of reading the file in the process's first compile."""
    h = hashlib.sha256()
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{f}\0missing\0".encode())
    return h.hexdigest()


class Cache:
    """One kind of entry (a subdirectory of :func:`root`)."""

    def __init__(self, kind: str, directory: Path | None = None):
        self.kind = kind
        self.directory = directory     # fixed location (tests, EBEE_JIT_CACHE); else root()

    def path(self, key: str) -> Path:
        base = self.directory if self.directory is not None else root() / self.kind
        return base / key[:2] / f"{key}.bin"

    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key``; None if off, absent or not intact (then the
        entry is removed)."""
        if not enabled():
            return None
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        kb = key.encode()
        head = len(MAGIC) + _SUM
        if (raw[:len(MAGIC)] == MAGIC and raw[head:head + len(kb) + 1] == kb + b"\n"):
            payload = raw[head + len(kb) + 1:]
            if hashlib.sha256(payload).digest() == raw[len(MAGIC):head]:
                return payload
        try:                  # corrupt or stale: never trusted, rebuilt by the caller
            path.unlink()
        except OSError:
            pass
        return None

    def put(self, key: str, payload: bytes) -> None:
        if not enabled():
            return
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(MAGIC + hashlib.sha256(payload).digest() + key.encode() + b"\n")
                    f.write(payload)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass      # an optimisation: a read-only or full disk just means no cache
