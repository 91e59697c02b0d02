"""freplace (BPF_PROG_TYPE_EXT) in user space, and an xdp-dispatcher in libxdp's style.

Linux lets an EXT program replace a *global* function of a loaded program
(``SEC("freplace/FUNC")``, loaded with ``attach_prog_fd`` and the function's BTF id,
attached with a tracing link): every call of FUNC then runs the EXT program instead.
:func:`replace_function` does that to a :class:`~ebee.program.Program`: the
replacement is verified as a program of the target's type (as the kernel resolves an
EXT program's type to its target's), and the result is a new program -- the target's
instructions with the replacement appended and every call of FUNC (``call`` and
callback ``lddw`` of BPF_PSEUDO_CALL/FUNC) sent there.  The target stays as it was.

What the kernel checks and this does too: FUNC must exist in the target's BTF and be
global ("Cannot replace static functions"), and the replacement must take as many
arguments.  What is approximated: the kernel verifies the replacement as a global
function with FUNC's argument types and does not check its return value; here it is
verified as the target type's main program (one context argument, the type's return
range), which refuses some replacements the kernel accepts and accepts none it refuses
for these reasons.

:class:`XdpDispatcher` runs several XDP programs on one interface as libxdp's
dispatcher does: in priority order (lower first, then by name), each one's verdict
ends the run unless its chain-call actions contain it (``XDP_PASS`` only, by default),
and XDP_PASS when all pass.  libxdp builds it from freplace; this one is spliced from
the same pieces, with a run counter per program in an ARRAY map (``runs``).  The
spliced program is plain XDP, so it also loads into a kernel that refuses EXT
programs (:meth:`XdpDispatcher.load_kernel`) and runs there under BPF_PROG_TEST_RUN.
"""
from __future__ import annotations

import dataclasses
import errno
from dataclasses import dataclass, field

from .. import uapi as U
from ..uapi import BtfFuncLinkage
from ..asm import assemble
from ..errors import EbeeError
from ..isa import OP_CALL, Instruction
from ..kernel.maps import KernelMap
from ..kernel.prog import KernelProgram
from ..maps import Map
from ..maps.base import by_id as map_by_id
from ..program import Program


class FreplaceError(EbeeError, OSError):
    """The replacement cannot attach; ``errno`` is the kernel's for the same refusal."""

    def __init__(self, err: int, reason: str):
        OSError.__init__(self, err, reason)
        self.reason = reason


def _slots(insns) -> int:
    return sum(i.slots for i in insns)


def _retarget(insns: list[Instruction], targets: dict[int, int]) -> list[Instruction]:
    """Calls (and callback loads) of a function starting at slot ``s`` sent to
    ``targets[s]`` instead."""
    out, pc = [], 0
    for i in insns:
        if (i.opcode == OP_CALL and i.src == U.BPF_PSEUDO_CALL) or \
                (i.spec.wide and i.src == U.BPF_PSEUDO_FUNC):
            dest = pc + i.imm + 1
            if dest in targets:
                i = dataclasses.replace(i, imm=targets[dest] - pc - 1)
        out.append(i)
        pc += i.slots
    return out


def _function_start(target: Program, func: str) -> tuple[int, int]:
    """(first slot, argument count) of global function ``func`` of ``target``."""
    b = target.btf
    if b is None or not target.func_info:
        raise FreplaceError(errno.EINVAL, f"{target.name} has no BTF func_info: freplace "
                                          f"needs the target's functions")
    for fi in target.func_info:
        t = b[fi.type_id]
        if t.name != func:
            continue
        if fi.insn_off == 0:
            raise FreplaceError(errno.EINVAL, f"{func} is {target.name}'s main program, "
                                              f"not a global function")
        if t.linkage != BtfFuncLinkage.GLOBAL:
            raise FreplaceError(errno.EINVAL, f"Cannot replace static functions ({func})")
        return fi.insn_off // 8, len(b[t.type_id].params)
    raise FreplaceError(errno.ESRCH, f"{target.name} has no function {func!r}")


def _arg_count(p: Program) -> int | None:
    if p.btf is None or not p.func_info:
        return None
    t = p.btf[p.func_info[0].type_id]
    return len(p.btf[t.type_id].params)


def as_target_type(ext: Program, target: Program) -> Program:
    """``ext`` as a program of ``target``'s type (what resolve_prog_type makes of an EXT
    program), verified; VerifierError if it does not verify so."""
    p = Program(list(ext.insns), target.type, name=ext.name,
                expected_attach_type=target.expected_attach_type, license=ext.license,
                btf=ext.btf, func_info=ext.func_info, line_info=ext.line_info,
                functions=ext.functions, verify=True)
    p.admit()
    return p


def splice(base: list[Instruction], functions: dict[int, list[Instruction]]) -> list[Instruction]:
    """``base`` with each function starting at slot ``s`` replaced by ``functions[s]``
    (appended, its own relative calls intact)."""
    end = _slots(base)
    targets, tail = {}, []
    for start, body in functions.items():
        targets[start] = end
        tail += body
        end += _slots(body)
    out, pc = [], 0
    for i in _retarget(list(base), targets) + tail:      # slots counted afresh
        out.append(dataclasses.replace(i, pc=pc, label=None))
        pc += i.slots
    return out


def replace_function(target: Program, func: str, ext: Program) -> Program:
    """``target`` with global function ``func`` replaced by ``ext`` (an EXT program, as
    ``SEC("freplace/func")`` loads, or one of the target's type)."""
    if ext.type not in (U.ProgType.EXT, target.type):
        raise FreplaceError(errno.EINVAL, f"{ext.name} is a {ext.type.name} program; only "
                                          f"EXT or {target.type.name} programs replace "
                                          f"functions of {target.name}")
    start, nargs = _function_start(target, func)
    got = _arg_count(ext)
    if got is not None and got != nargs:
        raise FreplaceError(errno.EINVAL, f"{ext.name} takes {got} arguments, {func} takes "
                                          f"{nargs}")
    body = as_target_type(ext, target)
    insns = splice(list(target.insns), {start: list(body.insns)})
    return Program(insns, target.type, name=target.name,
                   expected_attach_type=target.expected_attach_type, license=target.license,
                   functions=list(target.functions) +
                   [(f"{ext.name}:{n}", s + _slots(target.insns))
                    for n, s in body.functions])


# ---------------------------------------------------------------------------------------
# the xdp-dispatcher
# ---------------------------------------------------------------------------------------

#: libxdp's defaults
DEFAULT_PRIORITY = 50
DEFAULT_CHAIN = 1 << U.XdpAction.PASS
MAX_DISPATCHER_ACTIONS = 10


@dataclass
class Component:
    """One program of the dispatcher: priority and the verdicts that go on to the next."""
    program: Program
    priority: int = DEFAULT_PRIORITY
    chain_call_actions: int = DEFAULT_CHAIN


@dataclass
class XdpDispatcher:
    """Several XDP programs run as one, in libxdp's order and chain-call rules."""
    components: list[Component] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.components) > MAX_DISPATCHER_ACTIONS:
            raise FreplaceError(errno.E2BIG, f"libxdp's dispatcher holds at most "
                                             f"{MAX_DISPATCHER_ACTIONS} programs")
        for c in self.components:
            if c.program.type is not U.ProgType.XDP:
                raise FreplaceError(errno.EINVAL, f"{c.program.name} is not an XDP program")
        self.order = sorted(self.components, key=lambda c: (c.priority, c.program.name))
        self.runs = Map(U.MapType.ARRAY, 4, 8, max(len(self.order), 1), name="runs")
        self.program = self._build()

    def _build(self) -> Program:
        n = len(self.order)
        lines = ["r6 = r1"]
        for i, c in enumerate(self.order):
            lines += [
                "r1 = r6", f"call prog{i}", "r7 = r0",
                f"r1 = {i}", "*(u32 *)(r10 - 4) = r1", "r2 = r10", "r2 += -4",
                f"r1 = map[id:{self.runs.id}] ll", "call bpf_map_lookup_elem",
                f"if r0 == 0 goto counted{i}", "r1 = 1", "lock *(u64 *)(r0 + 0) += r1",
                f"counted{i}:",
                # a verdict outside 0..31 never chains (1U << ret in libxdp is 32-bit)
                f"if r7 > 31 goto done{i}", "r1 = 1", "r1 <<= r7",
                f"r1 &= {c.chain_call_actions & 0xFFFFFFFF}", f"if r1 != 0 goto next{i}",
                f"done{i}:", "r0 = r7", "exit", f"next{i}:"]
        lines += ["r0 = 2", "exit"]          # XDP_PASS when every program passed
        for i in range(n):
            lines += [f"prog{i}:", "r0 = 2", "exit"]      # a slot, as libxdp's stubs
        base = assemble("\n".join(lines), "kernel")
        stubs = _slots(base) - 2 * n
        funcs = {stubs + 2 * i: list(as_target_type(c.program, c.program).insns)
                 for i, c in enumerate(self.order)}
        # the stubs go: every call of them now goes to its program (Linux's verifier
        # refuses unreachable instructions)
        return Program(splice(base[:len(base) - 2 * n], funcs), U.ProgType.XDP,
                       name="xdp_dispatcher", license="GPL", verify=True)

    def run_counts(self) -> dict[str, int]:
        """How many times each program ran, by name."""
        return {c.program.name: int.from_bytes(bytes(self.runs.lookup(i.to_bytes(4, "little"))),
                                               "little")
                for i, c in enumerate(self.order)}

    def run(self, data: bytes, **kw):
        return self.program.run(data, **kw)

    def load_kernel(self) -> "KernelDispatcher":
        """The same spliced program loaded into the kernel, each map it uses made there
        afresh (same type and sizes, empty)."""
        return KernelDispatcher(self)

    def close(self) -> None:
        self.runs.close()


class KernelDispatcher:
    """An :class:`XdpDispatcher`'s program in the kernel: ``program`` (a KernelProgram),
    ``maps`` (ebee map id -> KernelMap)."""

    def __init__(self, d: XdpDispatcher):
        self.dispatcher = d
        self.maps: dict[int, KernelMap] = {}
        insns = []
        try:
            for i in d.program.insns:
                if i.spec.wide and i.src in (U.BPF_PSEUDO_MAP_FD, U.BPF_PSEUDO_MAP_VALUE):
                    mid = i.imm & 0xFFFFFFFF
                    if mid not in self.maps:
                        m = map_by_id(mid)
                        self.maps[mid] = KernelMap(m.type, m.key_size, m.value_size,
                                                   m.max_entries, m.flags, name=m.name or "")
                    i = dataclasses.replace(i, imm=self.maps[mid].fd)
                insns.append(i)
            self.program = KernelProgram(insns, U.ProgType.XDP, name="xdp_dispatcher")
        except BaseException:
            self.close()
            raise

    def run_counts(self) -> dict[str, int]:
        runs = self.maps[self.dispatcher.runs.id]
        return {c.program.name: int.from_bytes(bytes(runs.lookup(i.to_bytes(4, "little"))),
                                               "little")
                for i, c in enumerate(self.dispatcher.order)}

    def run(self, data: bytes, **kw):
        return self.program.run(data, **kw)

    def close(self) -> None:
        if getattr(self, "program", None) is not None:
            self.program.close()
        for m in self.maps.values():
            m.close()

    def __enter__(self) -> "KernelDispatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
