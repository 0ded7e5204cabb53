"""``/v2/<name>/blobs/<digest>``: ``GET``/``HEAD`` and ``DELETE``.

``GET`` honours ``Range``; ``DELETE`` removes the repository's link.

A blob is served through a repository only if it is linked there (pushed, mounted
from a readable repository, or fetched from its upstream). For a mirrored repository a
blob the cache lacks streams from the upstream while it is cached; one stored for
another repository is linked only if a configured (trusted) upstream says it has it
for this one -- an upstream a client named must send the bytes instead. Bodies come
from a local file (Starlette's ``FileResponse``) or stream from the object store in
1 MiB reads; with ``--redirect`` a ``GET`` is answered with a 307 to a pre-signed URL of
the object instead (as distribution does), so the bytes bypass the registry.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from dockyard.registry.server import names
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.handlers.common import API_VERSION, READ_METHODS, not_allowed
from dockyard.registry.server.mirror import Route

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp

READ_CHUNK = 1 << 20
_RANGE_PART = re.compile(r"^([0-9]*)-([0-9]*)$")


class BlobResponse(FileResponse):
    """A blob from disk, read in big chunks (``Range`` handled by Starlette)."""

    chunk_size = READ_CHUNK


async def handle(
    app: RegistryApp, request: Request, name: str, digest: str, route: Route | None
) -> Response:
    if request.method not in READ_METHODS and request.method != "DELETE":
        raise not_allowed()
    if not names.valid_digest(digest):
        raise APIError("DIGEST_INVALID", detail={"digest": digest})
    if request.method == "DELETE":
        return await delete(app, name, digest)
    return await get(app, request, name, digest, route)


async def get(
    app: RegistryApp, request: Request, name: str, digest: str, route: Route | None
) -> Response:
    storage = app.storage
    headers = {**API_VERSION, "Docker-Content-Digest": digest}
    if route is not None:
        local = route.local
        size = await app.run(storage.linked_blob_size, local, digest)
        if size is None and route.upstream.config.trusted:
            size = await app.run(storage.blob_size, digest)
            if size is not None:
                # stored for another repository: serve it here only if the upstream has
                # it for this one (an upstream a client named must send the bytes instead)
                if await app.mirror.blob_size(route, digest) is None:
                    raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
                await app.run(storage.link_blob, local, digest)
        if size is None:
            return await _from_upstream(app, request, route, digest, headers)
    else:
        size = await app.run(storage.linked_blob_size, name, digest)
        if size is None:
            raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
    if request.method == "HEAD":
        await app.run(storage.touch_blob, digest)  # a client about to reference it
        headers["Content-Length"] = str(size)
        headers["Accept-Ranges"] = "bytes"
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    if app.config.redirect and (url := await app.run(storage.blob_url, digest)):
        # the client fetches it (and any Range of it) from the object store itself
        headers.update({"Location": url, "Content-Length": "0"})
        return Response(status_code=307, headers=headers)
    range_header = request.headers.get("range")
    _check_range(range_header, size)
    path = storage.blob_file(digest)
    if path is not None:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            raise APIError("BLOB_UNKNOWN", detail={"digest": digest}) from None
        return BlobResponse(
            path, headers=headers, media_type="application/octet-stream", stat_result=stat
        )
    return await _streamed(app, digest, size, range_header, headers)


async def delete(app: RegistryApp, name: str, digest: str) -> Response:
    if not await app.run(app.storage.unlink_blob, name, digest):
        raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
    return Response(status_code=202, headers=API_VERSION)


async def _from_upstream(
    app: RegistryApp, request: Request, route: Route, digest: str, headers: dict[str, str]
) -> Response:
    """A blob the cache lacks: its size (``HEAD``), or its bytes cached as they pass."""
    if request.method == "HEAD":
        size = await app.mirror.blob_size(route, digest)
        if size is None:
            raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
        headers["Content-Length"] = str(size)
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    opened = await app.mirror.stream_blob(route, digest)
    if opened is None:
        raise APIError("BLOB_UNKNOWN", detail={"digest": digest})
    body, size = opened
    headers["Content-Length"] = str(size)
    return StreamingResponse(body, headers=headers, media_type="application/octet-stream")


def _check_range(header: str | None, size: int) -> None:
    """416 (with the error JSON) for a ``Range`` Starlette would refuse in plain text: not
    ``bytes=``, a part that is not ``first-[last]`` or ``-suffix``, a last byte before the
    first, or nothing of the blob in reach (``bytes=500-0`` is all three)."""
    if header is None or _range_servable(header, size):
        return
    raise APIError(
        "RANGE_INVALID",
        f"range {header!r} cannot be served from a blob of {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )


def _range_servable(header: str, size: int) -> bool:
    units, sep, spec = header.partition("=")
    if not sep or units.strip().lower() != "bytes":
        return False
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) > BlobResponse.max_ranges:
        return True  # Starlette ignores so many: the whole blob
    for part in parts:
        match = _RANGE_PART.match(part)
        if match is None or match[0] == "-":
            return False
        first, last = match.groups()
        if first and (int(first) >= size or (last and int(last) < int(first))):
            return False
        if not first and (int(last) == 0 or size == 0):
            return False
    return True


def _single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a one-part ``Range`` (already checked servable); None for
    no header or several parts (the whole blob is an allowed answer to those)."""
    if header is None:
        return None
    parts = header.partition("=")[2].split(",")
    if len(parts) != 1:
        return None
    first, _, last = parts[0].strip().partition("-")
    if not first:
        return max(size - int(last), 0), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


async def _streamed(
    app: RegistryApp,
    digest: str,
    size: int,
    range_header: str | None,
    headers: dict[str, str],
) -> Response:
    """A blob streamed from a backend without local files (the object store), one
    ``Range`` part honoured (206): opened in a thread (a request to the store, kept off
    the event loop), read in big chunks in a thread as the client takes them."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    wanted = _single_range(range_header, size)
    if wanted is None:
        headers["Content-Length"] = str(size)
        body = await app.run(app.storage.read_blob, digest)
        return StreamingResponse(body, headers=headers, media_type="application/octet-stream")
    first, last = wanted
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    body = await app.run(app.storage.read_blob, digest, first, last - first + 1)
    return StreamingResponse(
        body, status_code=206, headers=headers, media_type="application/octet-stream"
    )
