"""``dockyard import``: a directory becomes a one-layer image in the store."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from dockyard.oci.config import DEFAULT_PATH
from dockyard.oci.descriptor import Platform
from dockyard.oci.home import RawManifest
from dockyard.oci.mutate import ImageState
from dockyard.reference import Reference
from dockyard.store import Store


def _timestamp() -> str:
    """Now, or ``SOURCE_DATE_EPOCH`` for reproducible images."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def import_directory(
    store: Store,
    directory: Path,
    ref: Reference,
    *,
    compression: str | None = "gzip",
    cmd: list[str] | None = None,
    env: list[str] | None = None,
) -> str:
    """Store ``directory`` as a one-layer image named ``ref``; return its manifest digest.

    The directory is packed straight into the store; the config and manifest are made
    through :class:`~dockyard.oci.mutate.ImageState`.
    """
    from dockyard.layers import pack

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    with store.lease():
        with store.blobs.ingest() as blob:
            packed = pack(
                directory,
                cast(BinaryIO, blob.file),  # pack only writes to it
                compression=compression,
                source_date_epoch=int(epoch) if epoch else None,
            )
            blob.commit(packed.digest)
        created = _timestamp()
        state = ImageState.new(Platform.host())
        state.config["Env"] = list(env or [f"PATH={DEFAULT_PATH}"])  # as given: NAME=value entries
        state.set_cmd(cmd or None)
        state.add_layer(
            packed.descriptor(), packed.diff_id, f"dockyard import {directory.name}", created
        )
        config, manifest = state.finish(created, fixed=True)
        store.blobs.write_bytes(config)
        destination = store.destination(ref)
        destination.put_manifest(RawManifest(manifest.raw, manifest.media_type), root=True)
        destination.commit()
    return manifest.digest
