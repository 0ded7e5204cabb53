"""Single-blob plumbing against a registry: download, upload a file, push a directory."""

from __future__ import annotations

import os
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.errors import NotFound
from dockyard.oci import digest as digests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import CHUNK

if TYPE_CHECKING:
    from dockyard.layers import PackedLayer
    from dockyard.registry.client import RegistryClient


def download_blob(client: RegistryClient, repository: str, digest: str, output: Path) -> Descriptor:
    """Fetch blob ``digest`` into ``output``, verified; on a mismatch nothing is left."""
    size = client.stat_blob(repository, digests.validate(digest))
    if size is None:
        raise NotFound(f"blob {digest} not found in {client.host}/{repository}")
    desc = Descriptor("application/octet-stream", digest, size)
    output = output.absolute()
    fd, temp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as f, client.open_blob(repository, desc) as stream:
            while chunk := stream.read(CHUNK):
                f.write(chunk)
            stream.check()
        os.replace(temp, output)
    except BaseException:
        os.unlink(temp)
        raise
    return desc


def _file_opener(path: Path):
    def open_file() -> AbstractContextManager[BinaryIO]:
        return open(path, "rb")

    return open_file


def upload_file(
    client: RegistryClient,
    repository: str,
    path: Path,
    media_type: str = "application/octet-stream",
) -> Descriptor:
    """Upload ``path`` as a blob (skipped if the registry has it); return its descriptor."""
    digest, size = digests.of_file(str(path))
    desc = Descriptor(media_type, digest, size)
    if not client.has_blob(repository, digest):
        client.upload_blob(repository, desc, _file_opener(path))
    return desc


def push_directory(
    client: RegistryClient, repository: str, directory: Path, compression: str | None = "gzip"
) -> PackedLayer:
    """Pack ``directory`` as a layer (one pass: tar, compress, digest) and upload it.

    Deletions travel as whiteouts in either form the directory may hold them: an
    overlayfs upper dir's (0/0 character devices, ``overlay.opaque`` directories) or
    OCI's own ``.wh.*`` files, packed as written."""
    from dockyard.layers import pack

    with tempfile.TemporaryDirectory(prefix="dockyard-layer-") as tmp:
        blob_path = Path(tmp) / "layer"
        with open(blob_path, "wb") as out:
            packed = pack(
                directory, out, compression=compression, overlay=True, whiteout_names=True
            )
        if not client.has_blob(repository, packed.digest):
            client.upload_blob(repository, packed.descriptor(), _file_opener(blob_path))
    return packed
