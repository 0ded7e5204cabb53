"""Layers: deterministic tar packing, safe extraction, whiteouts and compression.

- :func:`pack` writes a directory (or an overlay upper dir) as a layer blob in one pass.
- :func:`apply_layer` applies one uncompressed layer tar onto a rootfs, safely.
- :func:`flatten` applies a stack of layer blobs into a directory (``dockyard export``).
- :func:`open_decompressed` / :class:`CompressingWriter` stream gzip and zstd.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard import lazy

if TYPE_CHECKING:
    from dockyard.layers.compression import CompressingWriter, open_decompressed
    from dockyard.layers.extract import apply_layer, flatten
    from dockyard.layers.packer import PackedLayer, pack

# Imported on first use: packing needs neither extraction nor the decompressors.
_WHERE = {
    **dict.fromkeys(["CompressingWriter", "open_decompressed"], "compression"),
    **dict.fromkeys(["apply_layer", "flatten"], "extract"),
    **dict.fromkeys(["PackedLayer", "pack"], "packer"),
}

__all__ = [
    "CompressingWriter",
    "PackedLayer",
    "apply_layer",
    "flatten",
    "open_decompressed",
    "pack",
]


__getattr__ = lazy.exports(__name__, _WHERE)
