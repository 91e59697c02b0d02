"""SOCKMAP, SOCKHASH (net/core/sock_map.c) and REUSEPORT_SOCKARRAY: maps of sockets.

User space stores a socket by its file descriptor (``BPF_MAP_UPDATE_ELEM`` with the
fd as the value, 4 or 8 bytes) and reads back its socket cookie (8-byte values
only; ENOSPC otherwise).  ebee takes real sockets of this process: the fd is
checked as Linux checks it (EBADF, ENOTSOCK; EOPNOTSUPP for a socket type sockmap
cannot hold or a TCP socket neither established nor listening), and the element
keeps the socket's cookie.  A socket closed since goes away from the map, as
Linux unlinks a socket from every map when it is closed.

The maps also hold ebee's modelled sockets (:class:`ebee.sockets.Socket`, passed as
the value itself): user space and sockops programs (``bpf_sock_map_update``,
``bpf_sock_hash_update``, ``bpf_map_update_elem`` with a socket pointer) insert them
with Linux's checks, the socket takes the map's sk_msg program (``progs``) into its
psock, and ``bpf_msg_redirect_map/hash`` find them (docs/sockets.md).
"""
from __future__ import annotations

import errno as E
import os
import socket
import stat
import struct
from typing import Any

from .. import uapi as U
from ..uapi import MapType
from .array import ArrayMap
from .base import Map
from .errors import MapError, map_error
from .jhash import jhash
from ..sockets import Socket, by_addr as sock_by_addr, link_psock, state_allowed, suitable

#: map_flags sockmap and sockhash accept (SOCK_CREATE_FLAG_MASK)
SOCK_CREATE_FLAGS = U.BPF_F_NUMA_NODE | U.BPF_F_RDONLY | U.BPF_F_WRONLY
S32_MAX = (1 << 31) - 1
INT_MAX = S32_MAX
SO_COOKIE = getattr(socket, "SO_COOKIE", 57)
SO_DOMAIN = getattr(socket, "SO_DOMAIN", 39)
SO_PROTOCOL = getattr(socket, "SO_PROTOCOL", 38)
TCP_ESTABLISHED, TCP_LISTEN = 1, 10
AF_VSOCK = getattr(socket, "AF_VSOCK", 40)


class _Sock:
    """A socket an element holds: the fd it was stored with and its cookie."""

    __slots__ = ("fd", "cookie")

    def __init__(self, fd: int, cookie: int):
        self.fd, self.cookie = fd, cookie

    def alive(self) -> bool:
        """The socket is still open (its fd still names the socket with this cookie)."""
        try:
            return _cookie(self.fd) == self.cookie
        except OSError:
            return False


def _cookie(fd: int) -> int:
    s = socket.socket(fileno=os.dup(fd))
    try:
        return struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
    finally:
        s.close()


def sock_from_fd(ufd: int) -> _Sock:
    """sock_map_update_elem_sys()'s checks of the fd, in Linux's order."""
    if ufd > S32_MAX:
        raise map_error(E.EINVAL, f"fd {ufd} is out of range")
    try:
        st = os.fstat(ufd)
    except OSError:
        raise map_error(E.EBADF, f"fd {ufd} is not open") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise map_error(E.ENOTSOCK, f"fd {ufd} is not a socket")
    s = socket.socket(fileno=os.dup(ufd))
    try:
        family = s.getsockopt(socket.SOL_SOCKET, SO_DOMAIN)
        stype = s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        proto = s.getsockopt(socket.SOL_SOCKET, SO_PROTOCOL)
        inet = family in (socket.AF_INET, socket.AF_INET6)
        tcp = inet and stype == socket.SOCK_STREAM and proto == socket.IPPROTO_TCP
        udp = inet and stype == socket.SOCK_DGRAM and proto == socket.IPPROTO_UDP
        unix = family == socket.AF_UNIX and stype in (socket.SOCK_STREAM, socket.SOCK_DGRAM)
        if not (tcp or udp or unix or family == AF_VSOCK):
            # sock_map_sk_is_suitable(): only protocols with psock_update_sk_prot
            raise map_error(E.EOPNOTSUPP, "sockmap holds TCP, UDP, unix stream/datagram and "
                                          "vsock sockets")
        # sock_map_sk_state_allowed()
        if tcp:
            state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
            if state not in (TCP_ESTABLISHED, TCP_LISTEN):
                raise map_error(E.EOPNOTSUPP, "a TCP socket must be established or listening")
        elif udp:
            if not s.getsockname()[1]:
                raise map_error(E.EOPNOTSUPP, "a UDP socket must be bound (hashed)")
        elif (unix and stype == socket.SOCK_STREAM) or \
                (family == AF_VSOCK and stype in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)):
            try:
                s.getpeername()
            except OSError:
                raise map_error(E.EOPNOTSUPP, "a stream socket must be connected") from None
        cookie = struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
    finally:
        s.close()
    return _Sock(ufd, cookie)


def modelled_sock(value: Socket, from_prog: bool) -> Socket:
    """The checks of sock_map_update_elem_sys() (user space) or sock_map_update_elem()
    (a program's bpf_map_update_elem) on a modelled socket."""
    if value.closed:
        raise map_error(E.EBADF if not from_prog else E.EINVAL, "the socket is closed")
    if not suitable(value):
        raise map_error(E.EOPNOTSUPP, "sockmap holds TCP and UDP sockets")
    if not state_allowed(value):
        raise map_error(E.EOPNOTSUPP, "a TCP socket must be established or listening, a UDP "
                                      "socket bound")
    return value


class _SockMapBase(Map):
    create_flags = SOCK_CREATE_FLAGS
    #: holds sockets: a program's bpf_map_update_elem passes a socket pointer
    holds_sockets = True

    def alloc_progs(self) -> None:
        #: programs attached to the map (BPF_SK_MSG_VERDICT: "msg_verdict",
        #: BPF_SK_SKB_VERDICT: "skb_verdict", BPF_SK_SKB_STREAM_VERDICT: "stream_verdict",
        #: BPF_SK_SKB_STREAM_PARSER: "stream_parser")
        self.progs: dict[str, Any] = {}

    def _link(self, sk: Any) -> None:
        if isinstance(sk, Socket):
            p = self.progs
            stream = p.get("stream_verdict")
            r = link_psock(sk, p.get("msg_verdict"), stream or p.get("skb_verdict"),
                           p.get("stream_parser"), stream is not None)
            if r:
                raise map_error(-r, "the socket has an sk_msg or sk_skb program already")

    @staticmethod
    def _unlink(sk: Any) -> None:
        """sock_map_unref(): the socket's last map link gone, its psock (and the sk_msg
        program it took) goes."""
        if isinstance(sk, Socket) and sk.psock is not None:
            sk.psock.links -= 1
            if sk.psock.links <= 0:
                sk.psock = None

    def prog_update_sock(self, key: bytes, sk_addr: int, flags: int, *,
                         checked: bool = True) -> int:
        """bpf_map_update_elem (checked) or bpf_sock_map/hash_update from a program:
        0 or -errno."""
        sk = sock_by_addr(sk_addr)
        if sk is None or sk.closed:
            return -E.EINVAL
        try:
            if checked:
                modelled_sock(sk, True)
            with self.lock:
                self._insert(key, sk, flags)
        except MapError as e:
            return -e.errno
        return 0

    def prog_lookup(self, key: bytes, cpu: int) -> int:
        """__sock_map_lookup_elem for a program: the modelled socket's address, or 0."""
        try:
            s = self._lookup_sock(key)
        except MapError:
            return 0
        return s.addr if isinstance(s, Socket) else 0

    def prog_delete(self, key: bytes, cpu: int) -> int:
        try:
            with self.lock:
                self._sys_delete(key)
        except MapError as e:
            return -e.errno
        return 0

    def lookup_socket(self, key: bytes) -> Socket | None:
        """The modelled socket under ``key`` (redirect helpers), or None."""
        try:
            s = self._lookup_sock(key)
        except MapError:
            return None
        return s if isinstance(s, Socket) else None

    def _sock_value(self, value: Any) -> Any:
        if isinstance(value, Socket):
            return modelled_sock(value, False)
        return sock_from_fd(self._ufd(value))

    def check_attr(self) -> None:
        if self.btf_key_type_id or self.btf_value_type_id:
            raise map_error(U.ENOTSUPP, f"{self.type.name} maps take no BTF")   # map_check_no_btf

    def _sys_value(self, value: Any) -> Any:
        if isinstance(value, Socket):
            return value
        if isinstance(value, socket.socket):
            value = value.fileno()
        return self._v(value)

    def _ufd(self, value: bytes) -> int:
        return int.from_bytes(value[:self.value_size], "little")

    def _cookie_of(self, s: _Sock | None) -> bytes:
        if self.value_size != 8:
            raise map_error(E.ENOSPC, "socket cookies are read through 8-byte values")
        if s is None:
            raise map_error(E.ENOENT)
        return s.cookie.to_bytes(8, "little")


class SockMap(_SockMapBase):
    """BPF_MAP_TYPE_SOCKMAP: an array of sockets."""
    map_type = MapType.SOCKMAP

    def check_attr(self) -> None:
        if (self.max_entries == 0 or self.max_entries > INT_MAX or self.key_size != 4 or
                self.value_size not in (4, 8)):
            raise map_error(E.EINVAL, "sockmap needs key_size 4, value_size 4 or 8 and "
                                      "max_entries > 0")
        super().check_attr()

    def alloc(self) -> None:
        self.sks: dict[int, Any] = {}
        self.alloc_progs()

    def _slot(self, idx: int) -> Any:
        s = self.sks.get(idx)
        if s is not None and not s.alive():     # closed: Linux unlinked it (sock_map_close)
            del self.sks[idx]
            s = None
        return s

    def _lookup_sock(self, key: bytes) -> Any:
        idx = int.from_bytes(key[:4], "little")
        s = self._slot(idx) if idx < self.max_entries else None
        if s is None:
            raise map_error(E.ENOENT)
        return s

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        if self.value_size != 8:
            raise map_error(E.ENOSPC, "socket cookies are read through 8-byte values")
        idx = int.from_bytes(key, "little")
        return self._cookie_of(self._slot(idx) if idx < self.max_entries else None)

    def _sys_update(self, key: bytes, value: Any, flags: int) -> None:
        self._insert(key, self._sock_value(value), flags)

    def _insert(self, key: bytes, sk: Any, flags: int) -> None:
        """sock_map_update_common()."""
        idx = int.from_bytes(key, "little")
        if flags > U.BPF_EXIST:
            raise map_error(E.EINVAL, f"invalid update flags {flags:#x}")
        if idx >= self.max_entries:
            raise map_error(E.E2BIG, f"index {idx} is past max_entries")
        old = self._slot(idx)
        if old is not None and flags == U.BPF_NOEXIST:
            raise map_error(E.EEXIST)
        if old is None and flags == U.BPF_EXIST:
            raise map_error(E.ENOENT)
        self._link(sk)
        if old is not None:
            self._unlink(old)
        self.sks[idx] = sk

    def _sys_delete(self, key: bytes) -> None:
        idx = int.from_bytes(key, "little")
        if idx >= self.max_entries or self._slot(idx) is None:
            raise map_error(E.EINVAL)          # __sock_map_delete of an empty slot
        self._unlink(self.sks.pop(idx))

    def _get_next_key(self, key: bytes | None) -> bytes:
        i = int.from_bytes(key, "little") if key is not None else 0xFFFFFFFF
        if i == self.max_entries - 1:
            raise map_error(E.ENOENT)
        return (0 if i >= self.max_entries else i + 1).to_bytes(4, "little")


class SockHash(_SockMapBase):
    """BPF_MAP_TYPE_SOCKHASH: sockets by key, in the kernel's bucket order."""
    map_type = MapType.SOCKHASH

    def check_attr(self) -> None:
        if self.max_entries == 0 or self.key_size == 0 or self.value_size not in (4, 8):
            raise map_error(E.EINVAL, "sockhash needs key_size > 0, value_size 4 or 8 and "
                                      "max_entries > 0")
        if self.key_size > U.MAX_BPF_STACK:
            raise map_error(E.E2BIG, f"key_size {self.key_size} is over {U.MAX_BPF_STACK}")
        super().check_attr()

    def alloc(self) -> None:
        n = self.max_entries
        self.nbuckets = 1 if n <= 1 else 1 << (n - 1).bit_length()
        self.buckets: dict[int, list[tuple[bytes, Any]]] = {}
        self.alloc_progs()

    def _hash(self, key: bytes) -> int:
        return jhash(key, 0) & (self.nbuckets - 1)       # sock_hash_bucket_hash

    def _bucket_at(self, h: int) -> list[tuple[bytes, _Sock]]:
        b = self.buckets.setdefault(h, [])
        b[:] = [(k, s) for k, s in b if s.alive()]     # closed sockets left every map
        return b

    def _find(self, key: bytes) -> Any:
        return next((s for k, s in self._bucket_at(self._hash(key)) if k == key), None)

    def _lookup_sock(self, key: bytes) -> Any:
        s = self._find(bytes(key[:self.key_size]))
        if s is None:
            raise map_error(E.ENOENT)
        return s

    def _count(self) -> int:
        return sum(len(self._bucket_at(h)) for h in list(self.buckets))

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        if self.value_size != 8:
            raise map_error(E.ENOSPC, "socket cookies are read through 8-byte values")
        return self._cookie_of(self._find(key))

    def _sys_update(self, key: bytes, value: Any, flags: int) -> None:
        self._insert(key, self._sock_value(value), flags)

    def _insert(self, key: bytes, sk: Any, flags: int) -> None:
        """sock_hash_update_common()."""
        if flags > U.BPF_EXIST:
            raise map_error(E.EINVAL, f"invalid update flags {flags:#x}")
        b = self._bucket_at(self._hash(key))
        old = next((i for i, (k, _) in enumerate(b) if k == key), None)
        if old is not None and flags == U.BPF_NOEXIST:
            raise map_error(E.EEXIST)
        if old is None and flags == U.BPF_EXIST:
            raise map_error(E.ENOENT)
        if old is None and self._count() >= self.max_entries:
            raise map_error(E.E2BIG, "the map is full")
        self._link(sk)
        if old is not None:
            self._unlink(b[old][1])
            del b[old]
        b.insert(0, (key, sk))                  # hlist_add_head_rcu

    def _sys_delete(self, key: bytes) -> None:
        b = self._bucket_at(self._hash(key))
        for i, (k, sk) in enumerate(b):
            if k == key:
                del b[i]
                self._unlink(sk)
                return
        raise map_error(E.ENOENT)

    def _get_next_key(self, key: bytes | None) -> bytes:
        start = 0
        if key is not None:
            h = self._hash(key)
            b = self._bucket_at(h)
            at = next((i for i, (k, _) in enumerate(b) if k == key), None)
            if at is not None:          # the next in its bucket, else the next bucket's first
                if at + 1 < len(b):
                    return b[at + 1][0]
                start = h + 1
        for h in sorted(h for h in self.buckets if h >= start):
            b = self._bucket_at(h)
            if b:
                return b[0][0]
        raise map_error(E.ENOENT)


#: sockets held by some REUSEPORT_SOCKARRAY (sk_user_data is set): cookie -> holder count
_reuseport_held: dict[int, int] = {}


class ReuseportArray(Map):
    """BPF_MAP_TYPE_REUSEPORT_SOCKARRAY (kernel/bpf/reuseport_array.c): an array of
    SO_REUSEPORT sockets, bound (UDP) or listening (TCP); a socket is in one such array
    slot at most (EBUSY)."""
    map_type = MapType.REUSEPORT_SOCKARRAY
    create_flags = ArrayMap.create_flags

    def check_attr(self) -> None:
        if self.value_size not in (4, 8):
            raise map_error(E.EINVAL, "reuseport arrays need value_size 4 or 8")
        ArrayMap.check_attr(self)

    def alloc(self) -> None:
        self.sks: dict[int, _Sock] = {}

    def _sys_value(self, value: Any) -> Any:
        if isinstance(value, socket.socket):
            value = value.fileno()
        return self._v(value)

    def _slot(self, idx: int) -> _Sock | None:
        s = self.sks.get(idx)
        if s is not None and not s.alive():     # closed: bpf_sk_reuseport_detach
            self._release(idx)
            s = None
        return s

    def _release(self, idx: int) -> None:
        s = self.sks.pop(idx)
        n = _reuseport_held.get(s.cookie, 0) - 1
        if n > 0:
            _reuseport_held[s.cookie] = n
        else:
            _reuseport_held.pop(s.cookie, None)

    def _sys_lookup(self, key: bytes, flags: int) -> bytes:
        if self.value_size != 8:
            raise map_error(E.ENOSPC, "socket cookies are read through 8-byte values")
        idx = int.from_bytes(key, "little")
        s = self._slot(idx) if idx < self.max_entries else None
        if s is None:
            raise map_error(E.ENOENT)
        return s.cookie.to_bytes(8, "little")

    def _sys_update(self, key: bytes, value: bytes, flags: int) -> None:
        if flags > U.BPF_EXIST:
            raise map_error(E.EINVAL, f"invalid update flags {flags:#x}")
        idx = int.from_bytes(key, "little")
        if idx >= self.max_entries:
            raise map_error(E.E2BIG, f"index {idx} is past max_entries")
        raw = int.from_bytes(value[:self.value_size], "little", signed=self.value_size == 4)
        if self.value_size == 8 and raw > S32_MAX:
            raise map_error(E.EINVAL, f"fd {raw} is out of range")
        if raw < 0:
            raise map_error(E.EBADF, f"fd {raw} is not open")
        try:
            st = os.fstat(raw)
        except OSError:
            raise map_error(E.EBADF, f"fd {raw} is not open") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise map_error(E.ENOTSOCK, f"fd {raw} is not a socket")
        old = self._slot(idx)
        if old is not None and flags == U.BPF_NOEXIST:
            raise map_error(E.EEXIST)
        if old is None and flags == U.BPF_EXIST:
            raise map_error(E.ENOENT)
        s = socket.socket(fileno=os.dup(raw))
        try:
            family = s.getsockopt(socket.SOL_SOCKET, SO_DOMAIN)
            stype = s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
            proto = s.getsockopt(socket.SOL_SOCKET, SO_PROTOCOL)
            if proto not in (socket.IPPROTO_UDP, socket.IPPROTO_TCP) or \
                    family not in (socket.AF_INET, socket.AF_INET6) or \
                    stype not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                raise map_error(U.ENOTSUPP, "reuseport arrays hold TCP and UDP sockets")
            reuse = s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            if proto == socket.IPPROTO_TCP:
                hashed = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_LISTEN
            else:
                hashed = s.getsockname()[1] != 0
            # a SO_REUSEPORT group exists once a SO_REUSEPORT socket is hashed
            if not hashed or not reuse:
                raise map_error(E.EINVAL, "the socket must be a bound/listening SO_REUSEPORT "
                                          "socket")
            cookie = struct.unpack("<Q", s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
        finally:
            s.close()
        if _reuseport_held.get(cookie) and not (old is not None and old.cookie == cookie):
            raise map_error(E.EBUSY, "the socket is in a reuseport array already")
        if old is not None:
            self._release(idx)
        self.sks[idx] = _Sock(raw, cookie)
        _reuseport_held[cookie] = _reuseport_held.get(cookie, 0) + 1

    def _sys_delete(self, key: bytes) -> None:
        idx = int.from_bytes(key, "little")
        if idx >= self.max_entries:
            raise map_error(E.E2BIG, f"index {idx} is past max_entries")
        if self._slot(idx) is None:
            raise map_error(E.ENOENT)
        self._release(idx)

    def _get_next_key(self, key: bytes | None) -> bytes:
        i = int.from_bytes(key, "little") if key is not None else 0xFFFFFFFF
        if i >= self.max_entries:
            return (0).to_bytes(4, "little")
        if i == self.max_entries - 1:
            raise map_error(E.ENOENT)
        return (i + 1).to_bytes(4, "little")

    def close(self) -> None:
        for idx in list(self.sks):
            self._release(idx)
        super().close()
