"""The README's demo: assemble the example programs, show them, run them.

Run with `make demo` (which sets up .venv first) or `python examples/demo.py`.
Each step prints the equivalent `ebee` command line.
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import ebee
from ebee.asm import disassemble
from ebee.conformance import run_paths

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "corpus" / "conformance" / "tests"

# An IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) with a correct checksum.
IPV4 = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")

EXAMPLES = [
    ("checksum.s", IPV4, "IPv4 header checksum of a valid header (0 = correct)"),
    ("fib.s", struct.pack("<I", 90), "fib(90)"),
    ("atomics.s", struct.pack("<Q", 32), "(32 + 10) | 3 through atomic operations"),
]


def main() -> int:
    for name, mem, what in EXAMPLES:
        path = HERE / "asm" / name
        insns = ebee.assemble(path.read_text(), file=str(path))
        print(f"== examples/asm/{name}: {what}")
        print(f"$ ebee disasm examples/asm/{name}")
        print(disassemble(insns, "xlated"), end="")
        print(f"$ ebee run examples/asm/{name} --mem {mem.hex()}")
        res = ebee.run(insns, mem)
        print(f"retval: {res.retval} ({res.retval:#x})   [{res.insns} instructions executed]\n")

    if CORPUS.is_dir():
        print("$ ebee conformance ../shared/corpus/conformance/tests")
        outcomes = list(run_paths([CORPUS]))
        passed = sum(o.passed for o in outcomes)
        for o in outcomes:
            if not o.passed:
                print(f"FAIL {o.name}: {o.detail}")
        print(f"{passed} passed, {len(outcomes) - passed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
