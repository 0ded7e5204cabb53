"""API tokens: made, listed and revoked by an admin.

A token's value is shown once, in the answer that makes it; the list shows names,
roles and ids, never values. A revoked token is refused from its next request on
(every request looks its digest up). The last admin token cannot be revoked: the
server would have no way in left.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import tokens
from dockyard.service.api.common import (
    NAME_RE,
    APIError,
    authorize,
    field,
    in_thread,
    iso,
    read_json,
    service,
)
from dockyard.service.models import Token


async def create_token(request: Request) -> Response:
    """A new API token of a role (admin); its value is shown only in this answer."""
    await authorize(request, tokens.ADMIN)
    doc = await read_json(request)
    name = field(doc, "name", str, check=NAME_RE.match)
    role = field(doc, "role", str, check=lambda r: r in tokens.ROLES)

    def work() -> tuple[int, str]:
        with service(request).db.transaction() as session:
            value = tokens.create_token(session, name, role)
            session.flush()
            return tokens.id_of(session, value) or 0, value

    token_id, value = await in_thread(work)
    return JSONResponse({"id": token_id, "name": name, "role": role, "token": value}, 201)


async def list_tokens(request: Request) -> Response:
    """The API tokens: id, name, role, when made (admin); never their values."""
    await authorize(request, tokens.ADMIN)

    def work() -> list[dict[str, Any]]:
        with service(request).db.transaction() as session:
            rows = session.scalars(select(Token).order_by(Token.id))
            return [
                {"id": t.id, "name": t.name, "role": t.role, "created": iso(t.created)}
                for t in rows
            ]

    return JSONResponse({"items": await in_thread(work)})


async def revoke_token(request: Request) -> Response:
    """Revoke a token by its id (admin): refused from its next request on."""
    await authorize(request, tokens.ADMIN)
    value = request.path_params["id"]
    if not value.isdigit() or len(value) > 18:
        raise APIError(404, f"no token {value[:20]!r}")

    def work() -> None:
        with service(request).db.transaction() as session:
            token = session.get(Token, int(value))
            if token is None:
                raise APIError(404, f"no token {value}")
            if token.role == tokens.ADMIN:
                # The admin rows locked while counted: two revokes at once on PostgreSQL
                # would each count two and leave none (SQLite transactions are IMMEDIATE).
                admins = session.scalars(
                    select(Token.id).where(Token.role == tokens.ADMIN).with_for_update()
                ).all()
                if len(admins) == 1:
                    raise APIError(409, "the last admin token cannot be revoked: make another")
            session.delete(token)

    await in_thread(work)
    return Response(status_code=204)
