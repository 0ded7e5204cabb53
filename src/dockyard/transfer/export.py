"""An image's filesystem as a plain directory: its layers applied in order.

An export that fails (a hostile layer, a layer past the size limits) leaves nothing
behind: a directory it made is removed, an empty one it was given is emptied again.
"""

from __future__ import annotations

import os
import shutil
import stat
from contextlib import ExitStack
from pathlib import Path

from dockyard.oci.descriptor import Platform
from dockyard.oci.home import ImageSource
from dockyard.transfer.resolve import resolve_image


def export_rootfs(
    source: ImageSource, directory: Path, platform: Platform | None = None
) -> list[str]:
    """Flatten the image ``source`` holds (for ``platform``) into ``directory``.

    Whiteouts are applied; return the extraction warnings (e.g. devices skipped).
    """
    from dockyard.layers import flatten

    manifest = resolve_image(source, platform=platform)
    made = not directory.exists()
    was_empty = made or not any(directory.iterdir())
    try:
        with ExitStack() as stack:
            blobs = (stack.enter_context(source.open_blob(layer)) for layer in manifest.layers)
            names = [f"layer {layer.digest}" for layer in manifest.layers]
            return flatten(blobs, directory, names=names)
    except BaseException:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        elif was_empty:
            _empty(directory)
        raise


def _empty(directory: Path) -> None:
    """Remove everything in ``directory``, never following a symlink in it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in os.listdir(fd):
            if stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
