"""Reading and writing captures: pcap (µs or ns) and pcapng, through dpkt.

Classic pcap is read here directly, because dpkt hands back a truncated last
record without a word and bad input must be reported with its location; pcapng
is read with dpkt and checked the same way.  Writers are dpkt's; a capture is
written to a temporary file and renamed into place when complete, so an error
never leaves half a file behind.  In pcapng output each packet may carry a
comment (ebee marks XDP_TX and redirected packets that way).
"""
from __future__ import annotations

import os
import struct
import sys
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

DLT_EN10MB = 1
# magic -> (byte order, nanoseconds per unit of the fraction field)
_PCAP_MAGICS = {0xA1B2C3D4: ("<", 1000), 0xA1B23C4D: ("<", 1),
                0xD4C3B2A1: (">", 1000), 0x4D3CB2A1: (">", 1)}
_PCAPNG_MAGIC = 0x0A0D0D0A


class PcapError(ValueError):
    """A capture file that is not what it should be: FILE: error: WHAT (at WHERE)."""


@dataclass(frozen=True)
class Frame:
    """One captured packet."""
    index: int          # 0-based position in the capture
    ts: float           # seconds since the epoch (display only: a float drifts)
    data: bytes
    orig_len: int       # length on the wire (may exceed len(data) if the capture was cut)
    linktype: int = DLT_EN10MB
    # the exact timestamp in integer nanoseconds, what writers use: a float of seconds
    # since the epoch cannot hold a microsecond timestamp exactly
    ts_ns: int | None = None


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise PcapError(f"{path}: error: no such file") from None
    except IsADirectoryError:
        raise PcapError(f"{path}: error: is a directory") from None
    except OSError as e:
        raise PcapError(f"{path}: error: {e.strerror}") from None


def read(path: str) -> Iterator[Frame]:
    """The frames of a pcap or pcapng file, in order; PcapError on bad input."""
    lay = layout(path)
    yield from read_from(lay, lay.start, 0)


@dataclass(frozen=True)
class Layout:
    """What a capture's headers say: where its records start and how to read them
    (what a native record scanner needs; see :func:`ebee.engines.jit.capture`)."""
    path: str
    pcapng: bool
    swap: bool              # multi-byte fields are in the other byte order than the host's
    start: int              # the byte offset of the first record (pcapng: after the first IDB)
    linktype: int
    snaplen: int = 0        # pcap
    unit_ns: int = 1000     # pcap: ns per unit of the fraction field
    per_s: int = 1_000_000  # pcapng: timestamp units per second (if_tsresol)
    tsoffset: int = 0       # pcapng: seconds added to every timestamp (if_tsoffset)
    size: int = 0           # the file's size when its headers were read

    @property
    def caplen_max(self) -> int:
        return max(self.snaplen, 262144)


_HOST = "<" if sys.byteorder == "little" else ">"


def layout(path: str) -> Layout:
    """Read a capture's headers; PcapError (what :func:`read` raises) on a bad one."""
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(4)
        if len(head) < 4:
            raise PcapError(f"{path}: error: not a capture file (only {len(head)} bytes)")
        magic_le = struct.unpack("<I", head)[0]
        if magic_le == _PCAPNG_MAGIC:
            f.seek(0)
            r, le = _pcapng_reader(path, f)
            per_s, offset = _tsresol(r)
            return Layout(path, True, ("<" if le else ">") != _HOST, f.tell(), r.datalink(),
                          per_s=per_s, tsoffset=offset, size=size)
        if magic_le not in _PCAP_MAGICS:
            raise PcapError(f"{path}: error: not a pcap or pcapng file (magic "
                            f"{head.hex()}; expected a1b2c3d4, a1b23c4d or 0a0d0d0a)")
        endian, unit_ns = _PCAP_MAGICS[magic_le]
        rest = f.read(20)
        if len(rest) < 20:
            raise PcapError(f"{path}: error: truncated pcap file header")
        _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII", rest)
        return Layout(path, False, endian != _HOST, 24, linktype & 0x0FFFFFFF, snaplen=snaplen,
                      unit_ns=unit_ns, size=size)


def read_from(lay: Layout, pos: int, index: int) -> Iterator[Frame]:
    """The frames from byte ``pos`` on (the record of packet ``index``): the reader
    resumed where a native scan stopped."""
    f = _open(lay.path)
    with f:
        if lay.pcapng:
            r, _ = _pcapng_reader(lay.path, f)
            f.seek(pos)
            yield from _read_pcapng(lay.path, f, r, index)
        else:
            f.seek(pos)
            yield from _read_pcap(lay.path, f, "<" if (lay.swap == (_HOST == ">")) else ">",
                                  lay.unit_ns, lay.snaplen, lay.linktype, index, pos)


def _read_pcap(path: str, f: BinaryIO, endian: str, unit_ns: int, snaplen: int, linktype: int,
               index: int, offset: int) -> Iterator[Frame]:
    rec = struct.Struct(endian + "IIII")
    while True:
        h = f.read(16)
        if not h:
            return
        if len(h) < 16:
            raise PcapError(f"{path}: error: truncated record header of packet {index + 1} "
                            f"at byte {offset}")
        sec, frac, caplen, wirelen = rec.unpack(h)
        if caplen > max(snaplen, 262144):
            raise PcapError(f"{path}: error: packet {index + 1} at byte {offset} claims "
                            f"{caplen} bytes (snaplen {snaplen})")
        data = f.read(caplen)
        if len(data) < caplen:
            raise PcapError(f"{path}: error: packet {index + 1} at byte {offset} is truncated "
                            f"({len(data)} of {caplen} bytes)")
        ts_ns = sec * 1_000_000_000 + frac * unit_ns
        yield Frame(index, ts_ns / 1e9, data, wirelen, linktype, ts_ns)
        index += 1
        offset += 16 + caplen


_SHB_MIN = 28       # type, length, byte-order magic, version, section length, length


def _shb_problem(head: bytes, file_size: int) -> str | None:
    """What is wrong with a pcapng section header block (``head``: the file's first
    bytes), or None; dpkt's own messages ("length fields do not match", or none at all)
    do not say which field or where."""
    if len(head) < _SHB_MIN:
        return (f"truncated section header block ({len(head)} of at least {_SHB_MIN} "
                f"bytes)")
    bom = head[8:12].hex()
    if bom not in ("4d3c2b1a", "1a2b3c4d"):
        return f"byte-order magic {bom} at byte 8 (expected 4d3c2b1a or 1a2b3c4d)"
    e = "<" if bom == "4d3c2b1a" else ">"
    (length,) = struct.unpack(e + "I", head[4:8])
    if length < _SHB_MIN or length % 4:
        return (f"section header block length {length} at byte 4 (it must be a multiple "
                f"of 4 and at least {_SHB_MIN})")
    if length > file_size:
        return (f"section header block length {length} at byte 4 runs past the end of the "
                f"file ({file_size} bytes)")
    major, minor = struct.unpack(e + "HH", head[12:16])
    if major != 1:
        return f"version {major}.{minor} at byte 12 (expected 1.x)"
    if len(head) >= length:
        (trailer,) = struct.unpack(e + "I", head[length - 4:length])
        if trailer != length:
            return (f"section header block length {length} at byte 4 but {trailer} at byte "
                    f"{length - 4} (the two must match)")
    return None


def _pcapng_reader(path: str, f: BinaryIO):
    """dpkt's reader past the section header and the first interface block, and whether
    the section is little-endian."""
    import dpkt
    from dpkt import pcapng
    size = os.fstat(f.fileno()).st_size
    head = f.read(min(size, 1 << 16))
    f.seek(0)
    problem = _shb_problem(head, size)
    if problem is not None:
        raise PcapError(f"{path}: error: bad pcapng section header: {problem}")
    try:
        r = pcapng.Reader(f)
    except (ValueError, dpkt.NeedData, dpkt.UnpackError, struct.error) as e:
        what = str(e) or type(e).__name__
        if what == "IDB not found":
            what = "no interface description block follows it"
        raise PcapError(f"{path}: error: bad pcapng section header: {what}") from None
    return r, r.idb.__hdr_fmt__[0] == "<"


def _read_pcapng(path: str, f: BinaryIO, r, index: int = 0) -> Iterator[Frame]:
    import dpkt
    linktype = r.datalink()
    it = _pcapng_packets(r)
    while True:
        try:
            ts_ns, data = next(it)
        except StopIteration:
            break
        except (ValueError, dpkt.NeedData, dpkt.UnpackError, struct.error) as e:
            what = "truncated block" if isinstance(e, dpkt.NeedData) else str(e) or type(e).__name__
            raise PcapError(f"{path}: error: bad pcapng block after packet {index}: {what}") \
                from None
        yield Frame(index, ts_ns / 1e9, bytes(data), len(data), linktype, ts_ns)
        index += 1
    tail = f.read(1)
    if tail:
        raise PcapError(f"{path}: error: trailing data after packet {index} is not a "
                        f"pcapng block")


def _tsresol(r) -> tuple[int, int]:
    """The interface's timestamp units per second (if_tsresol; 10**6 by default) and
    its offset in seconds (if_tsoffset)."""
    from dpkt import pcapng
    per_s, offset = 1_000_000, 0
    le = r.idb.__hdr_fmt__[0] == "<"
    for opt in r.idb.opts:
        if opt.code == pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            v = opt.data[0]
            per_s = (2 if v & 0x80 else 10) ** (v & 0x7F)
        elif opt.code == pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) >= 8:
            (offset,) = struct.unpack("<q" if le else ">q", opt.data[:8])
    return per_s, offset


def _pcapng_packets(r) -> Iterator[tuple[int, bytes]]:
    """(timestamp in integer nanoseconds, data) of each packet block: dpkt's own iterator
    divides the timestamp into a float of seconds, which drifts."""
    from dpkt import pcapng
    per_s, offset = _tsresol(r)
    le = r.idb.__hdr_fmt__[0] == "<"
    f = r._Reader__f            # dpkt's reader keeps the file under a mangled name
    hdr = "<II" if le else ">II"
    while True:
        buf = f.read(8)
        if len(buf) < 8:
            if buf:
                raise ValueError("truncated block")
            return
        blk_type, blk_len = struct.unpack(hdr, buf)
        buf += f.read(blk_len - 8)
        if blk_type == pcapng.PCAPNG_BT_EPB:
            b = pcapng.EnhancedPacketBlockLE(buf) if le else pcapng.EnhancedPacketBlock(buf)
        elif blk_type == pcapng.PCAPNG_BT_PB:
            b = pcapng.PacketBlockLE(buf) if le else pcapng.PacketBlock(buf)
        else:
            continue
        units = (b.ts_high << 32) | b.ts_low
        # round to the nearest nanosecond (exact for resolutions down to 1 ns)
        ns = (units * 1_000_000_000 * 2 + per_s) // (2 * per_s)
        yield offset * 1_000_000_000 + ns, b.pkt_data


def count(path: str) -> int:
    """How many packets a capture holds (reads the record headers only for pcap)."""
    n = 0
    for _ in read(path):
        n += 1
    return n


class Writer:
    """Write frames to ``path`` (pcap, or pcapng if the name ends in .pcapng or ``ng``)."""

    def __init__(self, path: str, *, pcapng: bool | None = None, linktype: int = DLT_EN10MB,
                 nano: bool = True):
        import dpkt
        from dpkt import pcapng as ng
        self.path = path
        self.pcapng = path.endswith(".pcapng") if pcapng is None else pcapng
        d = os.path.dirname(os.path.abspath(path))
        try:
            fd, self._tmp = tempfile.mkstemp(dir=d, prefix=".ebee-", suffix=".pcap")
        except OSError as e:
            raise PcapError(f"{path}: error: {e.strerror}") from None
        self._f = os.fdopen(fd, "wb")
        self.nano = nano
        if self.pcapng:
            self._ng = ng
            # nanosecond timestamps (if_tsresol 9), so that neither µs nor ns input loses
            # a digit on the way through
            idb = ng.InterfaceDescriptionBlockLE(snaplen=262144, linktype=linktype, opts=[
                ng.PcapngOptionLE(code=ng.PCAPNG_OPT_IF_TSRESOL, data=b"\x09"),
                ng.PcapngOptionLE(code=ng.PCAPNG_OPT_ENDOFOPT)])
            self._w = ng.Writer(self._f, snaplen=262144, linktype=linktype, idb=idb)
        else:
            self._w = dpkt.pcap.Writer(self._f, snaplen=262144, linktype=linktype, nano=nano)
            self._rec = struct.Struct("<IIII" if sys.byteorder == "little" else ">IIII")
        self.written = 0

    def write(self, data: bytes, ts: float | None = None, comment: str | None = None, *,
              ts_ns: int | None = None) -> None:
        """One packet; ``ts_ns`` (integer nanoseconds) is exact, ``ts`` (float seconds)
        is rounded to the nanosecond."""
        if ts_ns is None:
            ts_ns = round((ts or 0.0) * 1e9) if isinstance(ts, float) else int(ts or 0) * 10**9
        # pcap keeps u32 seconds, pcapng u64 nanoseconds: a timestamp read from a damaged
        # capture may fit neither
        limit = 1 << 64 if self.pcapng else (1 << 32) * 1_000_000_000
        if not 0 <= ts_ns < limit:
            shown = ts if ts is not None else ts_ns / 1e9
            raise PcapError(f"{self.path}: error: packet {self.written + 1}: timestamp "
                            f"{shown!r} does not fit a {'pcapng' if self.pcapng else 'pcap'} "
                            f"file")
        if self.pcapng:
            ng = self._ng
            opts = []
            if comment:
                opts = [ng.PcapngOptionLE(code=ng.PCAPNG_OPT_COMMENT, text=comment.encode()),
                        ng.PcapngOptionLE(code=ng.PCAPNG_OPT_ENDOFOPT)]
            epb = ng.EnhancedPacketBlockLE(pkt_data=bytes(data), pkt_len=len(data),
                                           caplen=len(data), opts=opts,
                                           ts_high=ts_ns >> 32, ts_low=ts_ns & 0xFFFFFFFF)
            self._f.write(bytes(epb))    # dpkt's writepkt puts the current time on ts 0
        else:
            sec, ns = divmod(ts_ns, 1_000_000_000)
            frac = ns if self.nano else ns // 1000
            self._f.write(self._rec.pack(sec, frac, len(data), len(data)) + bytes(data))
        self.written += 1

    def write_records(self, records, count: int) -> None:
        """``count`` packets already formatted as this file's records (what ``write`` would
        write for each: ebee.engines.jit.capture writes them natively)."""
        self._f.write(records)
        self.written += count

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._f is None:
            return
        self._f.close()
        self._f = None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)     # mkstemp made it 0600
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        if self._f is not None:
            self._f.close()
            self._f = None
            try:
                os.unlink(self._tmp)
            except OSError:
                pass

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
