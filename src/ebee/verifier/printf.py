"""Format strings of bpf_snprintf/bpf_trace_vprintk (bpf_bprintf_prepare's checks)."""
from __future__ import annotations


def check_format(fmt: bytes, nargs: int) -> str | None:
    """None if the kernel accepts ``fmt`` with ``nargs`` arguments, else why not."""
    i = 0
    n = 0
    s = fmt
    while i < len(s):
        c = s[i]
        if c < 0x20 and c not in b"\t\n\r\x0b\x0c" or c >= 0x7F:
            return "non-printable character"
        if c != ord("%"):
            i += 1
            continue
        i += 1
        if i < len(s) and s[i] == ord("%"):
            i += 1
            continue
        if n >= 12:
            return "too many format specifiers"
        while i < len(s) and s[i] in b" -+0#":
            i += 1
        while i < len(s) and s[i:i + 1].isdigit():
            i += 1
        if i < len(s) and s[i] == ord("."):
            i += 1
            while i < len(s) and s[i:i + 1].isdigit():
                i += 1
        if i < len(s) and s[i] in b"psc":
            i += 1
            n += 1
            continue
        while i < len(s) and s[i] in b"lh":
            i += 1
        if i >= len(s) or s[i] not in b"diuxX":
            return "invalid format specifier"
        i += 1
        n += 1
    if n * 8 != nargs * 8 and n != nargs:
        return "argument count mismatch"
    return None
