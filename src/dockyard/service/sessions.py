"""Browser sessions of the web UI: a sealed cookie that stands in for an API token.

Signing in with an API token, or as a user with a password (:mod:`.users`), sets
:data:`COOKIE`: the token or the user's subject, a random CSRF value and an expiry,
sealed with the server's AES-GCM key (:class:`~.secrets.SecretBox`), so a cookie cannot
be forged or read, several servers on one key accept each other's, and no table of
sessions is kept. The role is looked up on every request (:func:`role_of`), so deleting
the token, or the user, or setting a new password, ends its sessions. The cookie is
HttpOnly and SameSite=Strict (Secure over TLS).

A request that changes something (any method but GET/HEAD) with a session must also
carry the session's CSRF value (``X-CSRF-Token`` header, or the ``csrf`` form field of
the UI's own forms) and, when the browser sends one, an ``Origin`` of this server.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets as random
import time
from dataclasses import dataclass
from typing import Literal, TypedDict

from sqlalchemy.orm import Session as Database
from starlette.requests import Request

from dockyard.service import tokens, users
from dockyard.service.secrets import SecretBox, SecretKeyError

COOKIE = "dockyard_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME = 12 * 3600  # seconds a session lasts
SAFE_METHODS = ("GET", "HEAD")
_CONTEXT = "web-session"
_MAX_COOKIE = 4096


class Refused(Exception):
    """A state-changing request whose CSRF value or origin is wrong."""


@dataclass(frozen=True)
class Session:
    token: str  # an API token, or a user's subject (``user:...``)
    csrf: str
    expires: float


def create(box: SecretBox, token: str) -> tuple[str, Session]:
    """A new session for ``token``: the cookie's value, and what it holds."""
    session = Session(token, random.token_urlsafe(32), time.time() + LIFETIME)
    sealed = box.seal(json.dumps([session.token, session.csrf, session.expires]), _CONTEXT)
    return base64.urlsafe_b64encode(sealed).decode(), session


def read(box: SecretBox, request: Request) -> Session | None:
    """The request's session, if its cookie opens with this key and has not expired."""
    value = request.cookies.get(COOKIE, "")
    if not value or len(value) > _MAX_COOKIE:
        return None
    try:
        plain = box.open(base64.urlsafe_b64decode(value.encode()), _CONTEXT)
        token, csrf, expires = json.loads(plain)
    except (SecretKeyError, binascii.Error, ValueError, TypeError):
        return None
    if not (isinstance(token, str) and isinstance(csrf, str) and isinstance(expires, float)):
        return None
    if expires < time.time():
        return None
    return Session(token, csrf, expires)


def role_of(db: Database, subject: str) -> str | None:
    """The role of what a session holds: a user's subject or an API token."""
    if subject.startswith(users.SUBJECT_PREFIX):
        return users.role_of_subject(db, subject)
    return tokens.role_of(db, subject)


def check_origin(request: Request) -> None:
    """Refuse a request a browser says comes from another site's page."""
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        raise Refused(f"cross-site request from {origin[:100]!r} refused")


def check_csrf(request: Request, session: Session, sent: str | None) -> None:
    """Refuse a state-changing request without this session's CSRF value."""
    check_origin(request)
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Refused("missing or wrong CSRF token; reload the page")


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


class CookieOptions(TypedDict):
    httponly: bool
    samesite: Literal["strict"]
    secure: bool
    path: str


def cookie_options(request: Request) -> CookieOptions:
    """How the session cookie is set: never readable by scripts, never sent cross-site."""
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
        "path": "/",
    }
