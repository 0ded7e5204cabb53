"""Users of the web UI: a name, a role and a bcrypt password hash.

A user's role is one of the API tokens' user roles (:mod:`.tokens`: read, write,
admin) and decides the same things. A session of a user holds its *subject*,
``user:NAME:KEY``, where ``KEY`` is random and new with each password: setting a
password, or removing the user, ends every session of the old one.

bcrypt is slow on purpose, so hashing and checking run in a small pool of their own
(:data:`BCRYPT_THREADS`), never on the event loop, and a flood of sign-ins queues
there. Sign-in failures are counted per client address and per user name
(:class:`Guard`); with either bucket empty the answer is "try later", with no bcrypt
at all. An unknown name is checked against a dummy hash, so the time taken does not
tell which names exist.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import re
import secrets as random

import bcrypt
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.registry.server.ratelimit import Buckets
from dockyard.service import tokens
from dockyard.service.models import User

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD = 8  # characters
MAX_PASSWORD = 72  # bytes: bcrypt ignores the rest, so longer ones are refused
ROUNDS = 12
BCRYPT_THREADS = 2
SUBJECT_PREFIX = "user:"
FAILURES = 10  # failed sign-ins a client, and a user name, may have in a burst and per minute

_pool = concurrent.futures.ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="web-bcrypt")


class UserError(ValueError):
    """A bad name, role or password."""


class UserExists(UserError):
    """The name is taken."""


class NoSuchUser(UserError):
    """No user has the name."""


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password.encode()) > MAX_PASSWORD:
        raise UserError(f"a password may have at most {MAX_PASSWORD} bytes (bcrypt's limit)")


def hash_password(password: str) -> str:
    """The bcrypt hash of ``password`` (slow: call it through :func:`in_pool`)."""
    check_password_rules(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(ROUNDS)).decode()


async def in_pool(function, *args):
    """``function(*args)`` in the bcrypt pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_pool, function, *args)


@functools.cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(random.token_bytes(16).hex().encode(), bcrypt.gensalt(ROUNDS))


def verify(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the hash ``stored``.

    ``stored`` None (an unknown user) is checked against a dummy hash all the same, so as
    to take as long.
    """
    candidate = password.encode()[:MAX_PASSWORD]
    if stored is None:
        bcrypt.checkpw(candidate, _dummy_hash())
        return False
    return bcrypt.checkpw(candidate, stored.encode())


def add_user(session: Session, name: str, role: str, password_hash: str) -> None:
    if not NAME_RE.match(name):
        raise UserError(f"user name {name[:100]!r}: letters, digits and ._@- only")
    if role not in tokens.USER_ROLES:
        raise UserError(f"role must be one of {', '.join(tokens.USER_ROLES)}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise UserExists(f"user {name!r} exists already")
    session.add(
        User(name=name, role=role, password=password_hash, session_key=random.token_hex(16))
    )


def set_password(session: Session, name: str, password_hash: str) -> None:
    """A new password for ``name``; the user's sessions end."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NoSuchUser(f"no user named {name[:100]!r}")
    user.password, user.session_key = password_hash, random.token_hex(16)


def remove_user(session: Session, name: str) -> None:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NoSuchUser(f"no user named {name[:100]!r}")
    session.delete(user)


def list_users(session: Session) -> list[dict[str, str]]:
    return [
        {"name": u.name, "role": u.role, "created": u.created.isoformat(timespec="seconds")}
        for u in session.scalars(select(User).order_by(User.name))
    ]


def password_and_subject(session: Session, name: str) -> tuple[str | None, str | None]:
    """The password hash of ``name`` and what a session of theirs holds, read together.

    (None, None): no such user.
    """
    row = session.execute(select(User.password, User.session_key).where(User.name == name)).first()
    return (None, None) if row is None else (row[0], f"{SUBJECT_PREFIX}{name}:{row[1]}")


def role_of_subject(session: Session, subject: str) -> str | None:
    """The role of the user a session's ``subject`` names; None once the session is void.

    A session is void when its user, or the password it was made with, is gone.
    """
    name, _, key = subject.removeprefix(SUBJECT_PREFIX).rpartition(":")
    return session.scalar(select(User.role).where(User.name == name, User.session_key == key))


class Guard:
    """Failed sign-ins counted per client address and per user name."""

    def __init__(self, failures: int = FAILURES):
        self.by_client = Buckets(failures, failures)
        self.by_user = Buckets(failures, failures)

    def take(self, client: str, name: str | None) -> float | None:
        """Spend a try of ``client`` (and of ``name``): None if allowed, else seconds to wait."""
        wait = self.by_client.take(client)
        if wait is None and name is not None:
            wait = self.by_user.take(_key(name))
            if wait is not None:
                self.by_client.give_back(client)
        return wait

    def succeeded(self, client: str, name: str | None) -> None:
        self.by_client.give_back(client)
        if name is not None:
            self.by_user.give_back(_key(name))


def _key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()  # names in forms can be long
