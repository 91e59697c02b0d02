"""Running a compiled script in the kernel, as bpftrace does.

Maps are created with BPF_MAP_CREATE and handed to the programs by fd; BEGIN
and END are raw-tracepoint programs run once with BPF_PROG_TEST_RUN (bpftrace
0.17 does the same); the other probes attach through ebee's kernel backend
(links are detached on exit).  Events come back through one BPF ring buffer,
in the order they were written.
"""
from __future__ import annotations

import bisect
import os
import pwd
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from elftools.elf.elffile import ELFFile

from .. import uapi as U
from ..kernel import attach as kattach
from ..kernel.btf import KernelBTF
from ..kernel.kallsyms import text_symbols
from ..kernel.map_handle import KernelMapHandle
from ..kernel.maps import KernelMap
from ..kernel.prog import KernelLoadError, KernelProgram
from .codegen import CompiledProbe
from .compiler import Script, compile_script, program_btf
from .errors import AttachError
from .layout import EVENTS_MAP
from .probes import HARDWARE_EVENTS, SOFTWARE_EVENTS, Target
from .session import Session
from .userspace import verifier_error
from .values import strftime

PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE = 0, 1
PERF_COUNT_SW_CPU_CLOCK = 0
NOTIFY_ENV = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"


# -- symbols -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _ElfSyms:
    addrs: tuple[int, ...]
    ends: tuple[int, ...]
    names: tuple[str, ...]
    loads: tuple[tuple[int, int, int], ...]      # (p_offset, p_vaddr, p_filesz)
    exec_type: str


@lru_cache(maxsize=64)
def _elf_symbols(path: str) -> _ElfSyms | None:
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            syms = []
            for secname in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(secname)
                if sec is None:
                    continue
                for s in sec.iter_symbols():
                    if s["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and s["st_value"] \
                            and s.name:
                        syms.append((s["st_value"], s["st_value"] + max(s["st_size"], 1),
                                     s.name.split("@", 1)[0]))
            loads = tuple((seg["p_offset"], seg["p_vaddr"], seg["p_filesz"])
                          for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD")
            etype = elf.header["e_type"]
    except (OSError, Exception):
        return None
    syms.sort()
    return _ElfSyms(tuple(s[0] for s in syms), tuple(s[1] for s in syms),
                    tuple(s[2] for s in syms), loads, etype)


def elf_symbol_address(path: str, name: str) -> int:
    """uaddr(): a symbol's address as the ELF file gives it (0 if it has none)."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for secname in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(secname)
                if sec is None:
                    continue
                for s in sec.iter_symbols():
                    if s.name == name and s["st_shndx"] != "SHN_UNDEF":
                        return s["st_value"]
    except (OSError, Exception):
        pass
    return 0


def _maps_of(pid: int) -> list[tuple[int, int, int, str]]:
    out = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi, int(parts[2], 16), parts[5]))
    except OSError:
        pass
    return out


class KernelResolver:
    def __init__(self, trace: "KernelTrace"):
        self.t = trace
        self._maps: dict[int, list] = {}

    def _ksym(self, addr: int) -> tuple[str, int] | None:
        ts = text_symbols()
        k = bisect.bisect_right(ts.addrs, addr) - 1
        if k < 0 or not ts.addrs[k]:
            return None
        return ts.names[k], addr - ts.addrs[k]

    def ksym(self, addr: int) -> str:
        hit = self._ksym(addr)
        return hit[0] if hit else f"0x{addr:x}"

    def _usym(self, addr: int, pid: int) -> tuple[str, int] | None:
        maps = self._maps.get(pid)
        if maps is None or not maps:
            maps = self._maps[pid] = _maps_of(pid)
        for lo, hi, off, path in maps:
            if lo <= addr < hi:
                syms = _elf_symbols(path)
                if syms is None:
                    return None
                foff = addr - lo + off
                vaddr = foff
                for p_off, p_vaddr, p_sz in syms.loads:
                    if p_off <= foff < p_off + p_sz:
                        vaddr = foff - p_off + p_vaddr
                        break
                k = bisect.bisect_right(syms.addrs, vaddr) - 1
                if k >= 0 and vaddr < syms.ends[k]:
                    return syms.names[k], vaddr - syms.addrs[k]
                return None
        return None

    def usym(self, addr: int, pid: int) -> str:
        hit = self._usym(addr, pid)
        return hit[0] if hit else f"0x{addr:x}"

    def stack(self, kind: str, mode: str, limit: int, stack_id: int, pid: int) -> list[str]:
        name = self.t.res.stack_maps.get((kind, mode, limit))
        m = self.t.bpf_maps.get(name) if name else None
        if m is None or stack_id < 0:
            return []
        try:
            raw = bytes(m.raw_lookup(struct.pack("<I", stack_id)))
        except (KeyError, OSError):
            return []
        ips = [x for x in struct.unpack(f"<{len(raw) // 8}Q", raw) if x][:limit]
        out = []
        for ip in ips:
            hit = self._ksym(ip) if kind == "kstack" else self._usym(ip, pid)
            out.append(f"{hit[0]}+{hit[1]}" if hit else f"0x{ip:x}")
        return out

    def probe(self, probe_id: int) -> str:
        probes = self.t.res.probes
        return probes[probe_id] if probe_id < len(probes) else ""

    def username(self, uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    def strftime(self, fmt: str, ns: int) -> str:
        return strftime(fmt, ns + self.t.boot_offset_ns)


# -- the session -------------------------------------------------------------------------

@dataclass
class _Prog:
    probe: CompiledProbe
    kprog: KernelProgram
    lines: dict


class KernelTrace(Session):
    """A script loaded into the running kernel."""

    def __init__(self, script: Script, *, json: bool = False,
                 write: Callable[[str], Any] | None = None, pid: int | None = None,
                 child_argv: list[str] | None = None, quiet: bool = False,
                 print_maps_at_exit: bool = False):
        super().__init__(script, KernelResolver(self), json=json, write=write)
        self.pid = pid
        self.child_argv = child_argv
        self.child_pid: int | None = None
        self.quiet = quiet
        self.print_maps_at_exit = print_maps_at_exit
        self.progs: list[_Prog] = []
        self.attachments: list[Any] = []
        self.reader = None
        self.stopped = False
        self._go_fd: int | None = None
        self.boot_offset_ns = time.time_ns() - time.monotonic_ns()
        self.start_ns = time.monotonic_ns()
        self._lock = threading.Lock()
        self.kbtf: KernelBTF | None = None

    # -- setup ---------------------------------------------------------------------------

    def _create_maps(self) -> None:
        for name, spec in self.res.maps.items():
            km = KernelMap(spec.map_type, spec.key_size, spec.value_size, spec.max_entries,
                           name=spec.kernel_name)
            self.bpf_maps[name] = KernelMapHandle(km, name=spec.kernel_name)

    def resolve_reloc(self, name: str) -> tuple[int, int]:
        if name == "const:start_ns":
            return 0, self.start_ns
        if name == "const:cpid":
            return 0, self.child_pid or 0
        if name.startswith("ksym:"):
            ts = text_symbols()
            sym = name[5:]
            for a, n in zip(ts.addrs, ts.names):
                if n == sym:
                    return 0, a
            return 0, 0
        if name.startswith("cgroupid:"):
            try:
                return 0, os.stat(name[9:]).st_ino
            except OSError:
                return 0, 0
        if name.startswith("usym:"):
            binary, _, sym = name[5:].rpartition(":")
            return 0, elf_symbol_address(binary, sym)
        if name.startswith("const:"):
            return 0, 0
        if name.startswith("value:"):
            _, mname, off = name.split(":")
            return U.BPF_PSEUDO_MAP_VALUE, self.bpf_maps[mname].fd | (int(off) << 32)
        return U.BPF_PSEUDO_MAP_FD, self.bpf_maps[name].fd

    def _load(self, p: CompiledProbe) -> _Prog:
        insns, lines = self.script.link(p, self.resolve_reloc)
        kw = {}
        if p.callbacks:
            pb = program_btf()
            if self.kbtf is None:
                self.kbtf = KernelBTF(pb.data)
            kw = {"btf": self.kbtf, "func_info": [(f.insn, f.type_id) for f in pb.func_info(p)]}
        try:
            kp = KernelProgram(insns, p.prog_type, license="GPL", name=p.kernel_name, **kw)
        except KernelLoadError as e:
            try:
                KernelProgram(insns, p.prog_type, license="GPL", name=p.kernel_name,
                              log_level=1, **kw)
            except KernelLoadError as e2:
                raise verifier_error(self.script, p, e2.log or "", str(e2), lines) from None
            raise verifier_error(self.script, p, e.log or "", str(e), lines) from None
        return _Prog(p, kp, lines)

    def _fork_child(self) -> None:
        """-c: fork now, exec only when everything is attached (bpftrace's order)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(w)
                os.read(r, 1)
                os.close(r)
                os.execvp(self.child_argv[0], self.child_argv)
            except BaseException:
                os._exit(127)
        os.close(r)
        self.child_pid = pid
        self._go_fd = w

    def start(self) -> "KernelTrace":
        if self.child_argv:
            self._fork_child()
        try:
            self._create_maps()
            for p in self.script.probes:
                self.progs.append(self._load(p))
            if EVENTS_MAP in self.bpf_maps:
                self.reader = self.bpf_maps[EVENTS_MAP].reader(self._on_record)
            if not self.quiet:
                self.emit(self.fmt.attached(self.script.attach_count))
            for pr in self.progs:
                if pr.probe.targets[0].provider == "BEGIN":
                    pr.kprog.test_run(ctx=None, repeat=0)
            self.poll(0)
            if not self.exit_requested:
                for pr in self.progs:
                    if not pr.probe.targets[0].is_special:
                        for t in pr.probe.targets:
                            self.attachments.append(self._attach(pr, t))
            if os.environ.get(NOTIFY_ENV):
                print("__BPFTRACE_NOTIFY_PROBES_ATTACHED", file=sys.stderr, flush=True)
        except BaseException:
            self._kill_child()
            self.close()
            raise
        if self._go_fd is not None:
            os.write(self._go_fd, b"g")
            os.close(self._go_fd)
            self._go_fd = None
        return self

    def _attach(self, pr: _Prog, t: Target):
        p = t.provider
        kp = pr.kprog
        try:
            if p == "tracepoint":
                return kattach.tracepoint(kp, f"{t.target}/{t.func}")
            if p == "rawtracepoint":
                return kattach.raw_tracepoint(kp, t.func)
            if p in ("kprobe", "kretprobe"):
                return kattach.kprobe(kp, t.func, offset=t.offset, retprobe=p == "kretprobe")
            if p in ("uprobe", "uretprobe"):
                pid = self.pid if self.pid is not None else -1
                if t.func:
                    return kattach.uprobe(kp, t.target, symbol=t.func, offset=t.offset or None,
                                          retprobe=p == "uretprobe", pid=pid)
                return kattach.uprobe(kp, t.target, offset=t.offset, retprobe=p == "uretprobe",
                                      pid=pid)
            if p == "interval":
                return kattach.perf_event(kp, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK,
                                          sample_period=t.period_ns or None,
                                          sample_freq=t.frequency or None, cpus=[0])
            if p == "profile":
                return kattach.perf_event(kp, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK,
                                          sample_period=t.period_ns or None,
                                          sample_freq=t.frequency or None)
            if p in ("software", "hardware"):
                table = SOFTWARE_EVENTS if p == "software" else HARDWARE_EVENTS
                cfg = table[t.target][0]
                return kattach.perf_event(kp, PERF_TYPE_SOFTWARE if p == "software" else
                                          PERF_TYPE_HARDWARE, cfg, sample_period=int(t.func))
        except (OSError, ValueError) as e:
            if p in ("kprobe", "kretprobe"):
                print(f"create_probe_event: {e}", file=sys.stderr)
            raise AttachError(f"Error attaching probe: '{t.name}'") from None
        raise AttachError(f"Error attaching probe: '{t.name}' (ebee trace cannot attach "
                          f"{p} probes)")

    # -- running -------------------------------------------------------------------------

    def _on_record(self, rec) -> None:
        if rec.lost:
            self.lost += rec.lost
            return
        self.handle(rec.data)

    def poll(self, timeout: float | None = 0.1) -> int:
        if self.reader is None:
            if timeout:
                time.sleep(timeout)
            return 0
        with self._lock:
            return self.reader.poll(timeout)

    def child_running(self) -> bool:
        if self.child_pid is None:
            return True
        try:
            pid, _ = os.waitpid(self.child_pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == self.child_pid:
            self.child_pid_exited = True
            return False
        return True

    def target_alive(self) -> bool:
        """-p: the process still runs (a zombie has exited)."""
        if self.pid is None:
            return True
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def run_until_done(self, *, duration: float | None = None) -> None:
        """Read events until exit(), the -c command or -p process ends, or Ctrl-C."""
        deadline = time.monotonic() + duration if duration else None
        while not self.exit_requested and self.child_running() and self.target_alive():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.poll(0.05)
        self.poll(0)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for a in self.attachments:
            try:
                a.detach()
            except Exception:
                pass
        self.attachments = []
        self.poll(0)
        self.in_end = True
        for pr in self.progs:
            if pr.probe.targets[0].provider == "END":
                pr.kprog.test_run(ctx=None, repeat=0)
        self.poll(0)
        lost = self.lost + self.lost_events()
        if lost:
            self.emit(self.fmt.lost(lost))
        if self.print_maps_at_exit:
            self.finish_output()
        self._kill_child()

    def _kill_child(self) -> None:
        if self.child_pid is not None and not getattr(self, "child_pid_exited", False):
            try:
                if self._go_fd is not None:
                    os.close(self._go_fd)
                    self._go_fd = None
                os.kill(self.child_pid, signal.SIGTERM)
                os.waitpid(self.child_pid, 0)
            except (OSError, ChildProcessError):
                pass

    def close(self) -> None:
        for a in self.attachments:
            try:
                a.detach()
            except Exception:
                pass
        self.attachments = []
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        for pr in self.progs:
            pr.kprog.close()
        self.progs = []
        for m in self.bpf_maps.values():
            try:
                m.close()
            except Exception:
                pass
        if self.kbtf is not None:
            self.kbtf.close()
            self.kbtf = None

    # -- BCC-style API --------------------------------------------------------------------

    def __enter__(self) -> "KernelTrace":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.close()


def start_kernel(script: str | Script, *, params: list[str] | None = None,
                 filename: str = "stdin", unsafe: bool = False, json: bool = False,
                 write: Callable[[str], Any] | None = None, quiet: bool = True,
                 pid: int | None = None, print_maps_at_exit: bool = False) -> KernelTrace:
    """Compile (if given text), load, run BEGIN and attach: the script is live when this
    returns.  Events are read by ``poll()``/``run_until_done()``."""
    s = script if isinstance(script, Script) else compile_script(script, filename, params,
                                                                 unsafe=unsafe)
    t = KernelTrace(s, json=json, write=write or sys.stdout.write, pid=pid, quiet=quiet,
                    print_maps_at_exit=print_maps_at_exit)
    return t.start()


__all__ = ["KernelTrace", "start_kernel"]
