"""The one exception type of the BTF package."""
from __future__ import annotations

from ..errors import EbeeError


class BTFError(EbeeError, ValueError):
    """Malformed or unusable BTF / BTF.ext data.

    The message names where the problem is (byte offset, type id, section)
    and what was expected; the loader prefixes it with the file name.
    """
