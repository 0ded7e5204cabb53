"""What the registry accepts as a manifest, pushed by a client or sent by an upstream.

A manifest is at most :data:`MAX_MANIFEST_SIZE` bytes (distribution's limit), enforced
while the body is read (:mod:`.limits`); JSON nested at most :data:`MAX_JSON_DEPTH` deep, checked
without recursion before any parser sees it (Python's ``json`` recurses: 100,000 open
brackets would end in ``RecursionError``); one of the media types in :data:`ACCEPTED`
(OCI manifest and index, Docker schema 2 manifest and manifest list; schema 1 is not
supported), named by the ``Content-Type`` and, when the document has one, by its own
``mediaType`` as well; and every descriptor's ``size`` is the size of the blob or child
manifest the registry holds under its digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.errors import ManifestError
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.registry.server.apierrors import APIError

if TYPE_CHECKING:
    from starlette.requests import Request

    from dockyard.oci.descriptor import Descriptor
    from dockyard.registry.server.backend import RegistryStorage

MAX_MANIFEST_SIZE = 4 << 20
MAX_JSON_DEPTH = 64
ACCEPTED = mt.ALL_MANIFESTS

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass(frozen=True)
class Checked:
    """A manifest that passed :func:`check`: its document, parsed form and media type."""

    doc: dict[str, Any]
    parsed: manifests.Manifest | manifests.Index
    media_type: str


def check_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`ManifestError` if JSON ``raw`` nests deeper than ``limit``.

    Strings are cut out, then the innermost ``[]``/``{}`` pairs are removed once per
    level: a well-formed document is empty after as many rounds as it is deep.
    """
    skeleton = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not skeleton:
            return
        skeleton = skeleton.replace(b"[]", b"").replace(b"{}", b"")
    if skeleton:
        raise ManifestError(f"JSON nested deeper than {limit} levels (or unbalanced)")


def check(raw: bytes, content_type: str | None) -> Checked:
    """Validate a manifest's bytes against the media type it came with.

    ``content_type`` None (no header) takes the document's own ``mediaType``; any other
    value must be an accepted manifest type and agree with the document.
    """
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(f"manifest is {len(raw)} bytes, over {MAX_MANIFEST_SIZE}")
    check_depth(raw)
    if content_type is not None and content_type not in ACCEPTED:
        raise ManifestError(f"Content-Type {content_type!r} is not a manifest media type")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"manifest is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and declared not in ACCEPTED:
        raise ManifestError(f"mediaType {declared!r} is not a manifest media type")
    if declared is not None and content_type is not None and declared != content_type:
        raise ManifestError(
            f"Content-Type {content_type} does not match the manifest's mediaType {declared}"
        )
    media_type = content_type or declared
    if media_type is None:
        raise ManifestError("no Content-Type and no mediaType: the manifest's type is unknown")
    return Checked(doc, manifests.parse(raw, media_type, "manifest"), media_type)


def content_type_of(request: Request) -> str | None:
    """The request's media type without parameters; None without the header."""
    header = request.headers.get("content-type")
    if header is None:
        return None
    return header.split(";", 1)[0].strip().lower()


def _size_error(desc: Descriptor, actual: int) -> APIError:
    return APIError(
        "MANIFEST_INVALID",
        f"descriptor of {desc.digest} says {desc.size} bytes, the registry holds {actual}",
        detail={"digest": desc.digest, "size": desc.size, "actual": actual},
    )


def check_blob_size(storage: RegistryStorage, desc: Descriptor) -> None:
    """A config or layer descriptor's size must be the stored blob's (if it is stored)."""
    size = storage.blob_size(desc.digest)
    if size is not None and size != desc.size:
        raise _size_error(desc, size)
