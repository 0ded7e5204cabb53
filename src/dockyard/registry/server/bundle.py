"""Offline bundles: every stored or cached image as one OCI archive, and back.

``export`` names each tagged image by its upstream name (``quay.io/org/repo:tag``) in
``index.json``, adds untagged manifests as unnamed entries, and records where each image
lived in ``dockyard-registry.json`` (an extra file, ignored by other tools), so
``import`` puts everything back into the same repositories, mirrors included. An archive
or OCI layout directory from elsewhere (``dockyard save``, skopeo) is imported by its ref
names.

Images the cache holds only in part (a pulled platform of a multi-platform index, a
manifest fetched without its layers) are exported as far as they are there: an index
keeps the children that are complete; a manifest missing blobs is left out, with a note.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

from dockyard import reference
from dockyard.errors import DockyardError, InvalidReference, ManifestError, NotFound
from dockyard.files.tarreader import TarReader, parse_json
from dockyard.layout.oci_archive import OCIArchiveWriter, blob_name
from dockyard.layout.oci_dir import INDEX_FILE, MAX_MANIFEST_SIZE, REF_NAME, parse_index
from dockyard.oci import manifest as manifests
from dockyard.oci.descriptor import Descriptor
from dockyard.oci.digest import CHUNK, VerifyingReader
from dockyard.oci.home import RawManifest
from dockyard.registry.server import names
from dockyard.registry.server.backend import RegistryStorage as Storage
from dockyard.registry.server.manifeststore import referrer_info
from dockyard.runtime import inroot

META_FILE = "dockyard-registry.json"
REPOSITORY_ANNOTATION = "io.dockyard.registry.repository"


@dataclass(frozen=True)
class BundledImage:
    repository: str  # where it lives in the registry
    name: str  # as users know it: upstream name for mirrors, else the repository
    tag: str | None
    digest: str


def _matches(patterns: Iterable[str], *candidates: str) -> bool:
    patterns = list(patterns)
    return not patterns or any(fnmatch.fnmatchcase(c, p) for p in patterns for c in candidates)


def _children(storage: Storage, repo: str, digest: str) -> list[str]:
    media_type = storage.manifest_media_type(repo, digest)
    try:
        parsed = manifests.parse(storage.blobs.read_bytes(digest), media_type)
    except DockyardError:
        return []
    return [d.digest for d in parsed.manifests] if isinstance(parsed, manifests.Index) else []


def export(
    storage: Storage,
    output: Path,
    patterns: Iterable[str] = (),
    say: Callable[[str], None] | None = None,
) -> list[BundledImage]:
    """Write the matching repositories' images to the oci-archive ``output``.

    ``patterns`` are globs on the repository or upstream name; none = all.
    """
    say = say or (lambda _m: None)
    patterns = list(patterns)
    done: list[BundledImage] = []
    with OCIArchiveWriter(output) as writer, storage.gc_lock(shared=True):
        for repo in storage.repositories():
            upstream = storage.upstream_name(repo)
            external = upstream or repo
            if not _matches(patterns, repo, external):
                continue
            revisions = [d for d in storage.revisions(repo) if storage.blobs.has(d)]
            children = {c for d in revisions for c in _children(storage, repo, d)}
            roots: list[tuple[str | None, str]] = []
            tagged = set()
            for tag_name in storage.tags(repo):
                target = storage.resolve_tag(repo, tag_name)
                if target and storage.has_manifest(repo, target):
                    roots.append((tag_name, target))
                    tagged.add(target)
            roots += [(None, d) for d in sorted(revisions) if d not in tagged | children]
            for tag, digest in roots:
                image = writer.destination(f"{external}:{tag}" if tag else None)
                what = f"{external}:{tag}" if tag else f"{external}@{digest}"
                if not _export_manifest(storage, repo, digest, image, True, what, say):
                    continue
                image.commit()
                done.append(BundledImage(repo, external, tag, digest))
        if not done:
            raise DockyardError("no complete image matched: nothing to export")
        meta = {
            "version": 1,
            "images": [
                {
                    "repository": i.repository,
                    "name": i.name,
                    "upstream": storage.upstream_name(i.repository),
                    "tag": i.tag,
                    "digest": i.digest,
                }
                for i in done
            ],
        }
        writer.tar.add_bytes(META_FILE, json.dumps(meta, indent=1).encode())
        writer.commit()
    return done


def _export_manifest(storage, repo, digest, image, root, what, say) -> bool:
    media_type = storage.manifest_media_type(repo, digest) or "application/octet-stream"
    raw = storage.blobs.read_bytes(digest)
    try:
        parsed = manifests.parse(raw, media_type)
    except ManifestError:
        parsed = None  # an artifact we cannot read: the manifest alone
    if isinstance(parsed, manifests.Index):
        kept = 0
        for child in parsed.manifests:
            if not storage.has_manifest(repo, child.digest):
                say(f"{what}: platform {child.platform or child.digest} is not cached; left out")
                continue
            kept += _export_manifest(storage, repo, child.digest, image, False, what, say)
        if kept == 0:
            say(f"{what}: no platform of the index is complete; skipped")
            return False
    elif isinstance(parsed, manifests.Manifest):
        missing = [d.digest for d in parsed.blobs if not storage.blobs.has(d.digest) and not d.urls]
        if missing:
            say(f"{what}: {len(missing)} blob(s) not cached (e.g. {missing[0]}); skipped")
            return False
        for desc in parsed.blobs:
            if storage.blobs.has(desc.digest):
                size = storage.blobs.size(desc.digest)
                blob = Descriptor(desc.media_type, desc.digest, size)
                if not image.has_blob(blob):
                    with storage.blobs.open(desc.digest, size) as stream:
                        image.put_blob(blob, stream)
    image.put_manifest(RawManifest(raw, media_type), root=root)
    return True


def _local_name(ref: reference.Reference, upstream_names: dict[str, str]) -> str:
    prefix = upstream_names.get(ref.registry)
    if prefix:
        return f"{prefix}/{ref.repository}"
    return f"{ref.registry.replace(':', '-').lower()}/{ref.repository}"


class LayoutFiles:
    """The files of an OCI layout directory, read like an archive's members.

    They are read as :class:`TarReader` reads an archive's members. Each is opened from
    the directory's fd with ``openat2(RESOLVE_BENEATH)``: a symlink or ``..`` leading
    out of the directory is refused, and so is anything but a regular file. A refused
    file is absent, as a member missing from an archive is.
    """

    _ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.EINVAL)

    def __init__(self, path: Path):
        self.path = path
        try:
            self._fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise DockyardError(f"cannot open layout {path}: {e.strerror}") from None

    def _open(self, name: str) -> int | None:
        try:
            return inroot.open_regular(self._fd, name, beneath=True)
        except OSError as e:
            if e.errno in self._ABSENT:
                return None
            raise DockyardError(f"{self.path}: cannot open {name}: {e.strerror}") from None

    def has(self, name: str) -> bool:
        fd = self._open(name)
        if fd is None:
            return False
        os.close(fd)
        return True

    def open(self, name: str) -> BinaryIO:
        """A stream of the file ``name``; :class:`NotFound` if it is absent."""
        fd = self._open(name)
        if fd is None:
            raise NotFound(f"{name} not found in layout {self.path}")
        return os.fdopen(fd, "rb")

    def read_json(self, name: str, limit: int = 16 << 20) -> Any:
        """A small JSON file, parsed; raise :class:`ManifestError` naming it."""
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ManifestError(f"{self.path}: {name} is too big")
        return parse_json(self.path, name, data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LayoutFiles:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def import_archive(
    storage: Storage,
    path: Path,
    upstream_names: dict[str, str] | None = None,
    say: Callable[[str], None] | None = None,
) -> list[BundledImage]:
    """Load every image of an oci-archive or OCI layout directory into the registry.

    ``path`` is the archive or the directory. ``upstream_names`` maps a registry host to
    an upstream prefix (``{"quay.io": "quay"}``) for archives without our
    ``dockyard-registry.json``.
    """
    say = say or (lambda _m: None)
    storage.ensure()
    loaded: list[BundledImage] = []
    files: TarReader | LayoutFiles = LayoutFiles(path) if path.is_dir() else TarReader(path)
    with files as tar:
        if not tar.has(INDEX_FILE):
            kind = "an OCI layout" if isinstance(tar, LayoutFiles) else "an oci-archive"
            raise DockyardError(f"{path} is not {kind} (no {INDEX_FILE})")
        wanted: list[tuple[str, str | None, str, str | None]] = []  # repo, tag, digest, upstream
        if tar.has(META_FILE):
            meta = tar.read_json(META_FILE)
            for entry in meta.get("images", []):
                wanted.append(
                    (entry["repository"], entry.get("tag"), entry["digest"], entry.get("upstream"))
                )
        else:
            with tar.open(INDEX_FILE) as f:
                index = parse_index(f.read(), f"{path}: {INDEX_FILE}")
            for entry in index.manifests:
                name = entry.annotations.get(REF_NAME)
                if not name:
                    say(f"{path}: entry {entry.digest} has no name; skipped")
                    continue
                try:
                    ref = reference.parse(name)
                except InvalidReference:
                    say(f"{path}: entry name {name!r} is not an image reference; skipped")
                    continue
                wanted.append((_local_name(ref, upstream_names or {}), ref.tag, entry.digest, None))
        with storage.gc_lock(shared=True):
            for repo, tag, digest, upstream in wanted:
                if not names.valid_name(repo) or (tag is not None and not names.valid_tag(tag)):
                    say(f"{repo}:{tag}: not a valid repository name or tag; skipped")
                    continue
                _import_manifest(storage, tar, repo, digest, say)
                if tag:
                    storage.set_tag(repo, tag, digest)
                if upstream and storage.upstream_name(repo) is None:
                    storage.set_upstream_name(repo, upstream)
                loaded.append(BundledImage(repo, upstream or repo, tag, digest))
    return loaded


def _read_manifest(tar: TarReader | LayoutFiles, digest: str) -> bytes:
    """The manifest blob ``digest``, verified; :class:`ManifestError` past the size any
    registry accepts (a file of a layout may be anything)."""
    data = bytearray()
    with VerifyingReader(cast(BinaryIO, tar.open(blob_name(digest))), digest) as reader:
        while chunk := reader.read(CHUNK):  # the read at EOF verifies
            data += chunk
            if len(data) > MAX_MANIFEST_SIZE:
                raise ManifestError(f"manifest {digest} is over {MAX_MANIFEST_SIZE} bytes")
    return bytes(data)


def _import_manifest(
    storage: Storage, tar: TarReader | LayoutFiles, repo: str, digest: str, say
) -> None:
    raw = _read_manifest(tar, digest)
    parsed: manifests.Manifest | manifests.Index | None
    try:
        parsed = manifests.parse(raw)
        media_type = parsed.media_type
    except ManifestError:
        parsed, media_type = None, json.loads(raw).get("mediaType") or "application/octet-stream"
    if isinstance(parsed, manifests.Index):
        for child in parsed.manifests:
            if tar.has(blob_name(child.digest)):
                _import_manifest(storage, tar, repo, child.digest, say)
    elif isinstance(parsed, manifests.Manifest):
        for desc in parsed.blobs:
            member = blob_name(desc.digest)
            if not tar.has(member):
                continue
            if not storage.blobs.has(desc.digest):
                with tar.open(member) as stream:  # reads like a file: read(n)
                    storage.blobs.write(desc.digest, cast(BinaryIO, stream), desc.size)
            storage.link_blob(repo, desc.digest)
    storage.put_manifest(repo, raw, media_type, **referrer_info(raw))
