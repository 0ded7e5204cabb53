"""skopeo-style transport names: ``docker://REF``, ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``,
``docker-archive:FILE[:REF]`` and ``local:REF`` (the dockyard store), opened as image homes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard import reference
from dockyard.errors import InvalidReference

if TYPE_CHECKING:
    from dockyard.oci.home import ImageDestination, ImageSource

TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive", "local")


@dataclass(frozen=True)
class Location:
    """Where an image lives: a transport, a path or registry reference, and an optional name."""

    transport: str
    path: Path | None = None
    name: str | None = None  # tag (oci, oci-archive) or reference (docker-archive)
    ref: reference.Reference | None = None  # docker:// and local:

    def __str__(self) -> str:
        if self.ref is not None:
            return f"{self.transport}:{'//' if self.transport == 'docker' else ''}{self.ref}"
        return f"{self.transport}:{self.path}" + (f":{self.name}" if self.name else "")


def parse_location(text: str) -> Location:
    """Parse a transport string; a bare reference means the local store."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        return Location("local", ref=reference.parse(text))
    if transport == "docker":
        if not rest.startswith("//"):
            raise InvalidReference(f"invalid location {text!r}: expected docker://REFERENCE")
        return Location("docker", ref=reference.parse(rest[2:]))
    if transport == "local":
        return Location("local", ref=reference.parse(rest))
    if not rest:
        raise InvalidReference(f"invalid location {text!r}: missing path")
    path, _, name = rest.partition(":")
    if transport == "docker-archive" and name and not name.startswith("@"):
        reference.parse(name)  # validate early: a RepoTag (or @N, the Nth image)
    return Location(transport, Path(path), name or None)


def open_source(
    location: Location, *, store_root: Path | None, tls_verify: bool | None = None
) -> ImageSource:
    """Open the image ``location`` names for reading (a registry's through its mirrors)."""
    if location.transport == "docker":
        from dockyard.registry.client.mirrors import registry_source

        return registry_source(location.ref, tls_verify)
    if location.transport == "local":
        from dockyard.store import Store

        return Store(store_root).source(location.ref)
    if location.transport == "oci":
        from dockyard.layout.oci_dir import LayoutSource

        return LayoutSource(location.path, location.name)
    if location.transport == "oci-archive":
        from dockyard.layout.oci_archive import OCIArchiveSource

        return OCIArchiveSource(location.path, location.name)
    from dockyard.layout.docker_archive import DockerArchiveSource

    return DockerArchiveSource(location.path, location.name)


def open_destination(
    location: Location,
    *,
    store_root: Path | None,
    tls_verify: bool | None = None,
    source: Location | None = None,
) -> ImageDestination:
    """Open ``location`` for writing one image. A registry destination mounts blobs from
    ``source`` when both are repositories of the same registry."""
    if location.transport == "docker":
        from dockyard.registry.client import RegistryDestination, client_for

        same_registry = (
            source is not None
            and source.ref is not None
            and source.ref.registry == location.ref.registry
        )
        mount_from = source.ref.repository if same_registry else None
        client = client_for(location.ref, tls_verify=tls_verify)
        return RegistryDestination(client, location.ref, mount_from)
    if location.transport == "local":
        from dockyard.store import Store

        return Store(store_root).destination(location.ref)
    if location.transport == "oci":
        from dockyard.layout.oci_dir import LayoutDestination

        return LayoutDestination(location.path, location.name)
    if location.transport == "oci-archive":
        from dockyard.layout.oci_archive import OCIArchiveDestination

        return OCIArchiveDestination(location.path, location.name)
    from dockyard.layout.docker_archive import DockerArchiveDestination

    return DockerArchiveDestination(location.path, location.name)
