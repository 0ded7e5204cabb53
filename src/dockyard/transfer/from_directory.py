"""``dockyard import``: a directory becomes a one-layer image in the store."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor, Platform
from dockyard.oci.home import RawManifest
from dockyard.reference import Reference
from dockyard.store import Store

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    """Pack ``directory`` straight into the store as a layer, write config and manifest,
    name the image ``ref``; return the manifest digest."""
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
        host = Platform.host()
        image_config: dict = {"Env": env or [DEFAULT_PATH]}
        if cmd:
            image_config["Cmd"] = cmd
        config = manifests.dumps(
            {
                "created": created,
                "architecture": host.architecture,
                "os": host.os,
                "config": image_config,
                "rootfs": {"type": "layers", "diff_ids": [packed.diff_id]},
                "history": [
                    {"created": created, "created_by": f"dockyard import {directory.name}"}
                ],
            }
        )
        config_desc = Descriptor.of_bytes(mt.OCI_CONFIG, config)
        store.blobs.write_bytes(config)
        manifest = manifests.build_manifest(config_desc, [packed.descriptor()])
        destination = store.destination(ref)
        destination.put_manifest(RawManifest(manifest.raw, manifest.media_type), root=True)
        destination.commit()
    return manifest.digest
