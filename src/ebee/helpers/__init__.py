"""Helper functions: registry, prototypes and implementations."""
# the registry first: implementation modules import ebee.vm, which imports it from here
from .proto import Arg, Ret
from .registry import REGISTRY, Helper, get, helper, helper_id, helper_name
from . import base  # noqa: F401  (registers implementations)
from . import calls, events, maps, mem, printk, task  # noqa: F401  (maps, helpers, kfuncs: issue 3)
from . import kfuncs  # noqa: F401
from . import packet, skb, xdp  # noqa: F401  (packet helpers: issue 5)
from . import unimplemented  # noqa: F401  (prototypes only, for the verifier)
from .registry import derive_prog_types

derive_prog_types()

__all__ = ["Arg", "Ret", "REGISTRY", "Helper", "get", "helper", "helper_id", "helper_name"]
