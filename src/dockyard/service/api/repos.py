"""Repositories: list, add, show."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import tokens
from dockyard.service.api.common import (
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
    relative_path,
    repository_json,
    service,
    string_map,
)
from dockyard.service.models import (
    Repository,
)
from dockyard.service.secrets import webhook_context


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
            return paged([repository_json(r) for r in rows], page, per_page, total or 0)

    return JSONResponse(await in_thread(work))


async def create_repository(request: Request) -> Response:
    """Add a repository (admin).

    Its fields: clone URL, default branch, pipeline path, webhook secret, the labels an
    agent needs."""
    await authorize(request, tokens.ADMIN)
    doc = await read_json(request)
    name = field(doc, "name", str, check=NAME_RE.match)
    clone_url = field(  # never an option to git
        doc, "clone_url", str, check=lambda u: 0 < len(u) <= 2048 and not u.startswith("-")
    )
    branch = field(doc, "default_branch", str, "main", check=lambda b: 0 < len(b) <= 255)
    path = field(doc, "pipeline_path", str, ".dockyard.yml", check=relative_path)
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


async def get_repository(request: Request) -> Response:
    """One repository."""
    await authorize(request, tokens.READ)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as session:
            return repository_json(find_repository(session, request.path_params["repo"]))

    return JSONResponse(await in_thread(work))
