"""Helper functions: registry, prototypes and implementations."""
from . import base  # noqa: F401  (registers implementations)
from .proto import Arg, Ret
from .registry import REGISTRY, Helper, get, helper, helper_id, helper_name

__all__ = ["Arg", "Ret", "REGISTRY", "Helper", "get", "helper", "helper_id", "helper_name"]
