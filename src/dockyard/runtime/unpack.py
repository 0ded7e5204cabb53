"""Extracting one layer as an overlayfs lower dir (a snapshot).

Deletions are kept as overlay whiteouts instead of applied.

:func:`dockyard.layers.apply_layer` flattens: a whiteout deletes what lower layers put
there. A snapshot holds only its own layer, so deletions must stay as facts overlayfs
understands: ``.wh.x`` becomes a 0/0 character device ``x``, ``.wh..wh..opq`` the
``trusted.overlay.opaque=y`` xattr on its directory. Paths are resolved and entries
created by the layers package's applier (the same safety: nothing is written outside
the target, whatever the layer's paths and links); only whiteouts are handled here.

Semantics match flattening exactly: what this layer itself adds survives its own
whiteouts, so a directory of this layer named by a whiteout, or recreated after one,
is made opaque (its lower contents hidden) instead of being merged with them.

Needs root: whiteout devices need CAP_MKNOD, ``trusted.*`` xattrs CAP_SYS_ADMIN.
"""

from __future__ import annotations

import os
import stat
import tarfile

from dockyard.errors import LayerError
from dockyard.layers import whiteouts
from dockyard.layers.extract import _Applier, apply_with
from dockyard.oci.streams import Reader

OPAQUE_XATTR = "trusted.overlay.opaque"


def unpack_layer(
    tar_stream: Reader, target: str | os.PathLike[str], *, name: str | None = None
) -> list[str]:
    """Extract one uncompressed layer tar into the empty directory ``target`` in overlay format.

    Return the applier's warnings. Raise :class:`LayerError` for hostile or malformed content, or
    past the size limits (``target`` should then be discarded), starting with ``name`` if given.
    Reads the stream to EOF."""
    return apply_with(
        lambda root_fd, meter: _OverlayApplier(root_fd, True, meter), tar_stream, target, name=name
    )


class _OverlayApplier(_Applier):
    """The layers package's applier, with whiteouts recorded instead of applied."""

    def _whiteout(self, parent: list[str], name: str, entry: str) -> None:
        if name != whiteouts.OPAQUE and name.startswith(whiteouts.META_PREFIX):
            return  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no meaning here
        target = name[len(whiteouts.PREFIX) :]
        if name != whiteouts.OPAQUE and target in ("", ".", ".."):
            raise LayerError(f"layer entry {entry!r}: whiteout names no entry")
        try:
            walked = self._walk(parent, entry, create=True)
        except LayerError:
            return  # a non-directory of this layer on the way already hides all below
        assert walked is not None  # create=True makes what is missing
        dir_fd, real = walked
        try:
            if name == whiteouts.OPAQUE:
                _set_opaque(f"/proc/self/fd/{dir_fd}", follow=True)
                return
            self._changing("/".join(real), dir_fd)
            try:
                mode = os.lstat(target, dir_fd=dir_fd).st_mode
            except FileNotFoundError:
                os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=dir_fd)
                return
            if stat.S_ISDIR(mode):  # this layer's directory: hide only what is below it
                _set_opaque(f"/proc/self/fd/{dir_fd}/{target}")
            # anything else of this layer's at that name already hides the lower one
        finally:
            os.close(dir_fd)

    def _create(
        self, dir_fd: int, name: str, key: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> bool:
        replaces_whiteout = member.isdir() and _is_whiteout(dir_fd, name)
        created = super()._create(dir_fd, name, key, member, tar)
        if replaces_whiteout:
            _set_opaque(f"/proc/self/fd/{dir_fd}/{name}")
        return created


def _is_whiteout(dir_fd: int, name: str) -> bool:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _set_opaque(path: str, *, follow: bool = False) -> None:
    """Mark the directory ``path`` opaque. Its last component is followed only with
    ``follow``: for ``/proc/self/fd/N``, the magic link to a directory we hold."""
    os.setxattr(path, OPAQUE_XATTR, b"y", follow_symlinks=follow)
