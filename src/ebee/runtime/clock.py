"""Time as programs see it: the host's clocks, or a clock tests replace."""
from __future__ import annotations

import time


class Clock:
    """The host's clocks (what Linux's ktime helpers read); tests may substitute a
    virtual clock (``ebee.helpers.calls.VirtualClock``).  Engines that run a clock
    natively do so only for exactly this class, whose readings they can reproduce."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def boottime_ns(self) -> int:
        return time.clock_gettime_ns(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))

    def coarse_ns(self) -> int:
        return time.clock_gettime_ns(getattr(time, "CLOCK_MONOTONIC_COARSE", time.CLOCK_MONOTONIC))

    def tai_ns(self) -> int:
        return time.clock_gettime_ns(getattr(time, "CLOCK_TAI", time.CLOCK_REALTIME))
