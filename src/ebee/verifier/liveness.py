"""Stack slot liveness for pruning (Linux 6.18's kernel/bpf/liveness.c, simplified).

A stack slot of an explored state matters for pruning only if some path
from that state may read it before overwriting it.  Reads are recorded as
the verifier performs them; a slot is considered dead at an instruction
when no recorded read can follow it without a full 8-byte write in
between.  Because an explored state is only used for pruning once every
path from it has been explored (its branch count is zero), all reads that
could follow it have been recorded by then.

This implementation keys the facts by (frame depth, instruction) rather
than by the full call chain, which is coarser (less pruning) but sound.
"""
from __future__ import annotations


class StackLiveness:
    def __init__(self, env):
        n = env.insn_cnt
        self.reads = [0] * n          # slots read at insn (any frame, by frame number bit-or)
        self.writes = [0] * n         # slots fully written at insn
        self.read_frames: list[dict[int, int]] = [dict() for _ in range(n)]
        self.write_frames: list[dict[int, int]] = [dict() for _ in range(n)]
        self.live_before: list[dict[int, int]] | None = None
        self.dirty = True
        self._pending: dict[int, int] = {}
        self._visited: set[int] = set()

    def mark_read(self, env, frameno: int, spi: int) -> None:
        d = self.read_frames[env.insn_idx]
        old = d.get(frameno, 0)
        new = old | (1 << spi)
        if new != old:
            d[frameno] = new
            self.dirty = True

    def mark_write(self, env, frameno: int, spi: int) -> None:
        self._pending[frameno] = self._pending.get(frameno, 0) | (1 << spi)

    def begin_insn(self) -> None:
        self._pending = {}

    def commit(self, idx: int) -> None:
        """A slot counts as written at idx only if every visit wrote it (must-write)."""
        if idx in self._visited:
            old = self.write_frames[idx]
            new = {f: m & self._pending.get(f, 0) for f, m in old.items()}
            new = {f: m for f, m in new.items() if m}
            if new != old:
                self.write_frames[idx] = new
                self.dirty = True
        else:
            self._visited.add(idx)
            if self._pending:
                self.write_frames[idx] = dict(self._pending)
                self.dirty = True
        self._pending = {}

    def reset_callchain(self, env) -> None:
        pass

    def update(self, env) -> None:
        pass

    def _compute(self, env) -> None:
        # backward dataflow over the whole program (calls fall through to the
        # next instruction; reads inside callees of caller frames are seen at
        # their own instructions), per frame number
        from .cfg import successors
        n = env.insn_cnt
        order = list(range(n - 1, -1, -1))
        live: list[dict[int, int]] = [dict() for _ in range(n)]
        calls_into = {}
        for t in range(n):
            insn = env.insns[t]
            if insn.is_pseudo_call() or insn.is_pseudo_func():
                calls_into[t] = t + insn.imm + 1
        changed = True
        succ = [successors(env, t) for t in range(n)]
        while changed:
            changed = False
            for t in order:
                out: dict[int, int] = {}
                for s in succ[t]:
                    if s < n:
                        for f, m in live[s].items():
                            out[f] = out.get(f, 0) | m
                if env.aux[t].calls_callback or _calls_async(env, t):
                    # a callback may read any slot a pointer reaches
                    for f in range(8):
                        out[f] = -1
                if t in calls_into and calls_into[t] < n:
                    # anything a callee (or callback) may read is live at the call
                    for f, m in live[calls_into[t]].items():
                        out[f] = out.get(f, 0) | m
                new: dict[int, int] = {}
                wr = self.write_frames[t]
                for f, m in out.items():
                    v = m & ~wr.get(f, 0)
                    if v:
                        new[f] = v
                for f, m in self.read_frames[t].items():
                    new[f] = new.get(f, 0) | m
                if new != live[t]:
                    live[t] = new
                    changed = True
        # a callee's frame k+1 reads are relative to its own frame; any read
        # through a pointer into an outer frame is recorded with that frame's
        # number, so frame numbers are absolute within a call chain
        self.live_before = live
        self.dirty = False

    def query_init(self, env, st) -> None:
        if self.dirty:
            self._compute(env)
        self._st = st

    def slot_alive(self, env, frameno: int, spi: int) -> bool:
        st = self._st
        idx = st.insn_idx if frameno == st.curframe else st.frames[frameno + 1].callsite
        m = 0
        for f, v in self.live_before[idx].items():
            if f == frameno:
                m |= v
        # reads from deeper frames into this frame are recorded with this frame
        # number at the callee's instructions; the call site's live set covers them
        return bool(m >> spi & 1)


def _calls_async(env, t: int) -> bool:
    from .calls import is_async_callback_calling_insn
    return is_async_callback_calling_insn(env.insns[t])
