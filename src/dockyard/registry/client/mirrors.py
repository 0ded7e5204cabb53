"""Pulling through mirrors.

An image is read from the first of a registry's mirrors that serves it, else from the registry
itself (containers-registries.conf semantics).

:func:`registry_source` is what every pull opens (``pull``, ``build``'s ``FROM``,
``run``, pipelines, ``copy docker://``). The mirrors of the reference's registry
(:func:`.config.mirrors_for`) that serve this kind of pull (by digest or by tag) are
tried in order for the root manifest; any failure there (down, no such image, refused
credentials, bad content) moves on to the next, and last to the registry itself. Blobs
and child manifests come from the endpoint that gave the root manifest, falling back to
the others in the same order: they are verified by digest wherever they come from.

A mirror's credentials are the ones for the mirror's own host (the host's logins, or a
pipeline's :class:`~.factory.CredentialScope`), never the source registry's. Pushes
never use mirrors: they open the registry's own client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from dockyard.errors import DockyardError
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import VerifyingReader
from dockyard.reference import Reference
from dockyard.registry.client.client import RegistryClient, RegistryManifest
from dockyard.registry.client.config import Mirror, mirrors_for
from dockyard.registry.client.factory import client_for
from dockyard.registry.client.homes import RegistrySource

log = logging.getLogger("dockyard.registry")


@dataclass(frozen=True)
class Endpoint:
    """A registry serving ``repository`` for a pull: a mirror or the source itself."""

    client: RegistryClient
    repository: str

    def __str__(self) -> str:
        return f"{self.client.host}/{self.repository}"


def registry_source(ref: Reference, tls_verify: bool | None = None):
    """The image source a pull of ``ref`` reads.

    Through its registry's mirrors when it has any that serve this pull, else straight from the
    registry. ``tls_verify`` is the source registry's; each mirror has its own."""
    source = RegistrySource(client_for(ref, tls_verify=tls_verify), ref)
    mirrors = [m for m in mirrors_for(ref.registry) if m.serves(by_digest=ref.digest is not None)]
    if not mirrors:
        return source
    endpoints = [_endpoint(m, ref) for m in mirrors]
    return MirroredSource(ref, [*endpoints, Endpoint(source.client, ref.repository)])


def _endpoint(mirror: Mirror, ref: Reference) -> Endpoint:
    repository = f"{mirror.namespace}/{ref.repository}" if mirror.namespace else ref.repository
    return Endpoint(client_for(mirror.host, mirror.tls_verify, mirror=True), repository)


class MirroredSource:
    """The image ``ref`` names, from the first of ``endpoints`` that serves its root manifest.

    The last endpoint is the source registry."""

    def __init__(self, ref: Reference, endpoints: list[Endpoint]):
        self.ref = ref
        self.endpoints = endpoints
        self._order = list(endpoints)  # the endpoint that served the root goes first

    @property
    def client(self) -> RegistryClient:
        """The client of the endpoint in use (the first one before the root is fetched)."""
        return self._order[0].client

    def root_manifest(self) -> RegistryManifest:
        failures: list[str] = []
        for number, endpoint in enumerate(self.endpoints):
            try:
                raw = endpoint.client.get_manifest(endpoint.repository, self.ref.identifier)
            except DockyardError as e:
                if number == len(self.endpoints) - 1:
                    if failures:
                        raise type(e)(f"{e} (mirrors failed too: {'; '.join(failures)})") from e
                    raise
                failures.append(str(e))
                log.info("mirror %s: %s; trying the next", endpoint, e)
                continue
            if number < len(self.endpoints) - 1:
                log.info("%s: pulling from mirror %s", self.ref, endpoint)
            self._order = [endpoint, *(e for e in self.endpoints if e is not endpoint)]
            return raw
        raise AssertionError("unreachable: the source registry is always an endpoint")

    def manifest(self, digest: str) -> RegistryManifest:
        for number, endpoint in enumerate(self._order):
            try:
                return endpoint.client.get_manifest(endpoint.repository, digest)
            except DockyardError:
                if number == len(self._order) - 1:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[VerifyingReader]:
        for number, endpoint in enumerate(self._order):
            stack = ExitStack()
            try:
                reader = stack.enter_context(endpoint.client.open_blob(endpoint.repository, desc))
            except DockyardError:
                if number == len(self._order) - 1:
                    raise
                continue
            with stack:
                yield reader
            return
