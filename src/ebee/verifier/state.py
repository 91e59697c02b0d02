"""Abstract machine state: registers, stack slots, call frames, references.

Mirrors include/linux/bpf_verifier.h: a :class:`RegState` per register
(``bpf_reg_state``), a list of 8-byte :class:`StackSlot` per frame
(``bpf_stack_state``), a :class:`FuncState` per call frame and a
:class:`VerifierState` for the whole path (``bpf_verifier_state``).

Copying is the hot operation (every branch and every pruning checkpoint
copies a state), so: :class:`~ebee.verifier.bounds.Bounds` are immutable and
shared, stack slots are immutable and shared between copies (writers replace
the slot), and only the eleven register records of each frame are copied.
"""
from __future__ import annotations

from ..uapi import MAX_BPF_REG
from .bounds import UNBOUNDED, Bounds
from .log import format_reg
from .types import (BPF_REG_SIZE, NOT_INIT, PTR_MAYBE_NULL, SCALAR_VALUE, STACK_INVALID,
                    STACK_SPILL, base_type)


class RegState:
    """One register's abstract value (bpf_reg_state)."""
    __slots__ = ("type", "off", "bounds", "id", "ref_obj_id", "range", "map", "map_uid",
                 "btf", "btf_id", "mem_size", "subprogno", "dynptr", "iter", "frameno",
                 "precise", "subreg_def")

    def __init__(self, type: int = NOT_INIT, off: int = 0, bounds: Bounds = UNBOUNDED):
        self.type = type
        self.off = off
        self.bounds = bounds
        self.id = 0
        self.ref_obj_id = 0
        self.range = 0            # PTR_TO_PACKET*: bytes known to be in the packet from off 0
        self.map = None           # CONST_PTR_TO_MAP / PTR_TO_MAP_VALUE / PTR_TO_MAP_KEY
        self.map_uid = 0
        self.btf = None           # PTR_TO_BTF_ID: (btf object, type id) owner
        self.btf_id = 0
        self.mem_size = 0         # PTR_TO_MEM / PTR_TO_BUF ... access size
        self.subprogno = 0        # PTR_TO_FUNC
        self.dynptr = None        # (dynptr type, first_slot) for dynptr stack slots
        self.iter = None          # (btf_id, state, depth) for iterator slots
        self.frameno = 0
        self.precise = False
        self.subreg_def = 0

    def copy(self) -> "RegState":
        r = RegState.__new__(RegState)
        r.type = self.type
        r.off = self.off
        r.bounds = self.bounds
        r.id = self.id
        r.ref_obj_id = self.ref_obj_id
        r.range = self.range
        r.map = self.map
        r.map_uid = self.map_uid
        r.btf = self.btf
        r.btf_id = self.btf_id
        r.mem_size = self.mem_size
        r.subprogno = self.subprogno
        r.dynptr = self.dynptr
        r.iter = self.iter
        r.frameno = self.frameno
        r.precise = self.precise
        r.subreg_def = self.subreg_def
        return r

    def assign(self, o: "RegState") -> None:
        """*this = *o (copy_register_state)."""
        self.type = o.type
        self.off = o.off
        self.bounds = o.bounds
        self.id = o.id
        self.ref_obj_id = o.ref_obj_id
        self.range = o.range
        self.map = o.map
        self.map_uid = o.map_uid
        self.btf = o.btf
        self.btf_id = o.btf_id
        self.mem_size = o.mem_size
        self.subprogno = o.subprogno
        self.dynptr = o.dynptr
        self.iter = o.iter
        self.frameno = o.frameno
        self.precise = o.precise
        self.subreg_def = o.subreg_def

    # -- kernel's __mark_reg_* -------------------------------------------------
    def _clear_union(self) -> None:
        self.off = 0
        self.range = 0
        self.map = None
        self.map_uid = 0
        self.btf = None
        self.btf_id = 0
        self.mem_size = 0
        self.subprogno = 0
        self.dynptr = None
        self.iter = None

    def mark_unknown(self, precise: bool = False) -> None:
        """__mark_reg_unknown: an unbounded scalar (precise when unprivileged)."""
        self._clear_union()
        self.type = SCALAR_VALUE
        self.id = 0
        self.ref_obj_id = 0
        self.bounds = UNBOUNDED
        self.frameno = 0
        self.precise = precise

    def clear_scalar_id(self) -> None:
        """clear_scalar_id: unlinked, and without the BPF_ADD_CONST delta of the old
        link (a stale delta would be carried into the next id this scalar gets)."""
        self.id = 0
        self.off = 0

    def mark_not_init(self, precise: bool = False) -> None:
        """__mark_reg_not_init (``precise``: unprivileged, where every scalar is)."""
        self.mark_unknown(precise)
        self.type = NOT_INIT

    def mark_known(self, imm: int) -> None:
        """__mark_reg_known: keeps the type (callers set SCALAR_VALUE)."""
        self._clear_union()
        self.id = 0
        self.ref_obj_id = 0
        self.bounds = Bounds.const(imm)

    def mark_const_scalar(self, imm: int) -> None:
        self.mark_unknown()
        self.mark_known(imm)

    # -- predicates ---------------------------------------------------------------
    @property
    def base(self) -> int:
        return self.type & 0xFF

    def is_scalar(self) -> bool:
        return self.type == SCALAR_VALUE

    def is_const(self) -> bool:
        return self.type == SCALAR_VALUE and not self.bounds.var_off.mask

    def maybe_null(self) -> bool:
        return bool(self.type & PTR_MAYBE_NULL)

    @property
    def var_off(self):
        return self.bounds.var_off

    def __repr__(self) -> str:
        return f"<Reg {format_reg(self, 0)}>"


class StackSlot:
    """One 8-byte stack slot (bpf_stack_state); immutable once stored.

    ``slot_type[k]`` describes the byte at fp - 8*spi - 1 - k, as in Linux.
    """
    __slots__ = ("slot_type", "spilled_ptr")

    def __init__(self, slot_type: str, spilled_ptr: RegState | None = None):
        self.slot_type = slot_type
        self.spilled_ptr = spilled_ptr

    def is_spill(self) -> bool:
        return self.slot_type[BPF_REG_SIZE - 1] == STACK_SPILL

    def reg(self) -> RegState:
        return self.spilled_ptr if self.spilled_ptr is not None else _NOT_INIT_REG


_NOT_INIT_REG = RegState()
EMPTY_SLOT = StackSlot(STACK_INVALID * BPF_REG_SIZE, None)


class FuncState:
    """One call frame (bpf_func_state)."""
    __slots__ = ("regs", "stack", "callsite", "frameno", "subprogno", "in_callback_fn",
                 "in_async_callback_fn", "in_exception_callback_fn", "callback_ret_range",
                 "callback_depth", "async_entry_cnt")

    def __init__(self, frameno: int = 0, subprogno: int = 0, callsite: int = -1):
        self.regs = [RegState() for _ in range(MAX_BPF_REG)]
        self.stack: list[StackSlot] = []
        self.callsite = callsite
        self.frameno = frameno
        self.subprogno = subprogno
        self.in_callback_fn = False
        self.in_async_callback_fn = False
        self.in_exception_callback_fn = False
        self.callback_ret_range = (0, 0)
        self.callback_depth = 0
        self.async_entry_cnt = 0

    def copy(self) -> "FuncState":
        f = FuncState.__new__(FuncState)
        f.regs = [r.copy() for r in self.regs]
        f.stack = self.stack[:]
        f.callsite = self.callsite
        f.frameno = self.frameno
        f.subprogno = self.subprogno
        f.in_callback_fn = self.in_callback_fn
        f.in_async_callback_fn = self.in_async_callback_fn
        f.in_exception_callback_fn = self.in_exception_callback_fn
        f.callback_ret_range = self.callback_ret_range
        f.callback_depth = self.callback_depth
        f.async_entry_cnt = self.async_entry_cnt
        return f

    @property
    def allocated_stack(self) -> int:
        return len(self.stack) * BPF_REG_SIZE

    def grow_stack(self, size: int) -> None:
        """grow_stack_state: make at least ``size`` bytes addressable."""
        n = (size + BPF_REG_SIZE - 1) // BPF_REG_SIZE
        if n > len(self.stack):
            self.stack.extend([EMPTY_SLOT] * (n - len(self.stack)))

    def slot(self, spi: int) -> StackSlot:
        return self.stack[spi] if spi < len(self.stack) else EMPTY_SLOT


class RefState:
    """An acquired reference or lock (bpf_reference_state)."""
    __slots__ = ("type", "id", "insn_idx", "ptr")

    REF_PTR, LOCK, RES_LOCK, IRQ, RCU = 1, 2, 4, 8, 16

    def __init__(self, type: int, id: int, insn_idx: int, ptr=None):
        self.type = type
        self.id = id
        self.insn_idx = insn_idx
        self.ptr = ptr

    def key(self) -> tuple:
        return (self.type, self.id, self.insn_idx, self.ptr)


class VerifierState:
    """The state of one path through the program (bpf_verifier_state)."""
    __slots__ = ("frames", "curframe", "refs", "active_locks", "active_lock_id",
                 "active_lock_ptr", "active_rcu_lock", "active_preempt_locks",
                 "active_irq_id", "speculative", "in_sleepable", "may_goto_depth",
                 "first_insn_idx", "last_insn_idx", "insn_idx", "parent", "branches",
                 "jmp_history", "dfs_depth", "callback_unroll_depth", "loop_entry",
                 "cleaned", "miss_cnt", "hit_cnt", "used_as_loop_entry", "equal_state")

    def __init__(self):
        self.frames: list[FuncState] = []
        self.curframe = 0
        self.refs: list[RefState] = []
        self.active_locks = 0
        self.active_lock_id = 0
        self.active_lock_ptr = None
        self.active_rcu_lock = False
        self.active_preempt_locks = 0
        self.active_irq_id = 0
        self.speculative = False
        self.in_sleepable = False
        self.may_goto_depth = 0
        self.first_insn_idx = 0
        self.last_insn_idx = 0
        self.insn_idx = 0
        self.parent: VerifierState | None = None
        self.branches = 0
        # (insn_idx, prev_insn_idx, flags, linked_regs) since first_insn_idx
        self.jmp_history: list[tuple] = []
        self.dfs_depth = 0
        self.callback_unroll_depth = 0
        self.loop_entry = None
        self.cleaned = False
        self.miss_cnt = 0
        self.hit_cnt = 0
        self.used_as_loop_entry = False
        self.equal_state = None

    def copy(self) -> "VerifierState":
        """copy_verifier_state (the branch/parent bookkeeping is the caller's)."""
        s = VerifierState.__new__(VerifierState)
        s.frames = [f.copy() for f in self.frames]
        s.curframe = self.curframe
        s.refs = self.refs[:]
        s.active_locks = self.active_locks
        s.active_lock_id = self.active_lock_id
        s.active_lock_ptr = self.active_lock_ptr
        s.active_rcu_lock = self.active_rcu_lock
        s.active_preempt_locks = self.active_preempt_locks
        s.active_irq_id = self.active_irq_id
        s.speculative = self.speculative
        s.in_sleepable = self.in_sleepable
        s.may_goto_depth = self.may_goto_depth
        s.first_insn_idx = self.first_insn_idx
        s.last_insn_idx = self.last_insn_idx
        s.insn_idx = self.insn_idx
        s.parent = self.parent
        s.branches = self.branches
        s.jmp_history = self.jmp_history[:]
        s.dfs_depth = self.dfs_depth
        s.callback_unroll_depth = self.callback_unroll_depth
        s.loop_entry = self.loop_entry
        s.cleaned = False
        s.miss_cnt = 0
        s.hit_cnt = 0
        s.used_as_loop_entry = False
        s.equal_state = None
        return s

    @property
    def frame(self) -> FuncState:
        return self.frames[self.curframe]

    @property
    def regs(self) -> list[RegState]:
        return self.frames[self.curframe].regs

    def all_regs(self):
        """Every register and spilled register of every frame: (frame, reg)."""
        for f in self.frames[:self.curframe + 1]:
            for r in f.regs:
                yield f, r
            for slot in f.stack:
                if slot.spilled_ptr is not None and slot.is_spill():
                    yield f, slot.spilled_ptr


def is_spilled_reg(slot: StackSlot) -> bool:
    return slot.slot_type[BPF_REG_SIZE - 1] == STACK_SPILL


def is_spilled_scalar_reg(slot: StackSlot) -> bool:
    return is_spilled_reg(slot) and slot.spilled_ptr is not None and \
        slot.spilled_ptr.type == SCALAR_VALUE


def base(t: int) -> int:
    return base_type(t)


def for_each_reg(vstate: VerifierState, fn) -> None:
    """bpf_for_each_reg_in_vstate: apply ``fn(frame, reg) -> changed`` to every register
    and spilled register; spilled ones are copied before ``fn`` may edit them."""
    for f in vstate.frames[:vstate.curframe + 1]:
        for r in f.regs:
            fn(f, r)
        stack = f.stack
        for spi in range(len(stack)):
            s = stack[spi]
            if s.slot_type[BPF_REG_SIZE - 1] != STACK_SPILL or s.spilled_ptr is None:
                continue
            r = s.spilled_ptr.copy()
            if fn(f, r):
                stack[spi] = StackSlot(s.slot_type, r)
