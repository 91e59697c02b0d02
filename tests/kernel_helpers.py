"""Shared pieces of the kernel-backend tests: packets, a veth pair in a netns, bpffs dirs."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "c"
SRC_MAC, DST_MAC = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def udp_frame(src="10.0.0.1", dst="10.0.0.2", sport=1234, dport=80, payload=b"x" * 18,
              proto=socket.IPPROTO_UDP, dst_mac=DST_MAC, src_mac=SRC_MAC) -> bytes:
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return dst_mac + src_mac + b"\x08\x00" + ipv4(src, dst, proto, l4)


def need_ip() -> str:
    ip = shutil.which("ip")
    if ip is None:
        pytest.skip("iproute2 (ip) is not installed (.ci/run installs it)")
    return ip


@contextlib.contextmanager
def veth_netns():
    """A fresh network namespace holding a veth pair v0 <-> v1, both up; always deleted."""
    ip = need_ip()
    listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout
    for name in (ln.split()[0] for ln in listed.splitlines() if ln.startswith("ebee-t")):
        try:                                   # left by a test run that was killed
            os.kill(int(name[len("ebee-t"):].split("-")[0]), 0)
        except ProcessLookupError:
            subprocess.run([ip, "netns", "del", name], capture_output=True)
        except (ValueError, PermissionError):
            pass
    ns = f"ebee-t{os.getpid()}-{uuid.uuid4().hex[:6]}"
    r = subprocess.run([ip, "netns", "add", ns], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
    try:
        for cmd in (["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                    ["link", "set", "v0", "up"], ["link", "set", "v1", "up"]):
            subprocess.run([ip, "-n", ns, *cmd], check=True, capture_output=True)
        yield ns
    finally:
        subprocess.run([ip, "netns", "del", ns], capture_output=True)


def send_frames(ns: str, ifname: str, frames: list[bytes]) -> None:
    """Transmit raw frames on an interface (ENOBUFS, a frame dropped on egress, is fine)."""
    import errno
    from ebee.kernel import netns
    with netns.enter(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            s.bind((ifname, 0))
            for f in frames:
                try:
                    s.send(f)
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
        finally:
            s.close()


class Sniffer:
    """IPv4 frames from SRC_MAC arriving on an interface (after XDP/tc ran on them)."""

    def __init__(self, ns: str, ifname: str):
        from ebee.kernel import netns
        with netns.enter(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            self.sock.bind((ifname, 0))
        self.sock.setblocking(False)

    def frames(self) -> list[bytes]:
        import time
        out = []
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            try:
                data, addr = self.sock.recvfrom(65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if data[6:12] == SRC_MAC and addr[2] != socket.PACKET_OUTGOING:
                out.append(data)
        return out

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def bpffs_dir():
    """A directory of our own on the bpffs, removed with everything pinned in it."""
    from ebee.kernel.fs import ensure_bpffs
    try:
        root = ensure_bpffs("/sys/fs/bpf")
    except OSError as e:
        pytest.skip(f"no bpf filesystem: {e.strerror}")
    for stale in root.glob("ebee-test-*-*"):      # left by a test run that was killed
        try:
            os.kill(int(stale.name.split("-")[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError):
            pass
    d = root / f"ebee-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_unprivileged(fn) -> str:
    """``fn()`` in a forked child running as uid/gid 65534 with no capabilities; returns
    the string it returns (or the child's exception).  Everything fn needs must already
    be imported: the child may not be able to read root's Python installation."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # child
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = str(fn())
        except BaseException as e:                 # noqa: BLE001 - reported to the parent
            out = f"exception: {e!r}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def released(id_list, obj_id: int, timeout: float = 5.0) -> bool:
    """The kernel object ``obj_id`` left ``id_list()`` (its ids) within ``timeout`` s.

    Dropping the last reference from bpffs (unpin) or a link detach frees the
    object from a workqueue (``bpf_link_put`` -> ``bpf_link_put_deferred``), so its
    id stays visible for a moment after the last close.
    """
    deadline = time.monotonic() + timeout
    while obj_id in list(id_list()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


UNPRIV_SYSCTL = "/proc/sys/kernel/unprivileged_bpf_disabled"


@contextlib.contextmanager
def unprivileged_bpf():
    """Unprivileged bpf() allowed while the block runs: lowers
    kernel.unprivileged_bpf_disabled from 2 to 0 (and back) when EBEE_UNPRIV_SYSCTL=1,
    skips with the reason otherwise."""
    try:
        old = Path(UNPRIV_SYSCTL).read_text().strip()
    except OSError:
        pytest.skip(f"{UNPRIV_SYSCTL} is not readable")
    if old == "0":
        yield
        return
    if old != "2" or os.environ.get("EBEE_UNPRIV_SYSCTL") != "1":
        pytest.skip(f"unprivileged bpf() is disabled (kernel.unprivileged_bpf_disabled={old}); "
                    f"EBEE_UNPRIV_SYSCTL=1 lets the test lower it from 2 while it runs")
    Path(UNPRIV_SYSCTL).write_text("0")       # 2 (unlike 1) can be set back
    try:
        yield
    finally:
        Path(UNPRIV_SYSCTL).write_text(old)
