"""What the kernel command groups share: their errors, bpftool's object selectors, info
listings and type names."""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable

from ..kernel import probe
from ..kernel.info import Kind, fd_by_id, ids, link_info, map_info, prog_info
from ..kernel.map_handle import KernelMapHandle
from ..kernel.pin import obj_get
from ..kernel.prog import KernelLoadError, KernelProgram
from .common import UsageError
from .kernel_cmds import KernelCmdError

_INFO = {Kind.PROG: prog_info, Kind.MAP: map_info, Kind.LINK: link_info}


def kernel_errors(fn: Callable[..., int]) -> Callable[..., int]:
    """A command's failures as bpftool reports them: ``error: ...`` and exit code 1
    (a verifier refusal with its log under ``--debug``); arguments no target or
    section can take are usage errors (exit code 2)."""
    @functools.wraps(fn)
    def wrapper(args):
        try:
            return fn(args)
        except KernelLoadError as e:
            if getattr(args, "debug", False) and e.log:
                sys.stderr.write(e.log if e.log.endswith("\n") else e.log + "\n")
            print(f"error: {e.strerror}", file=sys.stderr)
            return 1
        except KernelCmdError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            raise
        except (ValueError, TypeError) as e:     # a target or section that cannot work
            raise UsageError(f"error: {e}") from None
        except OSError as e:
            print(f"error: {e.strerror or e}", file=sys.stderr)
            return 1
    return wrapper


def select_ids(tokens: list[str], kind_name: str) -> tuple[list[int], list[str]]:
    """bpftool's object selectors; returns (ids, the remaining tokens)."""
    kind = Kind[kind_name.upper()]
    if not tokens:
        raise UsageError(f"error: expected a {kind_name}: id N | pinned PATH | name NAME")
    t, rest = tokens[0], tokens[1:]
    if t in ("id", "pinned", "name", "tag"):
        if not rest:
            raise UsageError(f"error: expected a value after '{t}'")
        v, rest = rest[0], rest[1:]
    elif t.isdigit():
        t, v = "id", t
    elif os.sep in t:
        t, v = "pinned", t
    else:
        raise UsageError(f"error: expected id N | pinned PATH | name NAME, got {t!r}")
    if t == "id":
        try:
            return [int(v)], rest
        except ValueError:
            raise UsageError(f"error: invalid id {v!r}") from None
    if t == "pinned":
        try:
            fd = obj_get(v)
        except OSError as e:
            raise KernelCmdError(e.strerror) from None
        try:
            info = {Kind.PROG: prog_info, Kind.MAP: map_info}.get(kind, link_info)
            try:
                return [info(fd).id], rest
            except OSError:
                raise KernelCmdError(f"{v}: pinned object is not a {kind_name}") from None
        finally:
            os.close(fd)
    if kind not in (Kind.PROG, Kind.MAP) or (t == "tag" and kind is not Kind.PROG):
        raise UsageError(f"error: a {kind_name} cannot be selected by {t}")
    found = []
    for i in ids(kind):
        try:
            fd = fd_by_id(kind, i)
        except OSError:
            continue
        try:
            info = prog_info(fd, map_ids=False) if kind is Kind.PROG else map_info(fd)
        finally:
            os.close(fd)
        if (t == "name" and info.name == v[:15]) or (t == "tag" and info.tag == v.lower()):
            found.append(i)
    if not found:
        raise KernelCmdError(f"no {kind_name} with {t} {v!r}")
    return found, rest


def select_one(tokens: list[str], kind_name: str) -> tuple[int, list[str]]:
    """The one object the selector names, and the remaining tokens."""
    got, rest = select_ids(tokens, kind_name)
    if len(got) != 1:
        raise KernelCmdError(f"{len(got)} {kind_name}s match; select one by id")
    return got[0], rest


def open_prog(i: int) -> KernelProgram:
    return KernelProgram.from_id(i)


def open_map(i: int) -> KernelMapHandle:
    return KernelMapHandle.from_id(i)


def infos(kind_name: str, sel: list[str]) -> list:
    """The kernel's info on the selected objects, or on all of them (of one kind)."""
    kind = Kind[kind_name.upper()]
    wanted = select_ids(sel, kind_name)[0] if sel else list(ids(kind))
    get = _INFO[kind]
    out = []
    for i in wanted:
        try:
            fd = fd_by_id(kind, i)
        except OSError as e:
            if sel:
                raise KernelCmdError(e.strerror) from None
            continue            # went away while we listed
        try:
            out.append(get(fd))
        finally:
            os.close(fd)
    return out


def type_name(t) -> str:
    """bpftool's name of a program or map type (the number if the type is unknown)."""
    return probe.type_name(t) if hasattr(t, "name") else str(t)
