"""How deletions travel in layers: OCI (AUFS-style) whiteout names, and overlayfs's form.

In a layer tar, ``dir/.wh.name`` deletes ``dir/name`` of the lower layers and
``dir/.wh..wh..opq`` hides everything the lower layers had in ``dir``. In an overlay
upper dir the same facts are a 0/0 character device and an ``overlay.opaque=y`` xattr.
"""

from __future__ import annotations

PREFIX = ".wh."
"""``<dir>/.wh.<name>`` deletes ``<dir>/<name>`` from lower layers."""

META_PREFIX = ".wh..wh."
"""Reserved for markers (AUFS also put hardlink bookkeeping here); only OPAQUE is meaningful."""

OPAQUE = ".wh..wh..opq"
"""``<dir>/.wh..wh..opq``: lower layers' content of ``<dir>`` is hidden."""

OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
"""overlayfs control attributes: ``trusted.`` normally, ``user.`` with the userxattr option."""

OVERLAY_OPAQUE_XATTRS = tuple(p + "opaque" for p in OVERLAY_XATTR_PREFIXES)

OVERLAY_UNSUPPORTED_XATTRS = tuple(
    p + name for p in OVERLAY_XATTR_PREFIXES for name in ("redirect", "metacopy")
)
"""Renamed directories and metadata-only copy-ups: an upper dir using them is not a diff
on its own. Mount with ``redirect_dir=off,metacopy=off`` to get uppers we can pack."""


def is_overlay_xattr(name: str) -> bool:
    """Is ``name`` an overlayfs control attribute (never packed, never applied)?"""
    return name.startswith(OVERLAY_XATTR_PREFIXES)
