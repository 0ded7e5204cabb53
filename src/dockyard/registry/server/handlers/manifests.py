"""``/v2/<name>/manifests/<reference>``: ``GET``/``HEAD``, ``PUT`` and ``DELETE``.

``GET``/``HEAD`` negotiate by ``Accept``, through the pull-through cache for a mirrored
repository. ``PUT`` is checked by :mod:`..manifest_checks`: every blob it names must be
linked in this repository; digests of any algorithm are kept as given.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from dockyard.errors import ManifestError
from dockyard.oci import manifest as manifests
from dockyard.oci import mediatypes as mt
from dockyard.oci.descriptor import Platform
from dockyard.registry.server import manifest_checks, names
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.handlers.common import API_VERSION, READ_METHODS, not_allowed
from dockyard.registry.server.manifeststore import StoredManifest, referrer_info
from dockyard.registry.server.mirror import STALE_HEADERS, Route

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp


async def handle(
    app: RegistryApp, request: Request, name: str, reference: str, route: Route | None
) -> Response:
    method = request.method
    if names.is_digest_like(reference):
        if not names.valid_digest(reference):
            raise APIError("DIGEST_INVALID", detail={"digest": reference})
    elif not names.valid_tag(reference):
        # the spec's codes: no such manifest can exist (404), and one cannot be put
        # there (400 MANIFEST_INVALID); TAG_INVALID is a Docker schema1 code
        if method == "PUT":
            raise APIError(
                "MANIFEST_INVALID",
                f"{reference!r} is not a valid tag",
                detail={"tag": reference},
            )
        raise APIError("MANIFEST_UNKNOWN", detail={"tag": reference})
    if method in READ_METHODS:
        return await get(app, request, name, reference, route)
    if method == "PUT":
        return await put(app, request, name, reference)
    if method == "DELETE":
        return await delete(app, name, reference)
    raise not_allowed()


async def get(
    app: RegistryApp, request: Request, name: str, reference: str, route: Route | None
) -> Response:
    found, stale = await _load(app, name, reference, route)
    accepted = _accepts(request)
    if accepted and "*/*" not in accepted and found.media_type not in accepted:
        found = await _negotiate(app, found, accepted, name, route)
    headers = {
        **API_VERSION,
        "Docker-Content-Digest": found.digest,
        "ETag": f'"{found.digest}"',
    }
    if stale:
        headers.update(STALE_HEADERS)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(found.data))
        headers["Content-Type"] = found.media_type
        return Response(status_code=200, headers=headers)
    return Response(found.data, media_type=found.media_type, headers=headers)


async def put(app: RegistryApp, request: Request, name: str, reference: str) -> Response:
    raw = await request.body()  # capped by limits.BoundedReceive
    try:
        checked = manifest_checks.check(raw, manifest_checks.content_type_of(request))
    except ManifestError as e:
        raise APIError("MANIFEST_INVALID", str(e)) from None
    doc, parsed, media_type = checked.doc, checked.parsed, checked.media_type
    by_digest = names.is_digest_like(reference)
    if by_digest:
        h = hashlib.new(reference.split(":", 1)[0])
        h.update(raw)
        actual = f"{h.name}:{h.hexdigest()}"
        if actual != reference:
            raise APIError("DIGEST_INVALID", detail={"expected": reference, "actual": actual})
    extras = referrer_info(raw)
    if isinstance(doc.get("subject"), dict) and not extras:
        raise APIError("MANIFEST_INVALID", "bad subject descriptor")
    subject = extras.get("subject")
    tags = () if by_digest else (reference,)
    storage = app.storage

    def store() -> str:
        with storage.gc_lock(shared=True):
            _check_references(app, name, parsed)
            return storage.put_manifest(
                name, raw, media_type, tags, digest=reference if by_digest else None, **extras
            )

    digest = await app.run(store)
    headers = {
        **API_VERSION,
        "Location": f"/v2/{name}/manifests/{digest}",
        "Docker-Content-Digest": digest,
    }
    if subject is not None:
        headers["OCI-Subject"] = subject.digest
    return Response(status_code=201, headers=headers)


async def delete(app: RegistryApp, name: str, reference: str) -> Response:
    if names.is_digest_like(reference):
        done = await app.run(app.storage.delete_manifest, name, reference)
    else:
        done = await app.run(app.storage.delete_tag, name, reference)
    if not done:
        raise APIError("MANIFEST_UNKNOWN", detail={"reference": reference})
    return Response(status_code=202, headers=API_VERSION)


def _check_references(
    app: RegistryApp, name: str, parsed: manifests.Manifest | manifests.Index
) -> None:
    """Every blob (or child manifest) a manifest names must be in this repository
    (pushed to it, or mounted into it): naming a digest of another repository's
    content never makes it readable here."""
    storage = app.storage
    if isinstance(parsed, manifests.Index):
        for entry in parsed.manifests:
            if not storage.has_manifest(name, entry.digest):
                raise APIError("MANIFEST_BLOB_UNKNOWN", detail={"digest": entry.digest})
            manifest_checks.check_blob_size(storage, entry)
        return
    for desc in parsed.blobs:
        if desc.urls and "nondistributable" in desc.media_type + "foreign":
            continue
        if storage.has_blob(name, desc.digest):
            manifest_checks.check_blob_size(storage, desc)
            storage.touch_blob(desc.digest)  # gc grace
        elif not desc.urls and not storage.has_manifest(name, desc.digest):
            raise APIError("MANIFEST_BLOB_UNKNOWN", detail={"digest": desc.digest})


async def _load(
    app: RegistryApp, name: str, reference: str, route: Route | None
) -> tuple[StoredManifest, bool]:
    """The manifest and whether it is stale (a mirror whose upstream is down)."""
    if route is not None:
        return await app.mirror.manifest(route, reference)
    found = await app.run(app.storage.get_manifest, name, reference)
    if found is None:
        if not await app.run(app.storage.repo_exists, name):
            raise APIError("NAME_UNKNOWN", detail={"name": name})
        raise APIError("MANIFEST_UNKNOWN", detail={"reference": reference})
    return found, False


async def _negotiate(
    app: RegistryApp,
    found: StoredManifest,
    accepted: list[str],
    name: str,
    route: Route | None,
) -> StoredManifest:
    """An index the client does not accept: its entry for the host's platform."""
    if found.media_type not in mt.INDEXES:
        return found  # nothing better to offer; the client decides
    try:
        index = manifests.parse(found.data, found.media_type)
    except ManifestError:
        return found
    assert isinstance(index, manifests.Index)
    wanted = Platform.host()
    for entry in index.manifests:
        if entry.platform and wanted.matches(entry.platform) and entry.media_type in accepted:
            child, _ = await _load(app, name, entry.digest, route)
            return child
    raise APIError(
        "MANIFEST_UNKNOWN",
        f"manifest is a {found.media_type}, which the client does not accept",
        detail={"accepted": accepted},
    )


def _accepts(request: Request) -> list[str]:
    out = []
    for header in request.headers.getlist("accept"):
        for part in header.split(","):
            media = part.split(";", 1)[0].strip()
            if media:
                out.append(media)
    return out
