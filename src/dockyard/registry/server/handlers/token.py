"""Who may do what (:func:`authorize`), and our token realm (:func:`issue`).

:func:`authorize` takes basic auth, or bearer tokens with scopes; :func:`issue` answers
``/token``. Passwords are checked only through :mod:`..logins` (bcrypt off the event
loop, failures rate-limited per address).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.registry.server import auth
from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.handlers.common import client_of

if TYPE_CHECKING:
    from dockyard.registry.server.app import RegistryApp

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="dockyard-registry"'}


async def authorize(
    app: RegistryApp, request: Request, resource: str | None, action: str | None
) -> None:
    """Raise 401 unless the request may do ``action`` on ``resource``.

    ``resource`` None: any user may. 429 for a client or user that failed to log in too
    often.
    """
    if app.logins is None or app.htpasswd is None:
        return
    header = request.headers.get("authorization")
    config = app.config
    if app.tokens is None:  # basic
        user = auth.parse_basic(header)
        if user is not None and await app.logins.check(client_of(request), *user):
            return
        if config.anonymous_pull and user is None and action in ("pull", None):
            return
        raise APIError("UNAUTHORIZED", headers=_BASIC_CHALLENGE)
    granted: list[auth.Access] | None = None
    if header and header[:7].lower() == "bearer ":
        checked = app.tokens.verify_user(header[7:].strip())
        if checked is not None and (not checked[0] or app.htpasswd.knows(checked[0])):
            granted = checked[1]  # a removed user's tokens end with the user
    if granted is not None:
        if resource is None:
            return
        kind, _, rname = resource.partition(":")
        if auth.allows(granted, kind, rname, action or "*"):
            return
        if action == "delete" and auth.allows(granted, kind, rname, "push"):
            return
    elif resource is not None and config.anonymous_pull and action == "pull" and not header:
        return
    realm = config.token_realm or f"{request.url.scheme}://{request.headers.get('host', '')}/token"
    challenge = f'Bearer realm="{realm}",service="{auth.SERVICE}"'
    if resource is not None:
        actions = {"pull": "pull", "push": "pull,push", "delete": "delete"}.get(
            action or "", action or "*"
        )
        challenge += f',scope="{resource}:{actions}"'
        if granted is not None:
            challenge += ',error="insufficient_scope"'
    raise APIError("UNAUTHORIZED", headers={"WWW-Authenticate": challenge})


async def issue(app: RegistryApp, request: Request) -> Response:
    """Our token realm: ``GET`` with basic credentials, or the OAuth2 ``POST``."""
    assert app.tokens is not None and app.logins is not None
    user: str | None = None
    scopes: list[str] = []
    if request.method == "POST":
        form = _form(await request.body())  # capped by limits.BoundedReceive
        if form.get("grant_type") != "password":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        creds = (form.get("username", ""), form.get("password", ""))
        if not await app.logins.check(client_of(request), *creds):
            return JSONResponse({"error": "invalid_grant"}, status_code=401)
        user = creds[0]
        scopes = form.get("scope", "").split()
    else:
        basic = auth.parse_basic(request.headers.get("authorization"))
        if basic is not None:
            if not await app.logins.check(client_of(request), *basic):
                raise APIError(
                    "UNAUTHORIZED", "bad user name or password", headers=_BASIC_CHALLENGE
                )
            user = basic[0]
        elif not app.config.anonymous_pull:
            raise APIError("UNAUTHORIZED", headers=_BASIC_CHALLENGE)
        scopes = request.query_params.getlist("scope")
    requested = [a for s in scopes for a in auth.parse_scope(s)]
    granted = auth.grant(requested, user, app.config.anonymous_pull)
    token, ttl = app.tokens.issue(user or "", granted)
    issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return JSONResponse(
        {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}
    )


def _form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the last of repeated keys wins)."""
    out: dict[str, str] = {}
    for part in body.decode(errors="replace").split("&"):
        if part:
            key, _, value = part.partition("=")
            out[unquote_plus(key)] = unquote_plus(value)
    return out
