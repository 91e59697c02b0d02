"""Helper implementations, bound by id to the prototypes in ``ebee.protos``, and the
runtime services (:class:`Runtime`) through which the engines reach helpers, maps and
kfuncs."""
# the registry first: every implementation module registers into it
from .registry import REGISTRY, Helper, get, implements
from . import base  # noqa: F401  (registers implementations)
from . import calls, events, maps, mem, printk, task  # noqa: F401
from . import kfuncs  # noqa: F401
from . import packet, skb, xdp  # noqa: F401
from . import (btfshow, cgroups, counters, lirc, seq, sockmap, socks, syncookies, sysctl,  # noqa: F401
               tracing, xfrm)
from . import unimplemented  # noqa: F401  (prototypes ebee does not implement)
from .services import RUNTIME, Runtime

__all__ = ["REGISTRY", "Helper", "RUNTIME", "Runtime", "get", "implements"]
