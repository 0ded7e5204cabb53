"""Secrets: names listed, values set and deleted, never returned (admin).

A secret is one repository's (``/repos/{repo}/secrets``) or global (``/secrets``). A run
gets the global secrets its pipeline names, a repository's own of the same name winning.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import tokens
from dockyard.service.api.common import (
    ENV_RE,
    APIError,
    authorize,
    field,
    find_repository,
    in_thread,
    read_json,
    service,
)
from dockyard.service.database import rowcount
from dockyard.service.models import Secret, now
from dockyard.service.secrets import SecretBox, secret_context

MAX_VALUE = 32 << 10


def _scope(session: Session, request: Request) -> int | None:
    """The repository the request names, or None for the global secrets."""
    if "repo" not in request.path_params:
        return None
    return find_repository(session, request.path_params["repo"]).id


def _in(scope: int | None):
    return Secret.repository_id.is_(None) if scope is None else Secret.repository_id == scope


async def list_secrets(request: Request) -> Response:
    """The names of a repository's (or the global) secrets; values are never returned."""
    await authorize(request, tokens.ADMIN)

    def work() -> list[str]:
        with service(request).db.transaction() as session:
            scope = _scope(session, request)
            return list(
                session.scalars(select(Secret.name).where(_in(scope)).order_by(Secret.name))
            )

    return JSONResponse({"items": [{"name": n} for n in await in_thread(work)]})


async def put_secret(request: Request) -> Response:
    """Set a repository's (or a global) secret from ``{"value": ...}``."""
    await authorize(request, tokens.ADMIN)
    name = request.path_params["name"]
    if not ENV_RE.match(name):
        raise APIError(400, f"secret name {name[:100]!r}: letters, digits and _ only")
    value = field(await read_json(request), "value", str, check=lambda v: len(v) <= MAX_VALUE)
    box = service(request).box

    def work() -> None:
        with service(request).db.transaction() as session:
            set_secret(session, box, _scope(session, request), name, value)

    await in_thread(work)
    return Response(status_code=204)


async def delete_secret(request: Request) -> Response:
    """Delete a repository's (or a global) secret."""
    await authorize(request, tokens.ADMIN)

    def work() -> bool:
        with service(request).db.transaction() as session:
            return delete_secret_named(
                session, _scope(session, request), request.path_params["name"]
            )

    if not await in_thread(work):
        raise APIError(404, "no such secret")
    return Response(status_code=204)


def set_secret(session: Session, box: SecretBox, scope: int | None, name: str, value: str) -> None:
    """Set secret ``name`` of repository ``scope`` (None: global), sealed."""
    sealed = box.seal(value, secret_context(scope, name))
    secret = session.scalar(select(Secret).where(_in(scope), Secret.name == name))
    if secret is None:
        session.add(Secret(repository_id=scope, name=name, sealed=sealed))
    else:
        secret.sealed, secret.updated = sealed, now()


def delete_secret_named(session: Session, scope: int | None, name: str) -> bool:
    """Delete secret ``name`` of repository ``scope`` (None: global); False if none."""
    return bool(rowcount(session.execute(delete(Secret).where(_in(scope), Secret.name == name))))


def secrets_for_run(session: Session, box, repository_id: int, names: list[str]) -> dict[str, str]:
    """The named secrets a run of ``repository_id`` gets.

    Global ones, overridden by the repository's own.
    """
    found: dict[str, str] = {}
    for scope in (None, repository_id):
        for secret in session.scalars(select(Secret).where(_in(scope), Secret.name.in_(names))):
            found[secret.name] = box.open(secret.sealed, secret_context(scope, secret.name))
    return found
