"""Helper functions: implementations bound by helper id, and the runtime services
(:class:`Runtime`) through which the engines reach helpers, maps and kfuncs."""
# the registry first: every implementation module registers into it
from .proto import Arg, Ret
from .registry import REGISTRY, Helper, get, helper, helper_id, helper_name
from . import base  # noqa: F401  (registers implementations)
from . import calls, events, maps, mem, printk, task  # noqa: F401
from . import kfuncs  # noqa: F401
from . import packet, skb, xdp  # noqa: F401
from . import unimplemented  # noqa: F401  (prototypes only, for the verifier)
from .registry import derive_prog_types
from .services import RUNTIME, Runtime

derive_prog_types()

__all__ = ["Arg", "Ret", "REGISTRY", "Helper", "RUNTIME", "Runtime", "get", "helper", "helper_id",
           "helper_name"]
