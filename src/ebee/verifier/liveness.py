"""Stack slot liveness for pruning (the role of Linux 6.18's kernel/bpf/liveness.c).

A stack slot of an explored state matters for pruning only if some path
from that state may read it before overwriting it.  Reads are recorded as
the verifier performs them; a full 8-byte write counts as a kill only if
every visit of that instruction wrote the same slot (must-write).  A slot
is dead at an instruction when no recorded read can follow it without such
a kill in between.  Because an explored state is only cleaned once every
path from it has been explored (its branch count is zero), the reads that
could follow it have all been recorded by then.

Facts are bit sets over (frame number, slot): bit ``frame * 64 + spi``.
The live-before sets are a backward dataflow over the control-flow graph,
where a call also flows into its callee and a callback-calling helper keeps
every slot live.  Reads and writes only ever make more slots live, so the
solution is maintained incrementally with a worklist.

Compared with Linux, facts are keyed by frame depth rather than by the full
call chain: coarser (fewer slots found dead, so less pruning) but sound.
"""
from __future__ import annotations

from .cfg import successors
from .func_proto import is_async_callback_calling_insn

ALL = (1 << (64 * 8)) - 1


class StackLiveness:
    def __init__(self, env):
        n = env.insn_cnt
        self.n = n
        self.reads = [0] * n
        self.writes = [0] * n
        self.live = [0] * n
        self.visited = [False] * n
        self.pending = 0
        self.work: set[int] = set()
        succ: list[tuple[int, ...]] = []
        preds: list[list[int]] = [[] for _ in range(n)]
        self.always = [False] * n
        for t in range(n):
            insn = env.insns[t]
            ss = [s for s in successors(env, t) if s < n]
            if insn.is_pseudo_call():
                tgt = t + insn.imm + 1
                if 0 <= tgt < n:
                    ss.append(tgt)
            if env.aux[t].calls_callback or is_async_callback_calling_insn(insn):
                self.always[t] = True
                self.work.add(t)
            succ.append(tuple(ss))
            for s in ss:
                preds[s].append(t)
        self.succ = succ
        self.preds = preds
        self._st = None

    # -- recording -------------------------------------------------------------------------
    def mark_read(self, env, frameno: int, spi: int) -> None:
        t = env.insn_idx
        bit = 1 << (frameno * 64 + spi)
        if not self.reads[t] & bit:
            self.reads[t] |= bit
            self.work.add(t)

    def mark_write(self, env, frameno: int, spi: int) -> None:
        self.pending |= 1 << (frameno * 64 + spi)

    def begin_insn(self) -> None:
        self.pending = 0

    def commit(self, idx: int) -> None:
        if self.visited[idx]:
            w = self.writes[idx]
            if w & ~self.pending:
                self.writes[idx] = w & self.pending
                self.work.add(idx)
        else:
            self.visited[idx] = True
            self.writes[idx] = self.pending
        self.pending = 0

    def reset_callchain(self, env) -> None:
        """Called on entering a subprogram (Linux resets its per-callchain instance)."""

    def update(self, env) -> None:
        """Called at subprogram exits (Linux recomputes its instance then)."""

    # -- solving ---------------------------------------------------------------------------
    def _solve(self) -> None:
        work = self.work
        live, reads, writes, succ, preds = self.live, self.reads, self.writes, self.succ, self.preds
        always = self.always
        while work:
            t = work.pop()
            out = ALL if always[t] else 0
            for s in succ[t]:
                out |= live[s]
            new = reads[t] | (out & ~writes[t])
            if new != live[t]:
                live[t] = new
                work.update(preds[t])

    def query_init(self, env, st) -> None:
        if self.work:
            self._solve()
        self._st = st

    def slot_alive(self, env, frameno: int, spi: int) -> bool:
        st = self._st
        idx = st.insn_idx if frameno == st.curframe else st.frames[frameno + 1].callsite
        return bool(self.live[idx] >> (frameno * 64 + spi) & 1)
