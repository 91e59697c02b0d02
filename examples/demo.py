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

    verifier_verdicts()
    xdp_over_capture()

    if CORPUS.is_dir():
        print("$ ebee conformance ../shared/corpus/conformance/tests")
        outcomes = list(run_paths([CORPUS]))
        passed = sum(o.passed for o in outcomes)
        for o in outcomes:
            if not o.passed:
                print(f"FAIL {o.name}: {o.detail}")
        print(f"{passed} passed, {len(outcomes) - passed} failed")
    return 0


def verifier_verdicts() -> None:
    """The verifier on the firewall and on a copy whose packet bound is one byte
    short: Linux's verdict, and for the rejected one the end of Linux's log."""
    from ebee.verifier import verify

    good = HERE / "c" / "xdp_firewall.o"
    bad = HERE.parent / "tests" / "data" / "verifier" / "xdp_offbyone.o"
    if not good.exists() or not bad.exists():
        return
    print("== the verifier: the XDP firewall, and a copy whose IPv4 bound is one byte short")
    for path in (good, bad):
        rel = path.relative_to(HERE.parent)
        print(f"$ ebee verify {rel}" + (" --log-level 1" if path is bad else ""))
        with ebee.load(str(path)) as obj:
            for name, prog in obj.programs.items():
                r = verify(prog, log_level=1 if path is bad else 0)
                if path is bad:
                    print("\n".join(r.log.rstrip().splitlines()[-6:]))
                print(f"{name}: {'accepted' if r.accepted else 'rejected'} "
                      f"({r.insns_processed} insns processed)"
                      + ("" if r.accepted else f": {r.error}"))
    print()


def xdp_over_capture() -> None:
    """The example XDP firewall over the shipped capture, with a verdict table."""
    import socket
    import tempfile

    from ebee.packet import pcap
    from ebee.testrun.replay import format_summary, replay
    from ebee.testrun import Runner

    obj_path = HERE / "c" / "xdp_firewall.o"
    capture = HERE / "pcap" / "mixed.pcap"
    if not obj_path.exists() or not capture.exists():
        return
    print("== examples/c/xdp_firewall.o over examples/pcap/mixed.pcap, blocking 10.0.0.1 and "
          "10.0.0.2")
    print("$ ebee run examples/c/xdp_firewall.o --pcap examples/pcap/mixed.pcap   "
          "# with those two addresses in its pinned blocklist")
    with tempfile.TemporaryDirectory() as pins, ebee.load(str(obj_path), pin_root=pins) as obj:
        for addr in ("10.0.0.1", "10.0.0.2"):
            obj.maps["blocklist"].update(socket.inet_aton(addr), bytes(8))
        with Runner(obj.programs["xdp_firewall"]) as runner:
            summary = replay(runner, pcap.read(str(capture)))
        print(format_summary(summary))
        drops = obj.maps["stats"].lookup(1)
        print(f"stats[DROP] = {int.from_bytes(bytes(drops), 'little')} "
              f"(the program's own counter agrees)\n")


if __name__ == "__main__":
    sys.exit(main())
