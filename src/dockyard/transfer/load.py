"""``dockyard load``: every image of an archive or OCI layout directory into the store.

The archive is a docker-archive or an oci-archive.

Names follow what docker and podman do: a docker-archive's RepoTags, an oci-archive's
``org.opencontainers.image.ref.name`` when it is a full reference. An image with no
usable name is stored as ``localhost/<archive name>``, by tag if it has one, else by
digest.
"""

from __future__ import annotations

import re
from pathlib import Path

from dockyard import reference
from dockyard.errors import InvalidReference, StoreError
from dockyard.oci import manifest as manifests
from dockyard.oci.home import ImageSource
from dockyard.reference import Reference
from dockyard.store import Store
from dockyard.transfer.copy import copy_image


def _fallback_repository(archive: Path) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", archive.name.lower().removesuffix(".tar")).strip("-")
    return stem or "image"


def _name(text: str | None, archive: Path, source: ImageSource) -> Reference:
    if text:
        try:
            ref = reference.parse(text)
            if "/" in text or ":" in text:
                return ref
        except InvalidReference:
            pass
    repository = _fallback_repository(archive)
    if text and re.fullmatch(r"[\w][\w.-]{0,127}", text):
        return Reference("localhost", repository, text)
    root = source.root_manifest()
    return Reference("localhost", repository, digest=manifests.parse(root.data).digest)


def load_archive(archive: Path, store: Store) -> list[tuple[Reference, str]]:
    """Copy every image in ``archive`` into ``store``; return (name, digest) pairs.

    ``archive`` is a file, or a layout directory.
    """
    from dockyard.files.tarreader import TarReader

    if archive.is_dir():
        return _load_layout(archive, store)
    with TarReader(archive) as tar:
        is_docker = tar.has("manifest.json")
        is_oci = tar.has("oci-layout")
    if is_docker:
        return _load_docker(archive, store)
    if is_oci:
        return _load_oci(archive, store)
    raise StoreError(f"{archive}: neither a docker-archive (manifest.json) nor an oci-archive")


def _load_docker(archive: Path, store: Store) -> list[tuple[Reference, str]]:
    from dockyard.layout.docker_archive import DockerArchiveSource, list_images

    loaded = []
    for number, image in enumerate(list_images(archive)):
        source = DockerArchiveSource(archive, f"@{number}")
        try:
            names = [_name(tag, archive, source) for tag in image.repo_tags] or [
                _name(None, archive, source)
            ]
            result = copy_image(source, store.destination(names[0]))
            desc = store.resolve(names[0])
            for name in names[1:]:
                store.tag(name, desc)
        finally:
            source.close()
        loaded += [(name, result.digest) for name in names]
    return loaded


def _load_oci(archive: Path, store: Store) -> list[tuple[Reference, str]]:
    from dockyard.files.tarreader import TarReader
    from dockyard.layout.oci_archive import OCIArchiveSource
    from dockyard.layout.oci_dir import parse_index, ref_name

    with TarReader(archive) as tar, tar.open("index.json") as f:
        index = parse_index(f.read(), f"{archive}: index.json")
    loaded = []
    for entry in index.manifests:
        tag = ref_name(entry)
        source = OCIArchiveSource(archive, tag)
        try:
            name = _name(tag, archive, source)
            result = copy_image(source, store.destination(name), all_platforms=True)
        finally:
            source.close()
        loaded.append((name, result.digest))
    return loaded


def _load_layout(directory: Path, store: Store) -> list[tuple[Reference, str]]:
    from dockyard.layout.oci_dir import LayoutSource, OCILayout, ref_name

    layout = OCILayout(directory)
    layout.check()
    loaded = []
    for entry in layout.index().manifests:
        tag = ref_name(entry)
        source = LayoutSource(directory, tag)
        name = _name(tag, directory, source)
        result = copy_image(source, store.destination(name), all_platforms=True)
        loaded.append((name, result.digest))
    return loaded
