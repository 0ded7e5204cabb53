"""``GET /v2/<name>/referrers/<digest>``: the manifests whose subject is ``digest``.

They are answered as an OCI index; ``?artifactType=`` filters it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from dockyard.oci import mediatypes as mt
from dockyard.registry.server import names
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.handlers.common import API_VERSION, not_allowed

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp


async def handle(app: RegistryApp, request: Request, name: str, subject: str) -> Response:
    """``name`` is the repository whose referrers are read (a mirror's cache)."""
    if request.method != "GET":
        raise not_allowed()
    if not names.valid_digest(subject):
        raise APIError("DIGEST_INVALID", detail={"digest": subject})
    found = await app.run(app.storage.referrers, name, subject)
    headers = dict(API_VERSION)
    wanted = request.query_params.get("artifactType")
    if wanted:
        found = [d for d in found if d.get("artifactType") == wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
    return Response(json.dumps(body).encode(), media_type=mt.OCI_INDEX, headers=headers)
