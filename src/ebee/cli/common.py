"""What every subcommand shares: reading programs, reporting errors, output files."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from ..asm import Dialect, assemble
from ..errors import DecodeError, SourceError
from ..isa import Instruction, decode


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit code 2."""


ELF_MAGIC = b"\x7fELF"
ASM_SUFFIXES = (".s", ".S", ".asm", ".data")
TEXT_SUFFIXES = ASM_SUFFIXES + (".txt",)


def read_bytes(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: error: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: error: is a directory") from None
    except OSError as e:
        raise UsageError(f"{path}: error: {e.strerror}") from None


def _looks_like_text(data: bytes) -> bool:
    if not data:
        return True
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def load_program(path: str, dialect: str | None = None, *,
                 any_format: bool = True) -> list[Instruction]:
    """Instructions from a raw .bin, an assembly file or a conformance .data file.

    ``any_format``: the command also takes ELF objects (verify, run, disasm), so text
    that fails on its first line is reported as not a program at all rather than as
    an assembly error (``ebee asm`` passes False: its input is assembly)."""
    data = read_bytes(path)
    if data.startswith(ELF_MAGIC):
        raise UsageError(f"{path}: error: ELF objects are loaded with the object commands, "
                         f"not as raw instructions")
    if path.endswith(TEXT_SUFFIXES) or (len(data) % 8 != 0 and _looks_like_text(data)) \
            or (_looks_like_text(data) and data.strip() and not path.endswith(".bin")):
        text = data.decode("utf-8", errors="replace")
        try:
            if path.endswith(".data") or text.lstrip().startswith("-- "):
                from ..conformance import parse
                return parse(path, text).program()
            return assemble(text, Dialect(dialect) if dialect else None, file=path)
        except SourceError as e:
            if any_format and not path.endswith(ASM_SUFFIXES) and e.line is not None \
                    and e.line == _first_line(text):
                raise UsageError(f"{path}: error: not an ELF object, raw eBPF instructions or "
                                 f"eBPF assembly (line {e.line}: {e.message})") from None
            raise UsageError(str(e) if e.file else f"{path}: {e}") from None
    if not data:
        raise UsageError(f"{path}: error: empty program")
    try:
        return decode(data)
    except DecodeError as e:
        where = f"{path}:insn {e.pc}" if e.pc is not None else path
        reason = e.reason.split(": ", 1)[1] if e.reason.startswith("insn ") else e.reason
        raise UsageError(f"{where}: error: {reason}") from None


def _first_line(text: str) -> int | None:
    """The number of the first line that is neither blank nor only a comment."""
    for n, line in enumerate(text.splitlines(), 1):
        t = line.strip()
        if t and not t.startswith(("#", ";", "//", "--")):
            return n
    return None


def write_atomic(path: str, data: bytes) -> None:
    """Write all of ``data`` or nothing: a temp file renamed into place."""
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".ebee-")
    except OSError as e:
        raise UsageError(f"{path}: error: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class OutputOptions:
    """bpftool's global output options (``-j``, ``-p``), set once per invocation by main."""
    json = False
    pretty = False


OUTPUT = OutputOptions()

# bpftool's global options, accepted anywhere on the line (not only before the command)
OUTPUT_FLAGS = {"-j": "json", "--json": "json", "-p": "pretty", "--pretty": "pretty"}
# commands whose own -p means something else (``ebee trace -p PID``, as bpftrace's)
OWN_P = {"trace"}


def split_output_flags(argv: list[str]) -> tuple[list[str], set[str]]:
    """``argv`` without bpftool's global output flags, and which were given: ``-j`` and
    ``-p`` go before or after the subcommand, as bpftool takes them; ``--kernel``
    anywhere moves to the front.  Nothing after ``--`` is touched."""
    command = next((a for a in argv if not a.startswith("-")), None)
    out, got, done = [], set(), False
    kernel = False
    for a in argv:
        if done or a == "--":
            done = True
            out.append(a)
        elif a in OUTPUT_FLAGS and not (command in OWN_P and a in ("-p", "--pretty")):
            got.add(OUTPUT_FLAGS[a])
        elif a == "--kernel":       # a global option too: ``ebee verify --kernel x.o``
            kernel = True
        else:
            out.append(a)
    return (["--kernel", *out] if kernel else out), got


def print_json(obj) -> None:
    """JSON on one line, or indented as bpftool's ``-p`` (pretty) indents it."""
    print(json.dumps(obj, indent=4) if OUTPUT.pretty else json.dumps(obj))


def parse_hex(text: str, what: str) -> bytes:
    t = "".join(text.split()).removeprefix("0x")
    try:
        return bytes.fromhex(t)
    except ValueError:
        raise UsageError(f"error: {what} is not valid hex: {text!r}") from None
