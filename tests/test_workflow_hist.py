"""BCC's print_log2_hist/print_linear_hist on maps: BCC's exact text, in both backends."""
from __future__ import annotations

import ctypes
import io

import pytest

import ebee
from ebee import uapi as U
from ebee.maps.hist import log2_hist_lines, stars
from ebee.packet import tcp_packet, udp_packet
from kernel_helpers import EXAMPLES

H = "     %-19s : count     distribution"


def text(m, kind="log2", **kw) -> str:
    out = io.StringIO()
    getattr(m, f"print_{kind}_hist")(file=out, **kw)
    return out.getvalue()


def test_log2_exact_format():
    m = ebee.Map(U.MapType.HASH, 4, 8, 64)
    for k, v in {1: 3, 3: 211, 4: 1, 7: 800}.items():
        m[k] = v
    assert text(m, val_type="kbytes") == (
        "     kbytes              : count     distribution\n"
        "         0 -> 1          : 3        |                                        |\n"
        "         2 -> 3          : 0        |                                        |\n"
        "         4 -> 7          : 211      |**********                              |\n"
        "         8 -> 15         : 1        |                                        |\n"
        "        16 -> 31         : 0        |                                        |\n"
        "        32 -> 63         : 0        |                                        |\n"
        "        64 -> 127        : 800      |****************************************|\n")


def test_log2_strip_leading_zero_and_wide_slots():
    m = ebee.Map(U.MapType.ARRAY, 4, 8, 65)
    m[3], m[5] = 2, 4
    assert text(m, strip_leading_zero=True).splitlines() == [
        H % "value",
        "         4 -> 7          : 2        |********************                    |",
        "         8 -> 15         : 0        |                                        |",
        "        16 -> 31         : 4        |****************************************|"]
    m[40] = 1          # past slot 32: 20-digit columns, a 20-star bar
    lines = text(m).splitlines()
    assert lines[0] == "               value                         : count     distribution"
    assert lines[40] == (" " * 8 + "549755813888 -> 1099511627775        : 1        "
                         "|*****               |")


def test_stars_follow_bccs_float_arithmetic():
    assert stars(1, 3, 40) == "*" * 13           # 13.33 -> 13
    assert stars(2, 3, 40) == "*" * 26           # 26.67 -> 26
    assert stars(0, 5, 40) == ""
    assert stars(5, 4, 40) == "*" * 39 + "+"
    assert log2_hist_lines([0] * 65) == [] and log2_hist_lines([7] + [0] * 64) == []


def test_linear_exact_format():
    m = ebee.Map(U.MapType.ARRAY, 4, 4, 8)
    m[0], m[2] = 1, 4
    assert text(m, kind="linear", val_type="ms") == (
        "     ms            : count     distribution\n"
        "        0          : 1        |**********                              |\n"
        "        1          : 0        |                                        |\n"
        "        2          : 4        |****************************************|\n")
    assert text(ebee.Map(U.MapType.ARRAY, 4, 4, 8), kind="linear") == ""


class Key(ctypes.Structure):
    _fields_ = [("disk", ctypes.c_uint32), ("slot", ctypes.c_uint32)]


def test_struct_key_sections_ctypes_and_percpu():
    m = ebee.Map(U.MapType.PERCPU_HASH, 8, 8, 64)
    m.key_type = Key
    m[Key(2, 1)] = [1] * m.ncpus
    m[Key(1, 2)] = [0] * (m.ncpus - 1) + [5]
    out = text(m, val_type="usecs", section_header="disk",
               section_print_fn=lambda b: f"sd{chr(ord('a') + b - 1)}",
               bucket_sort_fn=sorted)
    n = m.ncpus
    assert out == (
        "\ndisk = sda\n" + H % "usecs" + "\n"
        "         0 -> 1          : 0        |                                        |\n"
        "         2 -> 3          : 5        |" + "*" * 40 + "|\n"
        "\ndisk = sdb\n" + H % "usecs" + "\n"
        f"         0 -> 1          : {n:<8d} |" + "*" * 40 + "|\n")
    # bucket_fn merges buckets; default label is repr(bucket)
    assert "\nBucket ptr = 0\n" in text(m, bucket_fn=lambda b: 0)


def test_bad_keys_say_why():
    m = ebee.Map(U.MapType.HASH, 4, 8, 4)
    m[70] = 1
    with pytest.raises(IndexError, match="slot 70"):
        m.print_log2_hist()
    big = ebee.Map(U.MapType.HASH, 4, 16, 4)
    big[1] = bytes(16)
    with pytest.raises(TypeError, match="at most 8 bytes"):
        big.print_log2_hist()


PACKETS = [udp_packet(payload=b"x" * n) for n in (0, 10, 100, 300, 1000)] + \
          [tcp_packet(payload=b"y" * n) for n in (0, 200)]


def run_all(prog):
    for p in PACKETS:
        prog.run(p)


def test_btf_struct_key_from_a_program():
    """pktlen_hist.o counts packet sizes per IP protocol (key {proto, slot}, from BTF)."""
    with ebee.load(EXAMPLES / "pktlen_hist.o") as obj:
        run_all(obj.programs["count_sizes"])
        out = text(obj.maps["by_proto"], val_type="bytes", section_header="proto",
                   bucket_sort_fn=sorted)
        lin = text(obj.maps["linear"], kind="linear", val_type="64 B")
    # udp: 42, 52, 142, 342, 1042 bytes; tcp: 54, 254
    assert out.split("\nproto = ")[1:] == [
        "6\n" + H % "bytes" + "\n" + "\n".join(
            f"{(1 << i) >> 1 if i > 1 else 0:>10d} -> {(1 << i) - 1:<10d} : {c:<8d} |"
            f"{'*' * (40 * c // 1):<40s}|" for i, c in enumerate([0] * 6 + [1, 0, 1], 0)
            if i >= 1) + "\n",
        "17\n" + H % "bytes" + "\n" + "\n".join(
            f"{(1 << i) >> 1 if i > 1 else 0:>10d} -> {(1 << i) - 1:<10d} : {c:<8d} |"
            f"{'*' * (40 * c // 2):<40s}|"
            for i, c in enumerate([0] * 6 + [2, 0, 1, 1, 0, 1], 0) if i >= 1) + "\n"]
    assert lin.splitlines()[0] == "     64 B          : count     distribution"
    assert len(lin.splitlines()) == 1 + 17     # 1042 // 64 = 16


@pytest.mark.kernel
def test_same_text_from_the_kernel(kernel):
    """The same program in the kernel (BPF_PROG_TEST_RUN): the same histograms."""
    with ebee.load(EXAMPLES / "pktlen_hist.o") as obj:
        run_all(obj.programs["count_sizes"])
        want = [text(obj.maps["by_proto"], bucket_sort_fn=sorted),
                text(obj.maps["linear"], kind="linear")]
    with ebee.load(EXAMPLES / "pktlen_hist.o") as obj, obj.load_kernel() as k:
        run_all(k.programs["count_sizes"])
        got = [text(k.maps["by_proto"], bucket_sort_fn=sorted),
               text(k.maps["linear"], kind="linear")]
    assert got == want
