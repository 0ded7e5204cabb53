"""Who may do what: htpasswd users (bcrypt), as basic auth or as our own token realm.

Basic mode: every request carries ``Authorization: Basic``; a missing or wrong one gets
``401`` with ``WWW-Authenticate: Basic``. Token mode: requests carry a bearer token that
``GET /token?service=&scope=`` (or the OAuth2 ``POST /token`` password grant) issued to
an htpasswd user; a request without one is challenged with ``WWW-Authenticate: Bearer
realm=".../token",service=...,scope=...``, which docker, podman, skopeo and dockyard
all follow. Tokens are HMAC-signed (the key lives in ``<root>/auth/token.key``), so they
outlive a restart; they carry the granted scopes and an expiry.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import DockyardError
from dockyard.layout import atomic

TOKEN_TTL = 300  # seconds
SERVICE = "dockyard-registry"


class HtpasswdError(DockyardError):
    pass


class Htpasswd:
    """``user:hash`` lines; bcrypt (``$2y$``/``$2b$``/``$2a$``) hashes as ``htpasswd -B``
    writes them. The file is re-read when it changes; good passwords are remembered (as a
    keyed hash) so bcrypt runs once per user and password, not once per request."""

    def __init__(self, path: Path):
        self.path = path
        self._users: dict[str, bytes] = {}
        self._mtime: float | None = None
        self._good: set[bytes] = set()
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            stat = os.stat(self.path)
            if stat.st_mtime == self._mtime:
                return
            text = self.path.read_text()
        except OSError as e:
            raise HtpasswdError(f"{self.path}: cannot read: {e.strerror}") from None
        users = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                raise HtpasswdError(
                    f"{self.path}:{number}: only bcrypt entries are supported (htpasswd -B)"
                )
            users[user] = hashed.encode()
        with self._lock:
            self._users, self._mtime, self._good = users, stat.st_mtime, set()

    def check(self, user: str, password: str) -> bool:
        import bcrypt

        with contextlib.suppress(HtpasswdError):  # keep the users we had
            self._load()
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hmac.new(
            self._key, b"\0".join((user.encode(), password.encode(), hashed)), hashlib.sha256
        ).digest()
        if key in self._good:
            return True
        candidate = hashed
        if candidate.startswith(b"$2y$"):
            candidate = b"$2b$" + candidate[4:]
        try:
            ok = bcrypt.checkpw(password.encode(), candidate)
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                self._good.add(key)
        return ok


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@dataclass(frozen=True)
class Access:
    """One granted scope: ``repository:NAME:pull,push`` or ``registry:catalog:*``."""

    type: str
    name: str
    actions: frozenset[str]


def parse_scope(scope: str) -> list[Access]:
    """Scopes as clients send them (several may be joined by spaces)."""
    out = []
    for item in scope.split():
        parts = item.split(":")
        if len(parts) < 3:
            continue
        kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
        out.append(Access(kind, name, frozenset(a for a in actions.split(",") if a)))
    return out


class TokenIssuer:
    """Issues and checks our bearer tokens: ``base64(payload).base64(hmac)``."""

    def __init__(self, key_file: Path, ttl: int = TOKEN_TTL):
        self.ttl = ttl
        self._key = self._load_key(key_file)

    @staticmethod
    def _load_key(path: Path) -> bytes:
        try:
            return bytes.fromhex(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        atomic.write_bytes(path, key.hex().encode())
        os.chmod(path, 0o600)
        return key

    def issue(self, user: str, granted: list[Access]) -> tuple[str, int]:
        payload = {
            "sub": user,
            "exp": int(time.time()) + self.ttl,
            "access": [
                {"type": a.type, "name": a.name, "actions": sorted(a.actions)} for a in granted
            ],
        }
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.new(self._key, body, hashlib.sha256).digest())
        return f"{body.decode()}.{sig.rstrip(b'=').decode()}", self.ttl

    def verify(self, token: str) -> list[Access] | None:
        """The access a valid, unexpired token grants; None for anything else."""
        body, sep, sig = token.partition(".")
        if not sep:
            return None
        expected = base64.urlsafe_b64encode(
            hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        ).rstrip(b"=")
        if not hmac.compare_digest(expected, sig.encode()):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            if payload["exp"] < time.time():
                return None
            return [
                Access(a["type"], a["name"], frozenset(a["actions"])) for a in payload["access"]
            ]
        except (ValueError, KeyError, TypeError):
            return None


def grant(requested: list[Access], user: str | None, anonymous_pull: bool) -> list[Access]:
    """What a user gets of what they asked: everything for a known user, pull for
    anonymous users when the server allows anonymous pulls."""
    out = []
    for want in requested:
        if user is not None:
            if want.type == "repository":
                allowed = want.actions & {"pull", "push", "delete", "*"}
            elif want.type == "registry" and want.name == "catalog":
                allowed = want.actions & {"*"}
            else:
                allowed = frozenset()
        elif anonymous_pull and want.type == "repository":
            allowed = want.actions & {"pull"}
        else:
            allowed = frozenset()
        if allowed:
            out.append(Access(want.type, want.name, frozenset(allowed)))
    return out


def allows(granted: list[Access], kind: str, name: str, action: str) -> bool:
    return any(
        a.type == kind and a.name == name and (action in a.actions or "*" in a.actions)
        for a in granted
    )
