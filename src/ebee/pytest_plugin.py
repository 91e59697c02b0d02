"""pytest integration: test your own eBPF programs with ebee, no kernel needed.

Installed with ebee (entry point ``pytest11``), so in any project::

    def test_drops_blocked_source(ebee_object):
        obj = ebee_object("build/xdp_firewall.o")
        obj.maps["blocklist"].update(socket.inet_aton("10.0.0.1"), 0)
        res = obj.programs["xdp_firewall"].run(data=udp_packet(src="10.0.0.1"))
        assert_verdict(res, "XDP_DROP")

Fixtures:

- ``ebee_object(path, **load_options)``: load an object (closed after the test).
- ``ebee_net``: a fresh :class:`ebee.packet.Network` (devices, routes, sockets) for runs
  that redirect, look up the FIB or sockets: ``prog.run(data=..., net=ebee_net)``.

Helpers (import from ``ebee.pytest_plugin``): packet builders ``udp_packet``,
``tcp_packet``, ``icmp_packet`` (from :mod:`ebee.packet.build`; scapy packets work too --
anything ``bytes()`` accepts), ``run_all`` to run one program over many packets, and
assertions ``assert_verdict``, ``assert_packet`` (with a byte diff) and
``assert_trace``.
"""
from __future__ import annotations

from typing import Any, Iterable

import pytest

from .packet import Network
from .packet.build import as_bytes, icmp_packet, tcp_packet, udp_packet
from .session import load as load_object
from .testrun import Runner


def run_all(prog, packets: Iterable[Any], **run_options) -> list:
    """Run ``prog`` on each packet (one test run each); the RunResults in order."""
    net = run_options.pop("net", None)
    engine = run_options.pop("engine", None)
    with Runner(prog, net=net, engine=engine) as r:
        return [r.run(as_bytes(p), **run_options) for p in packets]


def assert_verdict(result, expected: str | int) -> None:
    """The run's return value, by name (``"XDP_DROP"``, ``"TC_ACT_SHOT"``) or number."""
    if isinstance(expected, int):
        ok = (result.retval & 0xFFFFFFFF) == (expected & 0xFFFFFFFF)
    else:
        ok = result.verdict == expected
    if not ok:
        pytest.fail(f"verdict {result.verdict} (retval {result.retval}), expected {expected}",
                    pytrace=False)


def assert_packet(result, expected: Any) -> None:
    """data_out equals ``expected``; on a mismatch, show where the bytes differ."""
    want = as_bytes(expected)
    got = result.data_out
    if got == want:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    lo = max(0, first - 8)
    pytest.fail(f"output packet differs at byte {first} (lengths {len(got)} vs {len(want)}):\n"
                f"  got      [{lo}:] {got[lo:first + 16].hex(' ')}\n"
                f"  expected [{lo}:] {want[lo:first + 16].hex(' ')}", pytrace=False)


def assert_trace(result, *fragments: str) -> None:
    """Each fragment appears in the run's bpf_printk output, in order."""
    lines = list(result.trace_output)
    pos = 0
    for frag in fragments:
        while pos < len(lines) and frag not in lines[pos]:
            pos += 1
        if pos == len(lines):
            pytest.fail(f"trace output has no {frag!r} (in order); got: {lines!r}",
                        pytrace=False)
        pos += 1


@pytest.fixture
def ebee_object():
    """A factory: ``ebee_object(path, **load_options) -> ebee.Object``, closed after the test."""
    opened = []

    def load(path, **options):
        obj = load_object(path, **options)
        opened.append(obj)
        return obj
    yield load
    for obj in opened:
        obj.close()


@pytest.fixture
def ebee_net():
    """A fresh modelled network (``lo`` only); add devices, routes, neighbours, sockets."""
    net = Network()
    yield net
    net.close()


__all__ = ["assert_packet", "assert_trace", "assert_verdict", "icmp_packet", "run_all",
           "tcp_packet", "udp_packet"]
