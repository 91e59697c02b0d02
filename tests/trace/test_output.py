"""Output formatting, unit by unit, against what bpftrace 0.17 prints (FORMAT.md)."""
from __future__ import annotations

from ebee.trace.output import (Formatter, MapEntry, format_printf, hist_lines, lhist_label,
                               log2_label)


def test_printf_conversions_as_glibc():
    got = format_printf("[%-10s|%10s|%5d|%-5d|%05d|%c|%p|%lu|%hhu|%x|%X|%.2s|%ld]",
                        ["ab", "cd", 42, 42, 42, 65, 4096, -1, 257, 255, 255, "hello", -2])
    assert got == ("[ab        |        cd|   42|42   |00042|A|0x1000|18446744073709551615|1|ff|"
                   "FF|he|-2]")
    # %o is a conversion, %i is not one to bpftrace 0.17: it is left as text
    assert format_printf("%o %i %d", [8, 5]) == "10 %i 5"


def test_printf_int_widths_follow_c():
    # bpftrace passes 64-bit values to snprintf: %d/%u/%x read 32 bits
    assert format_printf("%d %u %ld %x %lx\n", [5000000000, -1, 5000000000, -1, -1]) == \
        "705032704 4294967295 5000000000 ffffffff ffffffffffffffff\n"
    assert format_printf("%p|%hd|%-3c|", [0, 70000, 66]) == "(nil)|4464|B  |"


def test_printf_percent_handling():
    assert format_printf("a%%b\n", []) == "a%%b\n"                # no specifier: raw
    assert format_printf("100%% done %d%%\n", [5]) == "100% done 5%%\n"
    assert format_printf("%d %% y\n", [1]) == "1 %% y\n"


def test_log2_labels():
    assert [log2_label(i) for i in range(6)] == ["(..., 0)", "[0]", "[1]", "[2, 4)", "[4, 8)",
                                                 "[8, 16)"]
    assert log2_label(11) == "[512, 1K)" and log2_label(12) == "[1K, 2K)"
    assert log2_label(22) == "[1M, 2M)" and log2_label(32) == "[1G, 2G)"


def test_lhist_labels():
    assert lhist_label(0, 0, 100, 10) == "(..., 0)"
    assert lhist_label(1, 0, 100, 10) == "[0, 10)"
    assert lhist_label(11, 0, 100, 10) == "[100, ...)"
    assert lhist_label(3, 0, 4096, 1024) == "[2K, 3K)"


def test_hist_bars():
    # FORMAT.md's example: bars are int(count / max * 52)
    text = hist_lines({2: 1, 3: 2, 4: 4, 5: 8, 6: 5}, log2_label)
    assert text.splitlines() == [
        "[1]                    1 |@@@@@@                                              |",
        "[2, 4)                 2 |@@@@@@@@@@@@@                                       |",
        "[4, 8)                 4 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |",
        "[8, 16)                8 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|",
        "[16, 32)               5 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@                    |"]


def _map(kind, entries, params=(), json_mode=False, top=0, div=0):
    f = Formatter(json_mode)
    key = (lambda k: "" if not k else "[" + ", ".join(str(x) for x in k) + "]")
    return f.map("@m", kind, params, [MapEntry(k, v) for k, v in entries], key, str,
                 lambda v: v, lambda k: ",".join(str(x) for x in k), top, div)


def test_map_orders_and_blank_lines():
    assert _map("count", [(("b",), 3), (("a",), 1)]) == "@m[a]: 1\n@m[b]: 3\n"
    assert _map("avg", [((), (2, 10))]) == "@m: 5\n\n"
    assert _map("stats", [((1,), (10, 55))]) == "@m[1]: count 10, average 5, total 55\n\n"
    assert _map("str", [((5,), "five"), ((3,), "three")]) == "@m[3]: three\n@m[5]: five\n"
    assert _map("count", []) == "\n"
    assert _map("hist", [((), {3: 1})]) == \
        "@m: \n[2, 4)                 1 |" + "@" * 52 + "|\n\n"


def test_print_top_div():
    assert _map("int", [((1,), 10), ((2,), 30), ((3,), 20)], top=2) == "@m[3]: 20\n@m[2]: 30\n"
    assert _map("int", [((1,), 10), ((2,), 30)], div=10) == "@m[1]: 1\n@m[2]: 3\n"


def test_json_maps():
    assert _map("count", [((), 1)], json_mode=True) == '{"type": "map", "data": {"@m": 1}}\n'
    assert _map("count", [(("a", 1), 2)], json_mode=True) == \
        '{"type": "map", "data": {"@m": {"a,1": 2}}}\n'
    assert _map("hist", [((), {0: 1, 1: 1, 4: 1})], json_mode=True) == (
        '{"type": "hist", "data": {"@m": [{"max": -1, "count": 1}, {"min": 0, "max": 0, '
        '"count": 1}, {"min": 1, "max": 1, "count": 0}, {"min": 2, "max": 3, "count": 0}, '
        '{"min": 4, "max": 7, "count": 1}]}}\n')
    assert _map("stats", [((), (1, 3))], json_mode=True) == \
        '{"type": "stats", "data": {"@m": {"count": 1, "average": 3, "total": 3}}}\n'
    assert _map("lhist", [((), {1: 1, 5: 1})], (0, 20, 5), json_mode=True) == (
        '{"type": "hist", "data": {"@m": [{"min": 0, "max": 4, "count": 1}, {"min": 5, "max": '
        '9, "count": 0}, {"min": 10, "max": 14, "count": 0}, {"min": 15, "max": 19, "count": 0}'
        ', {"min": 20, "count": 1}]}}\n')


def test_integer_printf_matches_the_general_path():
    import struct
    from ebee.trace.output import integer_printf
    fmt = "a%% %d|%u|%x|%X|%o|%c|%ld|%lu|%hd|%hhu|%-5d|%05x|%lld %% z\n"
    vals = [-1, -1, -1, 255, 8, 65, -5, -1, 70000, 257, 3, 31, 1 << 40]
    comp = integer_printf(fmt, [8 + 8 * i for i in range(len(vals))])
    assert comp is not None
    st, pyfmt = comp
    rec = struct.pack("<Q", 0) + b"".join(struct.pack("<q", v) for v in vals)
    assert pyfmt % st.unpack_from(rec) == format_printf(fmt, vals)
    assert integer_printf("%p %s", [8, 16]) is None
