"""The session: loaded objects and what outlives a call -- ``ebee.load`` (libbpf's open
+ load without a kernel), pinned objects brought back, the kernel backend's entry."""
from .object import DataSection, Object, OpenMap, OpenObject, OpenProgram, load, open_file
from .pins import get_pinned

__all__ = ["DataSection", "Object", "OpenMap", "OpenObject", "OpenProgram", "get_pinned", "load", "open_file"]
