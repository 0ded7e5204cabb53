"""The secrets page (admin): secrets listed by name and scope, set and deleted.

Every secret's name and scope (global, or a repository), a form to set one and a
button to delete one. Values go one way: the form posts a value, the server seals it
(:func:`..api.secrets.set_secret`), and no page, redirect or error ever holds it again.

Forms post to this server with the session's CSRF value (``csrf`` field) and a
same-site ``Origin``, as sign-out does (:mod:`..sessions`).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dockyard.service.api.common import ENV_RE, APIError, find_repository, in_thread, service
from dockyard.service.api.secrets import MAX_VALUE, delete_secret_named, set_secret
from dockyard.service.models import Repository, Secret
from dockyard.service.web.pages import Viewer, form_of, page, render

FORM_MAX = 3 * MAX_VALUE + (4 << 10)  # a value urlencoded, and the other fields
GLOBAL = ""  # the scope field of a global secret


def _admin(viewer: Viewer) -> None:
    if not viewer.is_admin:
        raise APIError(403, f"the secrets page needs the admin role; yours is {viewer.role}")


@page
async def secrets_page(request: Request, viewer: Viewer) -> Response:
    """The names and scopes of every secret, never a value."""
    _admin(viewer)

    def work() -> dict[str, Any]:
        with service(request).db.transaction() as db:
            rows = db.execute(
                select(Secret.name, Repository.name, Secret.updated)
                .outerjoin(Repository, Secret.repository_id == Repository.id)
                .order_by(Repository.name.is_not(None), Repository.name, Secret.name)
            ).all()
            repositories = list(db.scalars(select(Repository.name).order_by(Repository.name)))
        items = [{"name": n, "scope": r or GLOBAL, "updated": u} for n, r, u in rows]
        return {"items": items, "repositories": repositories}

    found = await in_thread(work)
    return render(request, "secrets.html", {"viewer": viewer, "done": _done(request), **found})


def _done(request: Request) -> dict[str, str] | None:
    """What the last form did, as the redirect said: only a secret's name and scope."""
    done = {k: request.query_params.get(k, "") for k in ("done", "name", "scope")}
    if done["done"] not in ("set", "deleted") or not ENV_RE.match(done["name"]):
        return None
    return {**done, "scope": done["scope"][:200]}


@page
async def set_secret_form(request: Request, viewer: Viewer) -> Response:
    """Set a secret from the form; back to the page, which says so (by name)."""
    _admin(viewer)
    form = await form_of(request, FORM_MAX)
    name, scope, value = form.get("name", ""), form.get("scope", GLOBAL), form.get("value", "")
    if not ENV_RE.match(name):
        raise APIError(400, f"secret name {name[:100]!r}: letters, digits and _ only")
    if len(value) > MAX_VALUE:
        raise APIError(400, f"a secret's value may have at most {MAX_VALUE} characters")
    box = service(request).box

    def work() -> None:
        with service(request).db.transaction() as db:
            repository = find_repository(db, scope).id if scope != GLOBAL else None
            set_secret(db, box, repository, name, value)

    await in_thread(work)
    return _back("set", name, scope)


@page
async def delete_secret_form(request: Request, viewer: Viewer) -> Response:
    """Delete the secret the form names."""
    _admin(viewer)
    form = await form_of(request, 4 << 10)
    name, scope = form.get("name", ""), form.get("scope", GLOBAL)

    def work() -> bool:
        with service(request).db.transaction() as db:
            repository = find_repository(db, scope).id if scope != GLOBAL else None
            return delete_secret_named(db, repository, name)

    if not await in_thread(work):
        raise APIError(404, "no such secret")
    return _back("deleted", name, scope)


def _back(done: str, name: str, scope: str) -> Response:
    query = urllib.parse.urlencode({"done": done, "name": name, "scope": scope})
    return RedirectResponse("/secrets?" + query, 303)
