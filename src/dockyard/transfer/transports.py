"""skopeo-style transport names, parsed and opened as image homes.

The names: ``docker://REF``, ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``,
``docker-archive:FILE[:REF]`` and ``local:REF`` (the dockyard store).

A :data:`Location` is one of five dataclasses, one per transport kind, each opening its
own home (:meth:`source`, :meth:`destination`): code that needs a kind matches on the
class, nothing compares transport strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from dockyard import reference
from dockyard.errors import InvalidReference

if TYPE_CHECKING:
    from collections.abc import Callable

    from dockyard.oci.home import ImageDestination, ImageSource

    # A file kind's home classes, each opened on the path and the image's name in it.
    _Homes = tuple[
        Callable[[Path, str | None], ImageSource], Callable[[Path, str | None], ImageDestination]
    ]


@dataclass(frozen=True)
class RegistryLocation:
    """``docker://REF``: a repository of a registry."""

    transport: ClassVar[str] = "docker"
    ref: reference.Reference

    def __str__(self) -> str:
        return f"docker://{self.ref}"

    def source(self, *, store_root: Path | None, tls_verify: bool | None = None) -> ImageSource:
        """Read through the registry's mirrors, if it has any that serve the pull."""
        from dockyard.registry.client.mirrors import registry_source

        return registry_source(self.ref, tls_verify)

    def destination(
        self,
        *,
        store_root: Path | None,
        tls_verify: bool | None = None,
        source: Location | None = None,
    ) -> ImageDestination:
        """Write to the registry.

        Blobs are mounted from ``source`` when it is a repository of the same registry.
        """
        from dockyard.registry.client import RegistryDestination, client_for

        match source:
            case RegistryLocation(ref=ref) | StoreLocation(ref=ref) if (
                ref.registry == self.ref.registry
            ):
                mount_from: str | None = ref.repository
            case _:
                mount_from = None
        client = client_for(self.ref, tls_verify=tls_verify)
        return RegistryDestination(client, self.ref, mount_from)


@dataclass(frozen=True)
class StoreLocation:
    """``local:REF`` (or a bare ``REF``): an image of the dockyard store."""

    transport: ClassVar[str] = "local"
    ref: reference.Reference

    def __str__(self) -> str:
        return f"local:{self.ref}"

    def source(self, *, store_root: Path | None, tls_verify: bool | None = None) -> ImageSource:
        from dockyard.store import Store

        return Store(store_root).source(self.ref)

    def destination(
        self,
        *,
        store_root: Path | None,
        tls_verify: bool | None = None,
        source: Location | None = None,
    ) -> ImageDestination:
        from dockyard.store import Store

        return Store(store_root).destination(self.ref)


@dataclass(frozen=True)
class _FileLocation:
    """A home in a file or directory, with an optional name for the image in it.

    Each kind names the classes of its home (:meth:`_homes`, imported when opened).
    """

    transport: ClassVar[str]
    path: Path
    name: str | None = None  # a tag (oci, oci-archive) or a reference (docker-archive)

    def __str__(self) -> str:
        return f"{self.transport}:{self.path}" + (f":{self.name}" if self.name else "")

    def _homes(self) -> _Homes:
        """This kind's (source class, destination class)."""
        raise NotImplementedError

    def source(self, *, store_root: Path | None, tls_verify: bool | None = None) -> ImageSource:
        return self._homes()[0](self.path, self.name)

    def destination(
        self,
        *,
        store_root: Path | None,
        tls_verify: bool | None = None,
        source: Location | None = None,
    ) -> ImageDestination:
        return self._homes()[1](self.path, self.name)


@dataclass(frozen=True)
class LayoutLocation(_FileLocation):
    """``oci:DIR[:TAG]``: an OCI image layout directory."""

    transport: ClassVar[str] = "oci"

    def _homes(self) -> _Homes:
        from dockyard.layout.oci_dir import LayoutDestination, LayoutSource

        return LayoutSource, LayoutDestination


@dataclass(frozen=True)
class OCIArchiveLocation(_FileLocation):
    """``oci-archive:FILE[:TAG]``: an OCI layout in a tar file."""

    transport: ClassVar[str] = "oci-archive"

    def _homes(self) -> _Homes:
        from dockyard.layout.oci_archive import OCIArchiveDestination, OCIArchiveSource

        return OCIArchiveSource, OCIArchiveDestination


@dataclass(frozen=True)
class DockerArchiveLocation(_FileLocation):
    """``docker-archive:FILE[:REF]``: a ``docker save`` tarball (``@N``: its Nth image)."""

    transport: ClassVar[str] = "docker-archive"

    def _homes(self) -> _Homes:
        from dockyard.layout.docker_archive import DockerArchiveDestination, DockerArchiveSource

        return DockerArchiveSource, DockerArchiveDestination


Location = (
    RegistryLocation | StoreLocation | LayoutLocation | OCIArchiveLocation | DockerArchiveLocation
)
FILE_KINDS: dict[str, type[LayoutLocation | OCIArchiveLocation | DockerArchiveLocation]] = {
    kind.transport: kind for kind in (LayoutLocation, OCIArchiveLocation, DockerArchiveLocation)
}
TRANSPORTS = ("docker", *FILE_KINDS, "local")


def parse_location(text: str) -> Location:
    """Parse a transport string; a bare reference means the local store."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        return StoreLocation(reference.parse(text))
    if transport == "docker":
        if not rest.startswith("//"):
            raise InvalidReference(f"invalid location {text!r}: expected docker://REFERENCE")
        return RegistryLocation(reference.parse(rest[2:]))
    if transport == "local":
        return StoreLocation(reference.parse(rest))
    if not rest:
        raise InvalidReference(f"invalid location {text!r}: missing path")
    path, _, name = rest.partition(":")
    if transport == "docker-archive" and name and not name.startswith("@"):
        reference.parse(name)  # validate early: a RepoTag (or @N, the Nth image)
    return FILE_KINDS[transport](Path(path), name or None)


def as_location(where: str | Location) -> Location:
    """``where`` parsed if it is a transport string."""
    return parse_location(where) if isinstance(where, str) else where


def open_source(
    location: str | Location, *, store_root: Path | None = None, tls_verify: bool | None = None
) -> ImageSource:
    """Open the image ``location`` names for reading (a registry's through its mirrors)."""
    return as_location(location).source(store_root=store_root, tls_verify=tls_verify)


def open_destination(
    location: str | Location,
    *,
    store_root: Path | None = None,
    tls_verify: bool | None = None,
    source: str | Location | None = None,
) -> ImageDestination:
    """Open ``location`` for writing one image.

    A registry destination mounts blobs from ``source`` when both are repositories of the
    same registry.
    """
    return as_location(location).destination(
        store_root=store_root,
        tls_verify=tls_verify,
        source=None if source is None else as_location(source),
    )
