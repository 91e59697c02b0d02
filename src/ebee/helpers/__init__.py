"""Helper functions: registry, prototypes and implementations."""
from . import base  # noqa: F401  (registers implementations)
from . import packet, skb, xdp  # noqa: F401  (packet helpers: issue 5)
from .proto import Arg, Ret
from .registry import REGISTRY, Helper, get, helper, helper_id, helper_name

__all__ = ["Arg", "Ret", "REGISTRY", "Helper", "get", "helper", "helper_id", "helper_name"]
