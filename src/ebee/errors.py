"""Exception types shared by every layer.

Bad input is a ``ValueError`` (with a location), a failing program is a
``VMError`` naming the pc and instruction, and syscall-shaped failures are
``OSError`` subclasses carrying the kernel's errno.
"""
from __future__ import annotations


class EbeeError(Exception):
    """Base class of all ebee errors."""


class SourceError(EbeeError, ValueError):
    """Malformed input text; renders as ``FILE:LINE: error: MESSAGE``."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        where = ":".join(str(x) for x in (self.file, self.line) if x is not None)
        return f"{where}: error: {self.message}" if where else f"error: {self.message}"

    def with_file(self, file: str) -> "SourceError":
        return type(self)(self.message, file=file, line=self.line)


class AsmError(SourceError):
    """The assembler could not parse or encode a line."""


class DecodeError(EbeeError, ValueError):
    """Raw bytes are not a valid instruction stream."""

    def __init__(self, reason: str, *, pc: int | None = None):
        self.reason = reason
        self.pc = pc
        super().__init__(reason)


class VMError(EbeeError, RuntimeError):
    """A program stopped abnormally at run time."""

    def __init__(self, reason: str, *, pc: int | None = None, insn: str | None = None):
        self.reason = reason
        self.pc = pc
        self.insn = insn
        where = f"pc {pc}" if pc is not None else "program"
        text = f"{where}: {reason}" if insn is None else f"{where} ({insn}): {reason}"
        super().__init__(text)


class MemoryFault(VMError):
    """A load or store touched memory outside every live region."""


class VerifierSoundnessError(VMError):
    """A program the verifier accepted touched memory it may not: the verifier let an
    unsafe program through.  Raised only by sanitizing runs (``sanitize=True``,
    ``ebee run --sanitize``), which check every access of verified code."""


class BudgetExceeded(VMError):
    """The program ran more instructions than its budget allows."""


class LoadError(EbeeError, ValueError):
    """An object file (ELF, BTF, map or program definition) cannot be loaded.

    The message names the file and the problem, in one line.
    """

    def __init__(self, message: str, *, file: str | None = None):
        self.message = message
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)

    def with_file(self, file: str) -> "LoadError":
        return self if self.file else LoadError(self.message, file=file)


class BpfOSError(OSError):
    """A map or syscall-shaped operation failed with a kernel errno."""

    def __init__(self, errno_: int, message: str | None = None):
        import os
        super().__init__(errno_, message or os.strerror(errno_))
