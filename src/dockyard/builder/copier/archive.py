"""ADD's local archives: told apart by content, extracted confined to the destination.

BuildKit (``isArchivePath``) unpacks a source when it is a regular file that
decompresses (gzip, bzip2, xz, zstd or none) into something whose first tar header
reads; anything else is copied as a file. It extracts with moby's ``chrootarchive``:
chrooted into the destination directory, so the archive's symlinks, ``..`` and hardlinks
resolve inside that directory. We get the same confinement by handing
:func:`dockyard.layers.apply_layer` the destination directory itself (through
``/proc/self/fd``) as its root. Entries keep the tar's modes, times and owners; with
``--chown`` every entry is chowned afterwards (``--chmod`` does not apply, as in
BuildKit). Differences from moby's ``Untar``: ``.wh.`` entries act as whiteouts,
directories that gain entries keep their times, holes stay holes, and an archive stops
at the layer size limits (:mod:`dockyard.layers.limits`), whatever its compression.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import lzma
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import IO

from dockyard.errors import DockyardError
from dockyard.layers import apply_layer, open_decompressed
from dockyard.layers.extract import clean_path
from dockyard.runtime import inroot

_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"
_GZIP = b"\x1f\x8b\x08"
_ZSTD = b"\x28\xb5\x2f\xfd"


@contextlib.contextmanager
def _tar_stream(fd: int) -> Iterator[IO[bytes] | io.RawIOBase]:
    """The uncompressed tar stream of the regular file open at ``fd`` (read from 0)."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(os.fdopen(os.dup(fd), "rb"))
        head = os.pread(fd, 6, 0)
        raw.seek(0)
        if head.startswith(_BZIP2):
            yield stack.enter_context(bz2.BZ2File(raw))
        elif head.startswith(_XZ):
            yield stack.enter_context(lzma.LZMAFile(raw))
        else:
            yield open_decompressed(raw)  # gzip, zstd or as is


def is_archive(fd: int) -> bool:
    """Does the file open at ``fd`` hold a (possibly compressed) tar? (``isArchivePath``)"""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    try:
        with _tar_stream(fd) as stream:
            block = stream.read(tarfile.BLOCKSIZE)
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except (OSError, EOFError, ValueError, tarfile.TarError, DockyardError, lzma.LZMAError):
        return False
    return True


def extract(fd: int, dest_fd: int, owner: tuple[int, int] | None) -> None:
    """Extract the archive open at ``fd`` into the directory ``dest_fd``, nothing outside it.

    Every entry is chowned to ``owner`` if given. DockyardError for hostile or broken
    archives.
    """
    with _tar_stream(fd) as stream:
        apply_layer(stream, f"/proc/self/fd/{dest_fd}")
    if owner is None:
        return
    with _tar_stream(fd) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        while (member := tar.next()) is not None:
            tar.members.clear()  # type: ignore[attr-defined]  # read so far: not kept
            _chown(dest_fd, clean_path(member.name), owner)


def _chown(dest_fd: int, parts: list[str], owner: tuple[int, int]) -> None:
    """Chown what the entry ``parts`` became, found as apply_layer found it (symlinks on
    the way resolved inside the destination); setuid/setgid bits survive, as in moby's
    ``Untar`` which chowns before it chmods."""
    if not parts:
        os.chown(dest_fd, *owner)
        return
    try:
        parent = inroot.open_in_root(dest_fd, "/".join(parts[:-1]), os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return  # a whiteout's directory, or replaced later in the archive
    try:
        name = parts[-1]
        try:
            mode = os.lstat(name, dir_fd=parent).st_mode
        except FileNotFoundError:
            return
        os.chown(name, *owner, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o6000:
            os.chmod(name, stat.S_IMODE(mode), dir_fd=parent)
    finally:
        os.close(parent)
