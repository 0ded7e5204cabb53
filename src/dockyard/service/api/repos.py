"""Repositories and their secrets (values are write-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import tokens
from dockyard.service.api.common import (
    ENV_RE,
    LABEL_RE,
    NAME_RE,
    APIError,
    authorize,
    field,
    find_repository,
    in_thread,
    page_args,
    paged,
    read_json,
    repository_json,
    service,
    string_map,
)
from dockyard.service.models import (
    Repository,
    Secret,
    now,
)
from dockyard.service.secrets import secret_context, webhook_context


async def list_repositories(request: Request) -> Response:
    """The repositories, by name, paged."""
    await authorize(request, tokens.READ)
    page, per_page = page_args(request)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            total = session.scalar(select(func.count(Repository.id)))
            rows = session.scalars(
                select(Repository)
                .order_by(Repository.name)
                .offset((page - 1) * per_page)
                .limit(per_page)
            )
            return paged([repository_json(r) for r in rows], page, per_page, total)

    return JSONResponse(await in_thread(work))


async def create_repository(request: Request) -> Response:
    """Add a repository: clone URL, default branch, pipeline path, webhook secret,
    the labels an agent needs (admin)."""
    await authorize(request, tokens.ADMIN)
    doc = await read_json(request)
    name = field(doc, "name", str, check=NAME_RE.match)
    clone_url = field(  # never an option to git
        doc, "clone_url", str, check=lambda u: 0 < len(u) <= 2048 and not u.startswith("-")
    )
    branch = field(doc, "default_branch", str, "main", check=lambda b: 0 < len(b) <= 255)
    path = field(doc, "pipeline_path", str, ".dockyard.yml", check=_relative_path)
    secret = field(doc, "webhook_secret", str, None, check=lambda s: 16 <= len(s) <= 1024)
    labels = string_map(doc, "labels", LABEL_RE)
    fork_secrets = field(doc, "fork_secrets", bool, False)
    box = service(request).box

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            if session.scalar(select(Repository.id).where(Repository.name == name)):
                raise APIError(409, f"repository {name!r} exists")
            repository = Repository(
                name=name,
                clone_url=clone_url,
                default_branch=branch,
                pipeline_path=path,
                labels=labels,
                run_count=0,
                fork_secrets=fork_secrets,
            )
            session.add(repository)
            session.flush()
            if secret is not None:
                repository.webhook_secret = box.seal(secret, webhook_context(repository.id))
            return repository_json(repository)

    return JSONResponse(await in_thread(work), 201)


def _relative_path(path: str) -> bool:
    parts = path.split("/")
    return 0 < len(path) <= 1024 and not path.startswith("/") and ".." not in parts


async def get_repository(request: Request) -> Response:
    """One repository."""
    await authorize(request, tokens.READ)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            return repository_json(find_repository(session, request.path_params["repo"]))

    return JSONResponse(await in_thread(work))


async def list_secrets(request: Request) -> Response:
    """The names of a repository's secrets (admin); values are never returned."""
    await authorize(request, tokens.ADMIN)

    def work() -> list[str]:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            return list(
                session.scalars(
                    select(Secret.name)
                    .where(Secret.repository_id == repository.id)
                    .order_by(Secret.name)
                )
            )

    return JSONResponse({"items": [{"name": n} for n in await in_thread(work)]})


async def put_secret(request: Request) -> Response:
    """Set a repository's secret from ``{"value": ...}`` (admin)."""
    await authorize(request, tokens.ADMIN)
    name = request.path_params["name"]
    if not ENV_RE.match(name):
        raise APIError(400, f"secret name {name[:100]!r}: letters, digits and _ only")
    value = field(await read_json(request), "value", str, check=lambda v: len(v) <= 32 << 10)
    box = service(request).box

    def work() -> None:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            sealed = box.seal(value, secret_context(repository.id, name))
            secret = session.scalar(
                select(Secret).where(Secret.repository_id == repository.id, Secret.name == name)
            )
            if secret is None:
                session.add(Secret(repository_id=repository.id, name=name, sealed=sealed))
            else:
                secret.sealed, secret.updated = sealed, now()

    await in_thread(work)
    return Response(status_code=204)


async def delete_secret(request: Request) -> Response:
    """Delete a repository's secret (admin)."""
    await authorize(request, tokens.ADMIN)

    def work() -> int:
        with service(request).db.transaction() as session:
            repository = find_repository(session, request.path_params["repo"])
            return session.execute(
                delete(Secret).where(
                    Secret.repository_id == repository.id,
                    Secret.name == request.path_params["name"],
                )
            ).rowcount

    if not await in_thread(work):
        raise APIError(404, "no such secret")
    return Response(status_code=204)
