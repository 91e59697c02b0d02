"""Native binding: IR module -> optimized machine code for the host.

Kept apart from IR building (:mod:`ebee.jit.irgen`, pure Python) the way
numba/llvmlite do it: one :class:`Codegen` per process owns the target
machine and the O2 pipeline; each compiled program is a :class:`CodeLibrary`
whose addresses can only be taken after :meth:`CodeLibrary.finalize` (the
one place that happens).

Whole images (object and layout) are kept on disk by the engine (``ebee.cache``,
keyed by the instructions, so a hit skips IR generation too); ``Codegen.cache_dir``
is a lower-level object cache keyed by a digest of the IR text, the LLVM version and
the host CPU, off unless set.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path

import llvmlite.binding as llvm
from llvmlite import ir

from . import JitError  # noqa: F401  (defined where importing it needs no llvmlite)


class CodeLibrary:
    """One program's machine code inside its own execution engine."""

    def __init__(self, codegen: "Codegen", engine, llmod, key: str, *, compile_ns: int,
                 cached: bool):
        self.codegen = codegen
        self._engine = engine
        self._llmod = llmod          # the engine owns it; keep the wrapper alive with it
        self.key = key
        self.compile_ns = compile_ns
        self.from_disk = cached
        self.object: bytes | None = None     # the native object, when asked to keep it
        self._finalized = False

    def finalize(self) -> None:
        if not self._finalized:
            with self.codegen.lock:
                self._engine.finalize_object()
            self._finalized = True

    def address(self, name: str) -> int:
        """The native address of ``name``; finalizes the code first."""
        self.finalize()
        addr = self._engine.get_function_address(name)
        if not addr:
            raise JitError(f"compiled program has no symbol {name!r}")
        return addr


class Codegen:
    """The host target machine, the optimisation pipeline and the object cache."""

    _instance: "Codegen | None" = None
    _make_lock = threading.Lock()

    def __init__(self, opt: int = 2):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.lock = threading.RLock()      # LLVM's C++ objects are not thread-safe
        self.opt = opt
        self.triple = llvm.get_process_triple()
        self.cpu = llvm.get_host_cpu_name()
        self.features = llvm.get_host_cpu_features().flatten()
        if self.triple.startswith("x86_64"):
            # clang emits rotates as shl/shr/or on two registers (it knows the top bits
            # agree); LLVM would fuse them into SHLD, whose 3-cycle latency lengthens
            # loop-carried chains (measured: the ALU loop of bench/jit.py, 9% slower)
            self.features += ",+slow-shld"
        self.target = llvm.Target.from_triple(self.triple)
        self.tm = self._new_tm()       # for passes and data layout; engines get their own
        target = self.target
        # relocation model "default" for ELF objects handed to pyelftools/capstone
        self.tm_obj = target.create_target_machine(cpu=self.cpu, features=self.features, opt=opt,
                                                   reloc="pic")
        self.data_layout = str(self.tm.target_data)
        self.cache_dir: Path | None = None

    def _new_tm(self):
        # An execution engine takes ownership of its target machine (and frees it
        # with itself), so every engine needs a fresh one.
        return self.target.create_target_machine(cpu=self.cpu, features=self.features,
                                                 opt=self.opt, codemodel="jitdefault")

    @classmethod
    def get(cls) -> "Codegen":
        with cls._make_lock:
            if cls._instance is None:
                cls._instance = Codegen()
            return cls._instance

    @property
    def host(self) -> str:
        return f"{self.triple} ({self.cpu})"

    # -- compiling ------------------------------------------------------------------

    def _prepare(self, module: ir.Module):
        module.triple = self.triple
        module.data_layout = self.data_layout
        text = str(module)
        try:
            llmod = llvm.parse_assembly(text)
            llmod.verify()
        except RuntimeError as e:   # a translator bug, never the program's fault
            raise JitError(f"LLVM rejected the generated IR: {e}") from None
        return text, llmod

    def _optimize(self, llmod) -> None:
        pto = llvm.create_pipeline_tuning_options(speed_level=self.opt)
        pb = llvm.create_pass_builder(self.tm, pto)
        pb.getModulePassManager().run(llmod, pb)

    def key(self, text: str) -> str:
        h = hashlib.sha256()
        for part in (text, str(llvm.llvm_version_info), self.triple, self.cpu, self.features):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def compile(self, module: ir.Module, *, keep_object: bool = False) -> CodeLibrary:
        """Optimize and compile ``module``; ``keep_object`` keeps the native object on the
        library (``.object``) for a cache of whole images."""
        t0 = time.perf_counter_ns()
        emitted: list[bytes] = []
        with self.lock:
            text, llmod = self._prepare(module)
            key = self.key(text)
            obj = self._disk_get(key)
            if obj is not None:
                engine = self._engine_of(obj)
            else:
                self._optimize(llmod)
                engine = llvm.create_mcjit_compiler(llmod, self._new_tm())
                if self.cache_dir is not None or keep_object:
                    engine.set_object_cache(lambda _m, buf: emitted.append(bytes(buf)),
                                            lambda _m: None)
                engine.finalize_object()
                if emitted:
                    self._disk_put(key, emitted[0])
        lib = CodeLibrary(self, engine, llmod, key, compile_ns=time.perf_counter_ns() - t0,
                          cached=obj is not None)
        if keep_object:
            lib.object = obj if obj is not None else (emitted[0] if emitted else None)
        return lib

    def _engine_of(self, obj: bytes):
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self._new_tm())
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        return engine

    def load_object(self, obj: bytes, key: str) -> CodeLibrary:
        """A library from a native object this codegen compiled before (no IR, no
        optimisation: what a cached image needs)."""
        t0 = time.perf_counter_ns()
        with self.lock:
            engine = self._engine_of(obj)
            engine.finalize_object()
        lib = CodeLibrary(self, engine, None, key, compile_ns=time.perf_counter_ns() - t0,
                          cached=True)
        lib.object = obj
        return lib

    def optimized_ir(self, module: ir.Module) -> str:
        with self.lock:
            _, llmod = self._prepare(module)
            self._optimize(llmod)
            return str(llmod)

    def emit_object(self, module: ir.Module) -> bytes:
        """An ELF object of the optimized module (what ``prog dump jited`` disassembles)."""
        with self.lock:
            _, llmod = self._prepare(module)
            self._optimize(llmod)
            return self.tm_obj.emit_object(llmod)

    # -- the on-disk object cache ---------------------------------------------------------

    def _disk_path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.o" if self.cache_dir is not None else None

    def _disk_get(self, key: str) -> bytes | None:
        path = self._disk_path(key)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def _disk_put(self, key: str, data: bytes) -> None:
        path = self._disk_path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # write-then-rename: a reader never sees half an object
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            pass   # the cache is an optimisation; a read-only disk just means no cache
