"""``/v2/<name>/blobs/uploads/[<id>]``: start, append, finish, status and cancel.

Start (``POST``: a session, a monolithic upload with ``?digest=``, or a
cross-repository mount), append (``PATCH``), finish (``PUT``), status (``GET``) and
cancel (``DELETE``).

Bodies stream to storage in 1 MiB batches, hashed as they arrive, the write of one
batch overlapping the receipt of the next. A chunk (``PATCH`` or the final ``PUT``)
must start where the upload ends (416 otherwise, nothing written). Requests of one
session are serialised; a session is used only through the repository it was started
for. A mount needs ``from=`` naming a repository that has the blob and the client may
read: a digest alone proves nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.errors import DigestError
from dockyard.registry.server import names
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.backend import UploadWriter
from dockyard.registry.server.handlers import token
from dockyard.registry.server.handlers.common import API_VERSION, not_allowed

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp

log = logging.getLogger("dockyard.registry.server")

WRITE_BATCH = 1 << 20


async def handle(app: RegistryApp, request: Request, name: str, upload: str) -> Response:
    """``upload`` is ``""`` for ``.../blobs/uploads/`` (where only ``POST`` goes)."""
    method = request.method
    storage = app.storage
    if upload == "":
        if method == "POST":
            return await start(app, request, name)
        raise not_allowed()
    owner = await app.run(storage.uploads.repository, upload)
    if owner != name:
        raise APIError("BLOB_UPLOAD_UNKNOWN", detail={"upload": upload})
    lock = app.upload_locks.setdefault(upload, asyncio.Lock())
    async with lock:
        if await app.run(storage.uploads.repository, upload) != name:  # finished
            raise APIError("BLOB_UPLOAD_UNKNOWN", detail={"upload": upload})
        if method == "PATCH":
            return await patch(app, request, name, upload)
        if method == "PUT":
            return await finish(app, request, name, upload)
        if method == "GET":
            size = await app.run(storage.uploads.size, upload)
            return _status(name, upload, 204, size)
        if method == "DELETE":
            await app.run(storage.uploads.cancel, upload)
            app.upload_locks.pop(upload, None)
            return Response(status_code=204, headers=API_VERSION)
    raise not_allowed()


async def start(app: RegistryApp, request: Request, name: str) -> Response:
    storage = app.storage
    query = request.query_params
    mount, source = query.get("mount"), query.get("from")
    if mount and source and names.valid_digest(mount) and names.valid_name(source):
        # only from a repository that has the blob and the client may read; without
        # from=, no mount (the spec's 202): a digest alone proves nothing
        route = app.mirror.route(source)
        allowed = await app.run(storage.has_blob, route.local if route else source, mount)
        if allowed and app.htpasswd is not None:
            try:
                await token.authorize(app, request, f"repository:{source}", "pull")
            except APIError:
                allowed = False
        if allowed:
            await app.run(storage.link_blob, name, mount)
            return _created(name, mount)
    digest = query.get("digest")
    if digest is not None and not names.valid_digest(digest):
        raise APIError("DIGEST_INVALID", detail={"digest": digest})
    upload = await app.run(storage.uploads.start, name)
    if digest is None:
        return _status(name, upload, 202, 0)
    writer = await app.run(storage.uploads.open, upload)  # monolithic: all in one
    try:
        await _receive(app, request, writer)
        await _finish(app, writer, name, digest)
    except BaseException:
        await app.run(writer.abort)
        raise
    return _created(name, digest)


async def patch(app: RegistryApp, request: Request, name: str, upload: str) -> Response:
    writer = await app.run(app.storage.uploads.open, upload)
    try:
        _check_chunk_start(request, writer, name, upload)
        try:
            await _receive(app, request, writer)
        except ClientDisconnect:
            log.info("upload %s: client went away after %d bytes", upload, writer.offset)
            raise
    finally:
        await app.run(writer.close)
    return _status(name, upload, 202, writer.offset)


async def finish(app: RegistryApp, request: Request, name: str, upload: str) -> Response:
    digest = request.query_params.get("digest")
    if not digest or not names.valid_digest(digest):
        raise APIError("DIGEST_INVALID", detail={"digest": digest})
    writer = await app.run(app.storage.uploads.open, upload)
    try:
        _check_chunk_start(request, writer, name, upload)  # the last chunk, in order
        await _receive(app, request, writer)
    except BaseException:
        await app.run(writer.close)
        raise
    await _finish(app, writer, name, digest)
    app.upload_locks.pop(upload, None)
    return _created(name, digest)


async def _finish(app: RegistryApp, writer: UploadWriter, name: str, digest: str) -> None:
    storage = app.storage

    def finish() -> None:
        writer.finish(digest, storage)
        storage.link_blob(name, digest)

    try:
        await app.run(finish)
    except DigestError as e:
        raise APIError("DIGEST_INVALID", str(e), detail={"digest": digest}) from None


async def _receive(app: RegistryApp, request: Request, writer: UploadWriter) -> None:
    """Stream the request body into the upload: 1 MiB batches written in a thread while
    the next batch arrives."""
    pending: asyncio.Future | None = None
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            buffer += chunk
            if len(buffer) >= WRITE_BATCH:
                if pending is not None:
                    await pending
                data, buffer = buffer, bytearray()
                pending = app.run_later(writer.write, data)
    finally:
        if pending is not None:
            await pending
    if buffer:
        await app.run(writer.write, buffer)


def _check_chunk_start(request: Request, writer: UploadWriter, name: str, upload: str) -> None:
    """416 for a chunk (``PATCH``, or the final ``PUT``) whose ``Content-Range`` does not
    start where the upload ends: nothing of it is written."""
    content_range = request.headers.get("content-range")
    if not content_range:
        return
    start = content_range.removeprefix("bytes ").split("-", 1)[0].strip()
    if not start.isdigit() or int(start) != writer.offset:
        raise APIError(
            "RANGE_INVALID",
            f"chunk starts at {start}, upload has {writer.offset} bytes",
            headers={
                "Location": f"/v2/{name}/blobs/uploads/{upload}",
                "Range": f"0-{max(writer.offset - 1, 0)}",
            },
        )


def _status(name: str, upload: str, status: int, size: int) -> Response:
    return Response(
        status_code=status,
        headers={
            **API_VERSION,
            "Location": f"/v2/{name}/blobs/uploads/{upload}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload,
            "Content-Length": "0",
        },
    )


def _created(name: str, digest: str) -> Response:
    return Response(
        status_code=201,
        headers={
            **API_VERSION,
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )
