"""The eBPF verifier: Linux's static safety check, its verdicts and its log.

How it works (the same algorithm as kernel/bpf/verifier.c, in small modules):

1. **Structure** (:mod:`.cfg`).  Before any simulation the program is checked
   as a graph: subprograms are found from call targets, every jump must stay
   inside its subprogram and never land in the second half of an ``lddw``,
   every subprogram must end in ``exit`` or a jump, opcodes and reserved
   fields must be valid, map references are resolved, a depth-first walk
   rejects unreachable code (and, for unprivileged programs, loops), and a
   backward dataflow pass computes which registers are live before each
   instruction.

2. **Abstract interpretation** (:mod:`.core`).  The verifier then executes
   the program on abstract states.  A register holds a type (scalar, pointer
   to context/stack/map value/packet/...) and, for scalars and pointer
   offsets, a :class:`~.bounds.Bounds` value: a tnum (known/unknown bits) and
   signed/unsigned 64- and 32-bit ranges.  Each instruction class has its
   handler: :mod:`.alu` (arithmetic, including what may be added to which
   pointer), :mod:`.memory` (loads/stores against the rules of each pointer
   type, byte-level stack tracking), :mod:`.jumps` (branch decisions, range
   refinement on both edges, null checks, packet-range checks),
   :mod:`.calls` (helpers against their prototypes, bpf-to-bpf calls,
   callbacks, return values; references in :mod:`.refs`).  A conditional
   jump whose outcome the ranges cannot decide forks the state: the jump
   edge is pushed on a stack (:mod:`.branches`) and explored after the
   current path ends.

3. **Pruning** (:mod:`.prune`, :mod:`.precision`).  At jump targets the
   current state is compared with states already proven safe there; if one
   is at least as general (its ranges contain ours, its types match), the
   path is safe and ends.  Comparisons ignore dead registers and only insist
   on exact scalar values where they mattered (precision tracking walks the
   jump history backwards to mark the scalars a decision depended on), which
   is what makes real programs verify in bounded time.  Which stack slots a
   later instruction may still read (:mod:`.liveness`) decides which slots
   take part in the comparison.  Bounded loops are simply explored until they
   converge or the 1,000,000-instruction budget runs out; inside a loop (a
   strongly connected component of the graph) a state equal to one still
   being explored is a back-edge whose precision is settled when the loop is
   done, and an exact repeat is an infinite loop.  Callbacks (``bpf_loop``,
   ``bpf_for_each_map_elem``...) are verified as if called any number of
   times: their states are explored until the state at the call site repeats.

4. **The log** (:mod:`.log`).  Level 1 keeps the failing path with the
   register state after each instruction; level 2 every path.  The format and
   the messages are Linux's (6.18, the host kernel the tests compare with).

5. **What it proves** (:class:`Facts`).  An accepted program carries, per
   instruction, what every path agreed on about the registers it reads (type,
   offset, bounds): the JIT drops checks on it and the disassembler shows it.

Entry point: :func:`verify`.
"""
from .api import (Facts, MapDescription, RegFact, VerifiableProgram, VerifierError,
                  VerifierResult, verify)

__all__ = ["Facts", "MapDescription", "RegFact", "VerifiableProgram", "VerifierError",
           "VerifierResult", "verify"]
