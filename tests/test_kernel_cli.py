"""``ebee --kernel ...``, ``ebee link``, ``ebee trace-pipe``, ``ebee feature probe``:
bpftool's commands and output shapes, on the running kernel."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import uuid

import pytest

import ebee
from ebee.cli.main import main
from kernel_helpers import EXAMPLES, bpffs_dir, run_unprivileged, udp_frame

pytestmark = pytest.mark.kernel


def ebee_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prog_load_show_dump_run_pin(kernel, capsys, tmp_path):
    with bpffs_dir() as d:
        fw = str(d / "fw")
        code, out, err = ebee_cli(capsys, "--kernel", "prog", "load",
                                  str(EXAMPLES / "xdp_firewall.o"), fw, "--pinmaps",
                                  str(d / "maps"), "--pin-root", str(d))
        assert code == 0, err
        assert sorted(os.listdir(d / "maps")) == ["stats"]     # blocklist pins itself by name
        assert (d / "blocklist").exists()
        code, out, _ = ebee_cli(capsys, "--kernel", "prog", "show", "pinned", fw)
        lines = out.splitlines()
        assert code == 0 and lines[0].split(":")[1].split()[0] == "xdp"
        assert "name xdp_firewall" in lines[0] and lines[0].endswith("gpl")
        assert lines[1].startswith("\tloaded_at ") and "  uid 0" in lines[1]
        assert lines[2].startswith("\txlated ") and "map_ids" in lines[2]
        code, out, _ = ebee_cli(capsys, "--kernel", "prog", "show", "pinned", fw, "--json")
        info = json.loads(out)
        assert info["name"] == "xdp_firewall" and info["type"] == "xdp" and len(info["map_ids"]) == 2
        pid = str(info["id"])
        # bpftool's own view agrees
        if shutil.which("bpftool"):
            theirs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "id", pid],
                                               capture_output=True, text=True).stdout)
            for key in ("id", "type", "name", "tag", "gpl_compatible", "bytes_xlated",
                        "bytes_jited", "map_ids", "btf_id", "loaded_at", "uid"):
                assert info[key] == theirs[key], key
        code, out, _ = ebee_cli(capsys, "--kernel", "prog", "dump", "xlated", "id", pid)
        assert out.startswith("int xdp_firewall(struct xdp_md * ctx):\n")
        assert "; if (eth->h_proto != bpf_htons(ETH_P_IP))" in out and "map[id:" in out
        code, out, _ = ebee_cli(capsys, "--kernel", "prog", "dump", "xlated", "id", pid, "-j")
        insns = json.loads(out)
        assert insns[0]["proto"].startswith("int xdp_firewall") and insns[0]["disasm"]
        code, out, _ = ebee_cli(capsys, "--kernel", "prog", "dump", "jited", "id", pid)
        assert code == 0 and out.splitlines()[0] == f"bpf_prog_{info['tag']}_xdp_firewall:"
        pkt = tmp_path / "pkt"
        pkt.write_bytes(udp_frame())
        code, out, _ = ebee_cli(capsys, "--kernel", "prog", "run", "pinned", fw, "data_in",
                                str(pkt), "data_out", str(tmp_path / "out"), "repeat", "5")
        assert out == f"Return value: 2, duration (average): {out.split(': ')[2]}"
        assert (tmp_path / "out").read_bytes() == udp_frame()
        code, out, _ = ebee_cli(capsys, "--kernel", "map", "dump", "pinned",
                                str(d / "maps" / "stats"))
        assert json.loads(out) == [{"key": 0, "value": 5}, {"key": 1, "value": 0}]
        code, _, _ = ebee_cli(capsys, "--kernel", "prog", "pin", "id", pid, str(d / "again"))
        assert code == 0 and (d / "again").exists()


def test_pinmaps_pins_global_data_like_libbpf(kernel, capsys):
    """Global-data maps are pinned under sanitized names (bpffs refuses dots), and
    carry their DATASEC as value type: dumps show variables, as bpftool's do."""
    with bpffs_dir() as d:
        code, _, err = ebee_cli(capsys, "--kernel", "prog", "load", str(EXAMPLES / "globals.o"),
                                str(d / "g"), "--pinmaps", str(d / "maps"))
        assert code == 0, err
        assert sorted(os.listdir(d / "maps")) == ["globals_bss", "globals_data", "globals_rodata"]
        bss = str(d / "maps" / "globals_bss")
        code, out, _ = ebee_cli(capsys, "--kernel", "map", "dump", "pinned", bss)
        assert json.loads(out) == [{"value": {".bss": [{"packets_seen": 0}, {"last_len": 0}]}}]
        if shutil.which("bpftool"):
            theirs = subprocess.run(["bpftool", "map", "dump", "pinned", bss],
                                    capture_output=True, text=True).stdout
            assert json.loads(theirs) == json.loads(out)


def test_xlated_dumps_match_bpftool(kernel, capsys):
    """Every example program as bpftool prints it, byte for byte (with linum and opcodes
    for the objects with subprograms, tail calls and CO-RE)."""
    if not shutil.which("bpftool"):
        pytest.skip("bpftool not installed")
    compared = 0
    with bpffs_dir() as pins:
        for path in sorted(EXAMPLES.glob("*.o")):
            if path.name == "lirc_nec.o":     # no CONFIG_BPF_LIRC_MODE2 here: test_lirc.py
                continue
            with ebee.load(path) as obj, obj.load_kernel(pin_root=str(pins)) as k:
                for p in k.programs.values():
                    full = path.name in ("bpf2bpf.o", "tail_calls.o", "core_task.o")
                    for extra in ([], ["linum"], ["opcodes"]) if full else ([],):
                        main(["--kernel", "prog", "dump", "xlated", "id", str(p.id), *extra])
                        ours = capsys.readouterr().out
                        theirs = subprocess.run(["bpftool", "prog", "dump", "xlated", "id",
                                                 str(p.id), *extra], capture_output=True,
                                                text=True).stdout
                        assert ours == theirs, (path.name, p.name, extra)
                        compared += 1
    assert compared >= 20


def test_map_commands(kernel, capsys):
    from ebee.kernel.map_handle import KernelMapHandle
    from ebee.kernel.maps import KernelMap
    from ebee.uapi import MapType
    with bpffs_dir() as d, KernelMapHandle(KernelMap(MapType.HASH, 4, 8, 8, name="ebee_cli")) as m:
        m.pin(d / "m")
        mid = str(m.id)
        assert ebee_cli(capsys, "--kernel", "map", "update", "id", mid, "key", "1", "0", "0",
                        "0", "value", "hex", "2a", "00", "00", "00", "00", "00", "00", "00")[0] == 0
        code, out, _ = ebee_cli(capsys, "--kernel", "map", "lookup", "pinned", str(d / "m"),
                                "key", "1", "0", "0", "0")
        assert out == "key: 01 00 00 00  value: 2a 00 00 00 00 00 00 00\n"
        code, out, _ = ebee_cli(capsys, "--kernel", "map", "dump", "name", "ebee_cli")
        assert out.endswith("Found 1 element\n")
        code, out, _ = ebee_cli(capsys, "--kernel", "map", "show", "id", mid, "-j")
        assert json.loads(out) == {"id": m.id, "type": "hash", "name": "ebee_cli", "flags": 0,
                                   "bytes_key": 4, "bytes_value": 8, "max_entries": 8,
                                   "bytes_memlock": m.info().memlock, "frozen": 0}
        code, _, err = ebee_cli(capsys, "--kernel", "map", "delete", "id", mid, "key", "9", "0",
                                "0", "0")
        assert code == 1 and err == "error: delete failed: No such file or directory\n"
        assert ebee_cli(capsys, "--kernel", "map", "freeze", "id", mid)[0] == 0
        code, _, err = ebee_cli(capsys, "--kernel", "map", "update", "id", mid, "key", "1", "0",
                                "0", "0", "value", *["0"] * 8)
        assert code == 1 and "Operation not permitted" in err
        code, _, err = ebee_cli(capsys, "--kernel", "map", "show", "id", "bogus")
        assert code == 2 and err.startswith("error:")


def test_attach_pin_link_show_detach(kernel, capsys):
    with bpffs_dir() as d, ebee.load(EXAMPLES / "syscall_counter.o") as obj, \
            obj.load_kernel() as k:
        k.programs["count_syscalls"].pin(d / "prog")
        pid = str(k.programs["count_syscalls"].id)
        code, _, err = ebee_cli(capsys, "--kernel", "prog", "attach", "id", pid,
                                "--section", "tracepoint/raw_syscalls/sys_enter",
                                "--pin", str(d / "link"))
        assert code == 0, err
        code, out, _ = ebee_cli(capsys, "link", "show", "pinned", str(d / "link"), "--json")
        link = json.loads(out)
        assert link["type"] == "perf_event" and link["prog_id"] == int(pid)
        code, out, _ = ebee_cli(capsys, "link", "show", "id", str(link["id"]))
        assert out == f"{link['id']}: perf_event  prog {pid}  \n"
        subprocess.run(["true"])
        assert len(k.maps["syscalls"]) > 0           # still counting after the CLI returned
        code, _, err = ebee_cli(capsys, "--kernel", "prog", "detach", "id", pid)
        assert code == 0, err
        assert not (d / "link").exists()
        code, _, err = ebee_cli(capsys, "link", "show", "id", str(link["id"]))
        assert code == 1


def test_btf_commands(kernel, capsys):
    code, out, _ = ebee_cli(capsys, "--kernel", "btf", "show", "id", "1")
    assert out.startswith("1: name [vmlinux]  size ")
    with ebee.load(EXAMPLES / "bpf2bpf.o") as obj, obj.load_kernel() as k:
        code, out, _ = ebee_cli(capsys, "--kernel", "btf", "dump", "id", str(k.btf.id))
        assert code == 0 and "FUNC 'calls'" in out
        if shutil.which("bpftool"):
            theirs = subprocess.run(["bpftool", "btf", "dump", "id", str(k.btf.id)],
                                    capture_output=True, text=True).stdout
            assert out == theirs
        code, out, _ = ebee_cli(capsys, "--kernel", "btf", "dump", "prog",
                                str(k.programs["calls"].id), "format", "c")
        assert code == 0 and "struct xdp_md {" in out


def test_feature_probe_agrees_with_bpftool(kernel, capsys):
    code, out, _ = ebee_cli(capsys, "feature", "probe", "--no-helpers", "--json")
    ours = json.loads(out)
    assert ours["program_types"]["have_xdp_prog_type"] is True
    assert ours["map_types"]["have_ringbuf_map_type"] is True
    if not shutil.which("bpftool"):
        pytest.skip("bpftool not installed")
    theirs = json.loads(subprocess.run(["bpftool", "-j", "feature", "probe", "kernel"],
                                       capture_output=True, text=True).stdout)
    compared = 0
    for section in ("program_types", "map_types", "misc"):
        for key, value in theirs[section].items():
            if key in ours[section]:
                assert ours[section][key] == value, key
                compared += 1
    assert compared > 60


def test_feature_probe_helpers(kernel):
    from ebee.kernel.probe import helpers_for
    from ebee.uapi import ProgType
    xdp = helpers_for(ProgType.XDP)
    sf = helpers_for(ProgType.SOCKET_FILTER)
    assert "bpf_xdp_adjust_head" in xdp and "bpf_xdp_adjust_head" not in sf
    assert "bpf_map_lookup_elem" in xdp and "bpf_map_lookup_elem" in sf
    assert "bpf_skb_load_bytes" in sf and "bpf_skb_load_bytes" not in xdp


def test_trace_pipe_command(tracing, tmp_path):
    marker = "ebee" + uuid.uuid4().hex[:8]
    words = struct.unpack("<QQ", (marker + "\0").encode().ljust(16, b"\0"))
    from ebee.kernel.prog import KernelProgram
    from ebee.uapi import ProgType
    prog = KernelProgram(ebee.assemble(f"""
        r1 = {words[0]:#x} ll
        *(u64 *)(r10 - 16) = r1
        r1 = {words[1]:#x} ll
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -16
        r2 = 16
        call 6
        r0 = 2
        exit
    """), ProgType.XDP, name="cliprintk")
    proc = subprocess.Popen([sys.executable, "-m", "ebee", "trace-pipe", "--json",
                             "--timeout", "10"], stdout=subprocess.PIPE, text=True)
    try:
        found = None

        def fire():
            import time
            for _ in range(50):
                if found is not None:
                    return
                prog.run(bytes(64))
                time.sleep(0.1)
        t = threading.Thread(target=fire)
        t.start()
        for line in proc.stdout:
            d = json.loads(line)
            if d["message"] == marker:
                found = d
                break
        t.join()
    finally:
        proc.terminate()
        proc.wait()
        prog.close()
    assert found is not None and found["function"] == "bpf_trace_printk"


def test_without_privileges_the_error_says_what_is_needed(kernel):
    import io

    def attempt():
        err = io.StringIO()
        old = sys.stderr
        sys.stderr = err
        try:
            code = main(["--kernel", "prog", "show"])
        finally:
            sys.stderr = old
        return f"{code} {err.getvalue()}"
    out = run_unprivileged(attempt)
    code, msg = out.split(" ", 1)
    assert code == "1" and "needs CAP_BPF and CAP_PERFMON, or root" in msg
    assert msg.count("\n") == 1 and msg.startswith("error: ")


def test_attach_until_ctrl_c(kernel):
    """Without --pin, `prog attach` holds the attachment until Ctrl-C, then detaches."""
    import signal
    import time
    from ebee.kernel.info import Kind, ids, link_info
    from ebee.kernel.info import fd_by_id
    with ebee.load(EXAMPLES / "syscall_counter.o") as obj, obj.load_kernel() as k:
        pid = k.programs["count_syscalls"].id
        proc = subprocess.Popen([sys.executable, "-m", "ebee", "--kernel", "prog", "attach",
                                 "id", str(pid), "--section",
                                 "tracepoint/raw_syscalls/sys_enter"],
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr.readline().startswith("attached count_syscalls -> ")

            def ours():
                found = []
                for i in ids(Kind.LINK):
                    try:
                        fd = fd_by_id(Kind.LINK, i)
                    except OSError:
                        continue
                    try:
                        if link_info(fd).prog_id == pid:
                            found.append(i)
                    finally:
                        os.close(fd)
                return found
            assert len(ours()) == 1
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
            assert ours() == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        code = main(["--kernel", "prog", "attach", "id", str(pid), "--section", "raw_tp/x"])
        assert code == 2                    # a tracepoint program named like a raw_tp one


def test_trace_pipe_says_when_tracing_is_off(kernel, tmp_path, monkeypatch, capsys):
    from ebee.cli import kernel_misc
    from ebee.kernel.trace_pipe import tracing_on
    flag = tmp_path / "tracing_on"
    flag.write_text("0\n")
    assert tracing_on(str(flag)) is False
    flag.write_text("1\n")
    assert tracing_on(str(flag)) is True
    monkeypatch.setattr(kernel_misc, "tracing_on", lambda: False)
    assert main(["trace-pipe", "--timeout", "0.1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ebee: warning: tracing is off") and err.count("\n") == 1
