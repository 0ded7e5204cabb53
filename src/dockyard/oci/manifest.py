"""Manifests and indexes, parsed from the exact bytes a registry or layout holds.

The raw bytes are kept: a manifest's digest is the digest of its bytes, so we never
re-serialise a document we did not create.
"""

from __future__ import annotations

import json
from typing import Any

from dockyard.errors import ManifestError
from dockyard.frozen import Frozen
from dockyard.oci import digest as digests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Descriptor, Platform


class Manifest(Frozen):
    """A single-platform image manifest (OCI or Docker schema 2)."""

    __slots__ = ("annotations", "config", "layers", "media_type", "raw", "subject")
    raw: bytes
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]
    subject: Descriptor | None

    def __init__(
        self,
        raw: bytes,
        media_type: str,
        config: Descriptor,
        layers: tuple[Descriptor, ...],
        annotations: dict[str, str],
        subject: Descriptor | None = None,
    ) -> None:
        self._set(
            raw=raw,
            media_type=media_type,
            config=config,
            layers=layers,
            annotations=annotations,
            subject=subject,
        )

    @property
    def digest(self) -> str:
        return digests.of_bytes(self.raw)

    def descriptor(self, **kw: Any) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), **kw)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config first, then layers: the order to copy them in."""
        return (self.config, *self.layers)


class Index(Frozen):
    """An OCI image index or a Docker manifest list."""

    __slots__ = ("annotations", "manifests", "media_type", "raw")
    raw: bytes
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str]

    def __init__(
        self,
        raw: bytes,
        media_type: str,
        manifests: tuple[Descriptor, ...],
        annotations: dict[str, str],
    ) -> None:
        self._set(raw=raw, media_type=media_type, manifests=manifests, annotations=annotations)

    @property
    def digest(self) -> str:
        return digests.of_bytes(self.raw)

    def descriptor(self, **kw: Any) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), **kw)

    def select(self, wanted: Platform) -> Descriptor:
        """The entry for ``wanted``; raise naming the platforms on offer if none fits."""
        for entry in self.manifests:
            if entry.platform and wanted.matches(entry.platform):
                return entry
        offered = ", ".join(str(e.platform) for e in self.manifests if e.platform) or "none"
        raise ManifestError(f"no image for platform {wanted} in index (has: {offered})")


def _load_json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{where}: invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    return doc


def detect_media_type(raw: bytes, hint: str | None = None, where: str = "manifest") -> str:
    """The document's media type: its own ``mediaType`` field, else the hint, else by shape."""
    doc = _load_json(raw, where)
    media_type = doc.get("mediaType") or hint
    if not media_type or media_type not in mt.ALL_MANIFESTS:
        if not media_type and "manifests" in doc:
            return mt.OCI_INDEX
        if not media_type and "config" in doc and "layers" in doc:
            return mt.OCI_MANIFEST
        if doc.get("schemaVersion") == 1:
            raise ManifestError(f"{where}: Docker schema 1 manifests are not supported")
        raise ManifestError(f"{where}: unknown manifest media type {media_type!r}")
    return media_type


def parse(raw: bytes, hint: str | None = None, where: str = "manifest") -> Manifest | Index:
    """Parse and validate a manifest or index; raise :class:`ManifestError` naming ``where``."""
    media_type = detect_media_type(raw, hint, where)
    doc = _load_json(raw, where)
    if doc.get("schemaVersion") != 2:
        raise ManifestError(f"{where}: schemaVersion must be 2")
    annotations = dict(doc.get("annotations") or {})
    if media_type in mt.INDEXES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{where}: 'manifests' must be a list")
        return Index(
            raw,
            media_type,
            tuple(
                Descriptor.from_dict(d, f"{where}: manifests[{i}]") for i, d in enumerate(entries)
            ),
            annotations,
        )
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{where}: 'layers' must be a list")
    subject = doc.get("subject")
    return Manifest(
        raw,
        media_type,
        Descriptor.from_dict(doc.get("config"), f"{where}: config"),
        tuple(Descriptor.from_dict(d, f"{where}: layers[{i}]") for i, d in enumerate(layers)),
        annotations,
        Descriptor.from_dict(subject, f"{where}: subject") if subject else None,
    )


def dumps(doc: dict[str, Any]) -> bytes:
    """Serialise a document we create: compact, stable key order as written."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def build_manifest(
    config: Descriptor,
    layers: list[Descriptor],
    *,
    media_type: str = mt.OCI_MANIFEST,
    annotations: dict[str, str] | None = None,
) -> Manifest:
    """Create a new image manifest document for the given config and layers."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
    }
    if annotations:
        doc["annotations"] = annotations
    result = parse(dumps(doc))
    assert isinstance(result, Manifest)
    return result


def build_index(manifests: list[Descriptor], *, media_type: str = mt.OCI_INDEX) -> Index:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [m.to_dict() for m in manifests],
    }
    result = parse(dumps(doc))
    assert isinstance(result, Index)
    return result


def parse_config(raw: bytes, where: str = "image config") -> dict[str, Any]:
    """Parse an image config; check the fields every consumer relies on."""
    doc = _load_json(raw, where)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise ManifestError(f"{where}: missing rootfs.diff_ids")
    for d in rootfs["diff_ids"]:
        try:
            digests.validate(d)
        except Exception:
            raise ManifestError(f"{where}: bad diff_id {d!r}") from None
    return doc
