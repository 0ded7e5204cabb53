"""Users who sign in to the web UI with a password: list, add, set a password, remove.

Admin only. Passwords are hashed with bcrypt off the event loop (:mod:`..users`) and
never returned.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.service import tokens, users
from dockyard.service.api.common import APIError, authorize, field, in_thread, read_json, service


async def list_users(request: Request) -> Response:
    """The users: name, role, when added."""
    await authorize(request, tokens.ADMIN)

    def work() -> list[dict[str, str]]:
        with service(request).db.transaction() as session:
            return users.list_users(session)

    return JSONResponse({"items": await in_thread(work)})


async def _hashed(password: str) -> str:
    try:
        return await users.in_pool(users.hash_password, password)
    except users.UserError as e:
        raise APIError(400, f"password: {e}") from None


async def _change(request: Request, change: Callable[[Session], None]) -> None:
    def work() -> None:
        with service(request).db.transaction() as session:
            change(session)

    try:
        await in_thread(work)
    except users.UserExists as e:
        raise APIError(409, str(e)) from None
    except users.NoSuchUser as e:
        raise APIError(404, str(e)) from None
    except users.UserError as e:
        raise APIError(400, str(e)) from None


async def add_user(request: Request) -> Response:
    """A new user from ``{"name", "role", "password"}``."""
    await authorize(request, tokens.ADMIN)
    doc = await read_json(request)
    name = field(doc, "name", str)
    role = field(doc, "role", str)
    if not users.NAME_RE.match(name) or role not in tokens.USER_ROLES:
        raise APIError(400, f"name: letters, digits and ._@-; role: {', '.join(tokens.USER_ROLES)}")
    password = await _hashed(field(doc, "password", str))
    await _change(request, lambda session: users.add_user(session, name, role, password))
    return JSONResponse({"name": name, "role": role}, 201)


async def set_password(request: Request) -> Response:
    """A user's new password from ``{"password"}``; their sessions end."""
    await authorize(request, tokens.ADMIN)
    name = request.path_params["name"]
    password = await _hashed(field(await read_json(request), "password", str))
    await _change(request, lambda session: users.set_password(session, name, password))
    return Response(status_code=204)


async def remove_user(request: Request) -> Response:
    """Remove a user; their sessions end."""
    await authorize(request, tokens.ADMIN)
    name = request.path_params["name"]
    await _change(request, lambda session: users.remove_user(session, name))
    return Response(status_code=204)
