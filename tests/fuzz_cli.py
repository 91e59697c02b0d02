"""Malformed input through every CLI entry point that reads a file: the fuzz driver.

Run as a script (``python tests/fuzz_cli.py --seed S --cases N --report R``) so that
a crash by signal is seen by the parent as the child's death, and a hang as its
timeout; each case's description is written to ``R.current`` before it runs, so the
input that killed the process can be named.  Every case runs ``ebee.cli.main.main``
in this process with a per-case alarm; the report (JSON) counts the cases per
input format and lists every failure:

* ``traceback``: an exception escaped the CLI (anything but SystemExit);
* ``exit``: an exit status other than 0, 1 or 2;
* ``message``: a bad-input exit (2) whose stderr is not exactly one line (exit 1 is
  a verdict -- a rejected program, a failed run -- and may print a log);
* ``hang``: the case outlived its alarm -- except where the alarm found the verifier
  at work (``slow-verify``: a program that drives it to the kernel's complexity limit
  of 1M processed instructions, which Linux also walks to the end, more quickly).

Inputs are seeds mutated by a deterministic ``random.Random(seed)``: ELF objects
(examples/c/*.o), the raw BTF of their .BTF sections, assembly text, raw
instruction bytes and pcap / pcapng captures.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_C = ROOT / "examples" / "c"
XDP_OBJ = EXAMPLES_C / "xdp_firewall.o"
CASE_SECONDS = 20
DATA_HEX = "00" * 64

ASM_SEEDS = [
    "r0 = 5\nw0 += 7\nif r0 > 3 goto +1\nr0 = 1\nexit\n",
    "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 14\nr0 = 1\n"
    "if r4 > r3 goto out\nr0 = *(u8 *)(r2 + 12)\nout:\nexit\n",
    "*(u32 *)(r10 -4) = 0\nr2 = r10\nr2 += -4\nr1 = 0x1122334455667788 ll\n"
    "r0 = r1\nr0 >>= 32\nexit\n",
    "r1 = 5\ncall pc+2\nr0 += 1\nexit\nr0 = r1\nr0 *= 3\nexit\n",
    "r1 = 0\nl:\nr1 += 1\nif r1 < 10 goto l\nr0 = r1\nlock *(u64 *)(r10 -8) += r1\nexit\n",
    "call 7\nr0 &= 0xff\nr0 s/= 3\nw0 = -w0\nr0 = be16 r0\nexit\n",
]
ASM_TOKENS = ["r11", "r99", "w12", "goto +32767", "goto -5", "0xffffffffffffffff",
              "call -1", "exit", "ll", "*(u64 *)(r10 +0)", "lock", "=", "+=", "(", ")",
              "map[id:999]", "#", ";", "\x00", "é", "-2147483649", "label:", "goto label"]


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    how = rng.choice(["truncate", "flip", "flip", "overwrite", "insert", "header"])
    if not b or how == "truncate":
        return bytes(b[:rng.randrange(len(b) + 1)])
    if how == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif how == "overwrite":
        pos = rng.randrange(len(b))
        b[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\xff\xff",
                                     b"\x80\0\0\0", rng.randbytes(4)])
    elif how == "insert":
        pos = rng.randrange(len(b))
        b[pos:pos] = rng.randbytes(rng.randint(1, 16))
    else:       # the first bytes hold the headers every reader trusts most
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(min(len(b), 64))] = rng.randrange(256)
    return bytes(b)


def _mutate_text(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        how = rng.choice(["drop", "dup", "token", "char", "number"])
        if not lines:
            lines = [""]
        k = rng.randrange(len(lines))
        if how == "drop":
            del lines[k]
        elif how == "dup":
            lines.insert(k, lines[k])
        elif how == "token":
            words = lines[k].split(" ")
            words[rng.randrange(len(words))] = rng.choice(ASM_TOKENS)
            lines[k] = " ".join(words)
        elif how == "char":
            s = lines[k]
            pos = rng.randrange(len(s) + 1)
            lines[k] = s[:pos] + rng.choice("()*+-=#:;,.x0123456789rwlg \t\\'\"") + s[pos:]
        else:
            lines[k] = "".join(c if not c.isdigit() else str(rng.randrange(10)) * rng.randint(1, 12)
                               for c in lines[k])
    return "\n".join(lines) + "\n"


def _btf_of(path: Path) -> bytes | None:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".BTF")
        return sec.data() if sec is not None else None


def _captures(tmp: Path) -> list[bytes]:
    from ebee.packet import pcap
    frames = [bytes.fromhex("0200000000020200000000010800") + bytes(range(50)),
              bytes.fromhex("ffffffffffff02000000000108060001") + bytes(44), b"\x00" * 14]
    out = []
    for name in ("seed.pcap", "seed.pcapng"):
        path = tmp / name
        with pcap.Writer(str(path)) as w:
            for k, fr in enumerate(frames):
                w.write(fr, 1.5 + k)
        out.append(path.read_bytes())
    return out


class Hang(BaseException):
    pass


def _alarm(_sig, _frame):
    raise Hang()


def run_case(argv: list[str]) -> tuple[str | None, str, int]:
    """(failure kind or None, detail, exit status) of one CLI call."""
    from ebee.cli.main import main
    err, out = io.StringIO(), io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 2
    except Hang as h:
        # a verifier walking the kernel's 1M-instruction complexity limit (a loop it cannot
        # prune, as Linux cannot either) is slow in Python, not stuck: counted apart
        tb = h.__traceback__
        frames = []
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_filename)
            tb = tb.tb_next
        if any("/ebee/verifier/" in f for f in frames):
            return "slow-verify", f"verifier still running after {CASE_SECONDS}s", -1
        return "hang", f"over {CASE_SECONDS}s in {frames[-1] if frames else '?'}", -1
    except BaseException:       # noqa: BLE001 -- the bug being looked for
        return "traceback", traceback.format_exc(limit=-4), -1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    code = code or 0
    text = err.getvalue()
    if code not in (0, 1, 2):
        return "exit", f"status {code}: {text[-300:]}", code
    if "Traceback (most recent call last)" in text:
        return "traceback", text[-600:], code
    if code == 2 and text.count("\n") != 1:
        return "message", text[-300:], code
    return None, "", code


def cases(rng: random.Random, tmp: Path, n: int):
    """``n`` (format, argv, input path) triples, the inputs written under ``tmp``."""
    objs = sorted(EXAMPLES_C.glob("*.o"))
    btfs = [b for b in (_btf_of(p) for p in objs) if b]
    from ebee import assemble, encode
    bins = [encode(assemble(s)) for s in ASM_SEEDS]
    caps = _captures(tmp)
    formats = ["elf"] * 4 + ["btf"] * 2 + ["asm"] * 3 + ["bin"] * 2 + ["pcap"] * 2
    for k in range(n):
        fmt = formats[k % len(formats)]
        path = tmp / f"case{k}.{ {'elf': 'o', 'btf': 'btf', 'asm': 's', 'bin': 'bin'}.get(fmt, 'pcap')}"
        engine = "jit" if rng.random() < 0.1 else "interp"
        if fmt == "elf":
            path.write_bytes(_mutate_bytes(rng, rng.choice(objs).read_bytes()))
            argv = rng.choice([["prog", "dump", "xlated", str(path)], ["verify", str(path)],
                               ["btf", "dump", "file", str(path)], ["disasm", str(path)],
                               ["run", str(path), "--engine", engine, "--data-hex", DATA_HEX],
                               ["prog", "dump", "xlated", str(path), "linum"]])
        elif fmt == "btf":
            path.write_bytes(_mutate_bytes(rng, rng.choice(btfs)))
            argv = ["btf", "dump", "file", str(path)] + rng.choice([[], ["format", "c"],
                                                                   ["format", "raw"]])
        elif fmt == "asm":
            path.write_text(_mutate_text(rng, rng.choice(ASM_SEEDS)), errors="surrogateescape")
            argv = rng.choice([["asm", str(path), "-o", str(tmp / "out.bin")],
                               ["verify", str(path), "--type", "xdp"], ["disasm", str(path)],
                               ["run", str(path), "--type", "xdp", "--engine", engine,
                                "--data-hex", DATA_HEX]])
        elif fmt == "bin":
            path.write_bytes(_mutate_bytes(rng, rng.choice(bins)))
            argv = rng.choice([["disasm", str(path)], ["verify", str(path), "--type", "xdp"],
                               ["run", str(path), "--type", "xdp", "--engine", engine,
                                "--data-hex", DATA_HEX]])
        else:
            path.write_bytes(_mutate_bytes(rng, rng.choice(caps)))
            argv = ["run", str(XDP_OBJ), "--engine", engine, "--pcap", str(path)]
            if rng.random() < 0.3:
                argv += ["--pcap-out", str(tmp / "out.pcap")]
        yield fmt, argv, path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--report", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    report: dict = {"seed": a.seed, "cases": 0, "by_format": {}, "by_exit": {},
                    "failures": []}
    current = Path(a.report + ".current")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ebee-fuzz-") as d:
        tmp = Path(d)
        os.environ["EBEE_PIN_STORE"] = str(tmp / "pins.sqlite3")
        rng = random.Random(a.seed)
        for fmt, argv, path in cases(rng, tmp, a.cases):
            # the input itself, in case this case kills the process
            current.write_text(json.dumps({"format": fmt, "argv": argv,
                                           "input": path.read_bytes().hex()}))
            kind, detail, code = run_case(argv)
            report["cases"] += 1
            report["by_format"][fmt] = report["by_format"].get(fmt, 0) + 1
            report["by_exit"][str(code)] = report["by_exit"].get(str(code), 0) + 1
            if kind is not None:
                report["failures"].append({"kind": kind, "format": fmt, "argv": argv,
                                           "detail": detail,
                                           "input": json.loads(current.read_text())["input"]})
    report["seconds"] = round(time.monotonic() - t0, 2)
    current.unlink(missing_ok=True)
    Path(a.report).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
