"""An image's filesystem as a plain directory: its layers applied in order."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from dockyard.oci.descriptor import Platform
from dockyard.oci.home import ImageSource
from dockyard.transfer.resolve import resolve_image


def export_rootfs(
    source: ImageSource, directory: Path, platform: Platform | None = None
) -> list[str]:
    """Flatten the image ``source`` holds (for ``platform``) into ``directory``, with
    whiteouts applied; return the extraction warnings (e.g. devices skipped)."""
    from dockyard.layers import flatten

    manifest = resolve_image(source, platform=platform)
    with ExitStack() as stack:
        blobs = (stack.enter_context(source.open_blob(layer)) for layer in manifest.layers)
        return flatten(blobs, directory)
