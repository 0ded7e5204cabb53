"""Manifests, tags, referrers and upstream notes of every repository.

Written once for both storage backends: the filesystem (:mod:`.storage`) and the object
store (:mod:`.s3storage`) keep the same layout of small objects (paths under
``--root``, keys under ``s3://BUCKET/PREFIX/``):

```
repos/<name>/_manifests/revisions/<alg>/<hex>   a manifest it holds (content: media type)
repos/<name>/_manifests/tags/<tag>         a tag (content: the manifest digest)
repos/<name>/_referrers/<alg>-<subject hex>/<alg>-<hex>   referrer descriptors (JSON)
repos/<name>/_upstream                     what a cached repository mirrors
```

:class:`ManifestStore` holds every rule about them (order of writes, what is served as
a manifest, which tags and referrers a delete takes along); a backend supplies only the
few object operations it declares abstract, so the two cannot drift apart. Each object
is written whole (temp + rename, or one PUT): a reader sees an old or a new one. The
manifest bytes are a blob like any other, written before the revision that names them,
which is written before referrers and tags: no tag ever names a manifest that is not
there. Names, tags and digests are validated (``names``) before they become keys.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DigestError, ManifestError, StoreError
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor
from dockyard.registry.server import names
from dockyard.registry.server.manifest_checks import ACCEPTED, MAX_MANIFEST_SIZE

REPOS = "repos"
UPLOADS = "uploads"
LAYERS = "_layers"
MANIFESTS = "_manifests"
REFERRERS = "_referrers"
UPSTREAM_FILE = "_upstream"
SMALL = 64 << 10  # links, tags, revisions, upstream notes


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as stored: its bytes, media type and digest."""

    data: bytes
    media_type: str
    digest: str


def split_digest(digest: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a valid digest; DigestError for anything else."""
    if not names.valid_digest(digest):
        raise DigestError(f"invalid digest {digest!r}")
    algorithm, hex_part = digest.split(":", 1)
    return algorithm, hex_part


def repo_key(name: str) -> str:
    """``repos/<name>/`` for a valid repository name."""
    if not names.valid_name(name):
        raise StoreError(f"invalid repository name {name!r}")
    return f"{REPOS}/{name}/"


class ManifestStore(abc.ABC):
    """The manifest, tag, referrer and upstream-note part of a registry backend."""

    # -- what a backend supplies (keys are relative: ``repos/<name>/...``) ---------------

    @abc.abstractmethod
    def _get_small(self, key: str, limit: int = SMALL) -> bytes | None:
        """A small object's bytes; None if it is missing or over ``limit`` bytes."""

    @abc.abstractmethod
    def _put_small(self, key: str, data: bytes) -> None:
        """Write a small object whole (a reader sees the old or the new one)."""

    @abc.abstractmethod
    def _remove(self, key: str) -> bool:
        """Remove an object; False if it was not there."""

    @abc.abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def _age(self, key: str) -> float | None:
        """Seconds since the object was written; None if it is missing."""

    @abc.abstractmethod
    def _children(self, prefix: str) -> list[tuple[str, float]]:
        """``(name, modification time)`` of the objects directly under ``prefix``
        (which ends in ``/``), written ones only (no temp files)."""

    @abc.abstractmethod
    def _digests_under(self, prefix: str) -> list[str]:
        """The digests named by ``<prefix><alg>/<hex>`` objects."""

    @abc.abstractmethod
    def _manifest_bytes(self, digest: str) -> bytes | None:
        """The blob ``digest`` if it is at most a manifest's size and verifies."""

    @abc.abstractmethod
    def _write_manifest_blob(self, data: bytes, digest: str | None) -> str:
        """Store a manifest's bytes as a blob (checked against ``digest`` if given,
        sha256 otherwise); return the digest."""

    @abc.abstractmethod
    def _has_blob_body(self, digest: str) -> bool:
        """The blob itself is stored (whichever repositories link it)."""

    @abc.abstractmethod
    def touch_blob(self, digest: str) -> None: ...

    @abc.abstractmethod
    def touch_tag(self, name: str, tag: str) -> None: ...

    # -- keys ------------------------------------------------------------------------------

    def _revision(self, name: str, digest: str) -> str:
        algorithm, hex_part = split_digest(digest)
        return f"{repo_key(name)}{MANIFESTS}/revisions/{algorithm}/{hex_part}"

    def _tag(self, name: str, tag: str) -> str:
        if not names.valid_tag(tag):
            raise StoreError(f"invalid tag {tag!r}")
        return f"{repo_key(name)}{MANIFESTS}/tags/{tag}"

    def _referrer_dir(self, name: str, subject: str) -> str:
        algorithm, hex_part = split_digest(subject)
        return f"{repo_key(name)}{REFERRERS}/{algorithm}-{hex_part}/"

    def _referrer(self, name: str, subject: str, digest: str) -> str:
        algorithm, hex_part = split_digest(digest)
        return f"{self._referrer_dir(name, subject)}{algorithm}-{hex_part}"

    def _text(self, key: str) -> str | None:
        raw = self._get_small(key)
        return None if raw is None else raw.decode(errors="replace").strip()

    # -- manifests ---------------------------------------------------------------------------

    def manifest_media_type(self, name: str, digest: str) -> str | None:
        """The media type of a manifest the repository holds; None if it holds none."""
        media_type = self._text(self._revision(name, digest))
        if media_type is None or not self._has_blob_body(digest):
            return None
        return media_type or "application/octet-stream"

    def has_manifest(self, name: str, digest: str) -> bool:
        return self.manifest_media_type(name, digest) is not None

    def get_manifest(self, name: str, reference: str) -> StoredManifest | None:
        """A manifest by tag or digest, verified against its digest; None if unknown.

        Only what was stored as a manifest (an accepted manifest media type) and is no
        bigger than a manifest may be is read: nothing else is served as one.
        """
        digest = reference if names.is_digest_like(reference) else self.resolve_tag(name, reference)
        if digest is None:
            return None
        media_type = self.manifest_media_type(name, digest)
        if media_type not in ACCEPTED:
            return None
        data = self._manifest_bytes(digest)
        return None if data is None else StoredManifest(data, media_type, digest)

    def put_manifest(
        self,
        name: str,
        data: bytes,
        media_type: str,
        tags: tuple[str, ...] = (),
        *,
        subject: Descriptor | None = None,
        artifact_type: str | None = None,
        annotations: dict[str, str] | None = None,
        digest: str | None = None,
    ) -> str:
        """Store a (validated) manifest in the repository and point ``tags`` at it.

        ``digest`` is the one the client named (sha512 is kept as sha512); sha256 of the
        bytes if None. Order: the blob, then the revision, then referrers and tags.
        """
        digest = self._write_manifest_blob(data, digest)
        self.touch_blob(digest)
        revision = self._revision(name, digest)
        if self._text(revision) != media_type:
            self._put_small(revision, media_type.encode())
        if subject is not None:
            entry = Descriptor(
                media_type, digest, len(data), annotations or {}, artifact_type=artifact_type
            )
            self._put_small(
                self._referrer(name, subject.digest, digest), manifests.dumps(entry.to_dict())
            )
        for tag in tags:
            self.set_tag(name, tag, digest)
        return digest

    def revisions(self, name: str) -> list[str]:
        return self._digests_under(f"{repo_key(name)}{MANIFESTS}/revisions/")

    def delete_manifest(self, name: str, digest: str) -> bool:
        """Remove a manifest from the repository with its tags and referrer entry."""
        revision = self._revision(name, digest)
        if not self._exists(revision):
            return False
        for tag in self.tags_of(name, digest):
            self.delete_tag(name, tag)
        data = self._manifest_bytes(digest)
        try:
            subject = getattr(manifests.parse(data), "subject", None) if data else None
        except ManifestError:
            subject = None
        if subject is not None:
            self._remove(self._referrer(name, subject.digest, digest))
        self._remove(revision)
        return True

    # -- tags ----------------------------------------------------------------------------------

    def resolve_tag(self, name: str, tag: str) -> str | None:
        digest = self._text(self._tag(name, tag))
        return digest if digest and names.valid_digest(digest) else None

    def tag_age(self, name: str, tag: str) -> float | None:
        """Seconds since a tag was written or last confirmed (:meth:`touch_tag`)."""
        return self._age(self._tag(name, tag))

    def set_tag(self, name: str, tag: str, digest: str) -> None:
        self._put_small(self._tag(name, tag), digest.encode())

    def delete_tag(self, name: str, tag: str) -> bool:
        return self._remove(self._tag(name, tag))

    def tags(self, name: str) -> list[str]:
        """The repository's tags, sorted."""
        children = self._children(f"{repo_key(name)}{MANIFESTS}/tags/")
        return sorted(t for t, _ in children if names.valid_tag(t))

    def tags_of(self, name: str, digest: str) -> list[str]:
        """The tags that name ``digest``."""
        return [t for t in self.tags(name) if self.resolve_tag(name, t) == digest]

    # -- referrers ---------------------------------------------------------------------------

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``subject``, oldest first."""
        directory = self._referrer_dir(name, subject)
        out = []
        for entry, _ in sorted(self._children(directory), key=lambda e: (e[1], e[0])):
            raw = self._get_small(directory + entry, MAX_MANIFEST_SIZE)
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                continue
            if isinstance(doc, dict) and self.has_manifest(name, str(doc.get("digest", ""))):
                out.append(doc)
        return out

    # -- the pull-through cache's note of what a repository mirrors ----------------------

    def upstream_name(self, name: str) -> str | None:
        return self._text(repo_key(name) + UPSTREAM_FILE) or None

    def set_upstream_name(self, name: str, upstream: str) -> None:
        """Note what ``name`` mirrors, once (the first note stays)."""
        key = repo_key(name) + UPSTREAM_FILE
        if not self._exists(key):
            self._put_small(key, upstream.encode())


def iter_manifest_blobs(raw: bytes, media_type: str | None = None) -> Iterator[str]:
    """Digests a manifest refers to: config and layers, or an index's children."""
    parsed = manifests.parse(raw, media_type)
    if isinstance(parsed, manifests.Index):
        for d in parsed.manifests:
            yield d.digest
    else:
        for d in parsed.blobs:
            yield d.digest


def referrer_info(raw: bytes) -> dict[str, Any]:
    """Keyword arguments of :meth:`ManifestStore.put_manifest` for a manifest's bytes.

    They are ``subject``/``artifact_type``/``annotations`` (empty without a subject).
    """
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("subject"), dict):
            return {}
        subject = Descriptor.from_dict(doc["subject"], "subject")
    except (ValueError, UnicodeDecodeError, ManifestError):
        return {}
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    artifact_type = doc.get("artifactType") or (config or {}).get("mediaType")
    annotations = doc.get("annotations") if isinstance(doc.get("annotations"), dict) else None
    return {
        "subject": subject,
        "artifact_type": artifact_type if isinstance(artifact_type, str) else None,
        "annotations": annotations,
    }
