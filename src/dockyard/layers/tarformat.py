"""Writing tar headers (POSIX ustar + pax records), fast and byte-for-byte reproducible.

``tarfile.TarInfo.tobuf`` costs ~20 µs a header, more than the syscalls of a small file:
packing 100k files would spend seconds there. This writer builds the same format with
one ``struct.pack``, and adds a pax header only when a field does not fit ustar (long
or non-ASCII names, big sizes/ids/times) or the entry has xattrs. It writes no user or
group names, no atime/ctime, and nothing that depends on when or where it runs.
"""

from __future__ import annotations

from collections.abc import Mapping

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)

REGTYPE = b"0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
_PAXTYPE = b"x"

XATTR_PAX_PREFIX = "SCHILY.xattr."

# The ustar layout: name 100, mode 8, uid 8, gid 8, size 12, mtime 12, checksum 8,
# typeflag 1, linkname 100, magic+version 8, uname 32, gname 32, devmajor 8,
# devminor 8, prefix 155, padding 12.
_MAGIC = b"ustar\x0000"
_NO_NAMES = bytes(64)  # uname, gname: ids only, for reproducible layers
_NO_DEVICE = b"0000000\0" * 2
_NO_PREFIX = bytes(155 + 12)
_CONSTANT_SUM = sum(b" " * 8) + sum(_MAGIC)  # the checksum field counts as spaces
_MAX_ID = 8**7  # 7 octal digits
_MAX_NUM = 8**11  # 11 octal digits: sizes and times
_PAX_NAME = b"././@PaxHeader"


_REG_TAIL = REGTYPE + bytes(100) + _MAGIC + _NO_NAMES + _NO_DEVICE + _NO_PREFIX
_REG_SUM = _CONSTANT_SUM + REGTYPE[0] + sum(_NO_DEVICE)
_PADDING = [bytes(n) for n in range(BLOCK)]


def file_header(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int) -> bytes:
    """What :func:`header` gives for a regular file without xattrs, faster.

    Most files of a tree fit the plain ustar block, whose constant part is made once."""
    if (
        len(name) > 100
        or not name.isascii()
        or size >= _MAX_NUM
        or not 0 <= mtime < _MAX_NUM
        or uid >= _MAX_ID
        or gid >= _MAX_ID
    ):
        return header(name, REGTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, size=size)
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    checksum = _REG_SUM + sum(name) + sum(numbers)
    return b"%s%s%06o\0 %s" % (name.ljust(100, b"\0"), numbers, checksum, _REG_TAIL)


def padding(size: int) -> bytes:
    """The zero bytes that follow ``size`` bytes of file data to fill the last block."""
    return _PADDING[-size % BLOCK]


def header(
    name: bytes,
    typeflag: bytes,
    *,
    mode: int,
    uid: int,
    gid: int,
    mtime: int,
    size: int = 0,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: Mapping[str, bytes] | None = None,
) -> bytes:
    """The header block(s) of one entry, preceded by a pax header when one is needed.

    ``name`` is the path inside the archive as raw bytes (directories end in ``/``);
    ``mode`` holds permission bits only; ``xattrs`` maps attribute names to raw values.
    """
    records: list[bytes] = []
    if len(name) > 100 or not name.isascii():
        records.append(_record(b"path", name))
    if len(linkname) > 100 or not linkname.isascii():
        records.append(_record(b"linkpath", linkname))
    if size >= _MAX_NUM:
        records.append(_record(b"size", b"%d" % size))
        size = 0
    if not 0 <= mtime < _MAX_NUM:
        records.append(_record(b"mtime", b"%d" % mtime))
        mtime = 0
    if uid >= _MAX_ID:
        records.append(_record(b"uid", b"%d" % uid))
        uid = 0
    if gid >= _MAX_ID:
        records.append(_record(b"gid", b"%d" % gid))
        gid = 0
    if devmajor >= _MAX_ID or devminor >= _MAX_ID:
        raise ValueError(f"device number {devmajor}:{devminor} does not fit a tar header")
    if xattrs:
        for key in sorted(xattrs):
            if "=" in key:
                raise ValueError(f"xattr name {key!r} contains '=' and cannot be a pax record")
            records.append(_record((XATTR_PAX_PREFIX + key).encode(), xattrs[key]))
    block = _block(name, typeflag, mode, uid, gid, size, mtime, linkname, devmajor, devminor)
    if not records:
        return block
    data = b"".join(records)
    pax = _block(_PAX_NAME, _PAXTYPE, 0, 0, 0, len(data), 0, b"", 0, 0)
    return pax + data + padding(len(data)) + block


def _block(
    name: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    """One 512-byte ustar header; fields too long are cut (a pax record carries them).

    Built by concatenation, and the checksum summed over the few non-constant bytes
    only: summing all 512 bytes would be a third of the cost of a small file.
    """
    name = name[:100]
    linkname = linkname[:100]
    numbers = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    devices = _NO_DEVICE if not devmajor | devminor else b"%07o\0%07o\0" % (devmajor, devminor)
    checksum = _CONSTANT_SUM + typeflag[0] + sum(name) + sum(numbers) + sum(linkname) + sum(devices)
    return b"".join(
        (
            name.ljust(100, b"\0"),
            numbers,
            b"%06o\0 " % checksum,
            typeflag,
            linkname.ljust(100, b"\0"),
            _MAGIC,
            _NO_NAMES,
            devices,
            _NO_PREFIX,
        )
    )


def _record(key: bytes, value: bytes) -> bytes:
    """``"<len> key=value\\n"``, where ``len`` counts the whole record including itself."""
    body = b" %s=%s\n" % (key, value)
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return b"%d%s" % (length, body)
