"""Helper implementations, bound by id to the prototypes in ``ebee.protos``."""
# the registry first: implementation modules import ebee.vm, which imports it from here
from .registry import REGISTRY, Helper, get, implements
from . import base  # noqa: F401  (registers implementations)
from . import calls, events, maps, mem, printk, task  # noqa: F401  (maps, helpers, kfuncs: issue 3)
from . import kfuncs  # noqa: F401
from . import packet, skb, xdp  # noqa: F401  (packet helpers: issue 5)
from . import unimplemented  # noqa: F401  (prototypes ebee does not implement)

__all__ = ["REGISTRY", "Helper", "get", "implements"]
