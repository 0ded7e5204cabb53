"""Hand-made images in a store, for the ``dockyard check`` and layer analysis tests:
layers of exact tar entries (modes, whiteouts, hardlinks) and any config."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from dockyard import reference
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.home import RawManifest
from dockyard.store import Store

FAKE_KEY = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + b"\n".join(base64.b64encode(os.urandom(48)) for _ in range(6))
    + b"\n-----END OPENSSH PRIVATE KEY-----\n"
)


@dataclass(frozen=True)
class F:
    """One tar entry: a file (``data``), a dir, a symlink, a hardlink or a whiteout."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    uid: int = 0


def d(path: str, mode: int = 0o755) -> F:
    return F(path, mode=mode, kind=tarfile.DIRTYPE)


def whiteout(path: str) -> F:
    parent, _, name = path.rpartition("/")
    return F(f"{parent}/.wh.{name}")


def layer(*entries: F) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path.lstrip("/"))
            info.type = e.kind
            info.mode = e.mode
            info.uid = e.uid
            info.linkname = e.link.lstrip("/") if e.kind == tarfile.LNKTYPE else e.link
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if info.size else None)
    return out.getvalue()


def store_image(
    store_root: Path,
    name: str,
    tars: list[bytes],
    runtime: dict | None = None,
    history: list[str] | None = None,
) -> str:
    """Store an image of gzip layers ``tars`` as ``name``; return ``name``."""
    import gzip

    store = Store(store_root)
    blobs: dict[str, bytes] = {}
    descs = []
    for tar in tars:
        data = gzip.compress(tar, compresslevel=1, mtime=0)
        desc = Descriptor.of_bytes(mt.OCI_LAYER_GZIP, data)
        blobs[desc.digest] = data
        descs.append(desc)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": runtime or {},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars],
        },
        "history": [
            {"created_by": h} for h in (history or [f"step {i}" for i in range(len(tars))])
        ],
    }
    config_bytes = json.dumps(config).encode()
    config_desc = Descriptor.of_bytes(mt.OCI_CONFIG, config_bytes)
    blobs[config_desc.digest] = config_bytes
    built = manifests.build_manifest(config_desc, descs, media_type=mt.OCI_MANIFEST)
    with store.destination(reference.parse(name)) as dest:
        for desc in built.blobs:
            dest.put_blob(desc, io.BytesIO(blobs[desc.digest]))
        dest.put_manifest(RawManifest(built.raw, built.media_type), root=True)
        dest.commit()
    return name
