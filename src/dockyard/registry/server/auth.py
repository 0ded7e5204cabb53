"""Who may do what: htpasswd users (bcrypt), as basic auth or as our own token realm.

Basic mode: every request carries ``Authorization: Basic``; a missing or wrong one gets
``401`` with ``WWW-Authenticate: Basic``. Token mode: requests carry a bearer token that
``GET /token?service=&scope=`` (or the OAuth2 ``POST /token`` password grant) issued to
an htpasswd user; a request without one is challenged with ``WWW-Authenticate: Bearer
realm=".../token",service=...,scope=...``, which docker, podman, skopeo and dockyard
all follow. Tokens are HMAC-signed with a key kept on local disk, never in the registry's
storage (a bucket is read by more than the registry): ``<root>/auth/token.key`` (0600,
made on first start), or a file the operator gives (``auth.token_key``), which replicas
behind one address must share so each accepts the others' tokens. Tokens outlive a
restart; they carry the user, the granted scopes and an expiry, and stop working when the
user leaves the htpasswd file. Password checks go through
:mod:`.logins` (bcrypt in a thread, failures rate-limited).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import DockyardError
from dockyard.files import atomic

TOKEN_TTL = 300  # seconds
SERVICE = "dockyard-registry"
GOOD_PASSWORD_TTL = 60.0  # seconds a checked password is remembered
MAX_REMEMBERED = 10_000

log = logging.getLogger("dockyard.registry.server")


class HtpasswdError(DockyardError):
    pass


class Htpasswd:
    """Users of an htpasswd file: ``user:hash`` lines with bcrypt hashes.

    The hashes are bcrypt (``$2y$``/``$2b$``/``$2a$``) as ``htpasswd -B`` writes them.

    The file is re-read when it changes (its size, mtime, ctime or inode). A reload that
    fails (unreadable, malformed) fails closed: no user is known until the file is valid
    again, and the reason is logged once per change of the file. A good password is
    remembered for ``cache_ttl`` seconds (keyed by an HMAC of user, password and hash
    under a per-process key, so the memory holds no password), and forgotten on reload:
    bcrypt runs once per user and password a while, not once per request.
    """

    def __init__(
        self,
        path: Path,
        cache_ttl: float = GOOD_PASSWORD_TTL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = path
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._users: dict[str, bytes] = {}
        self._seen: tuple[int, ...] | None = None  # what the loaded file looked like
        self._broken: str | None = None
        self._good: dict[bytes, float] = {}  # key -> until when (clock)
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        stat, users = self._read()  # a bad file at start-up is an error
        self._users, self._seen = users, _signature(stat)

    @property
    def broken(self) -> str | None:
        """Why the last reload failed (all users refused), or None."""
        self.refresh()
        return self._broken

    def _read(self) -> tuple[os.stat_result, dict[str, bytes]]:
        try:
            with open(self.path, "rb") as f:
                stat = os.fstat(f.fileno())
                text = f.read().decode()
        except OSError as e:
            raise HtpasswdError(f"{self.path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError:
            raise HtpasswdError(f"{self.path}: not UTF-8 text") from None
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
        return stat, users

    def refresh(self) -> None:
        """Re-read the file if it changed.

        On failure, refuse every user until it is valid again.
        """
        try:
            seen = _signature(os.stat(self.path))
        except OSError:
            seen = None
        if seen is not None and seen == self._seen:
            return
        with self._lock:
            if seen is not None and seen == self._seen:
                return  # another thread reloaded it
            try:
                stat, users = self._read()
            except HtpasswdError as e:
                if self._broken != str(e) or self._users:
                    log.error("htpasswd reload failed, refusing all users until fixed: %s", e)
                self._users, self._good, self._broken, self._seen = {}, {}, str(e), seen
                return
            if self._broken is not None:
                log.warning("htpasswd %s is valid again: %d user(s)", self.path, len(users))
            self._users, self._good, self._broken = users, {}, None
            self._seen = _signature(stat)

    def knows(self, user: str) -> bool:
        """The user is in the (valid) file now."""
        self.refresh()
        return user in self._users

    def fingerprint(self, user: str, password: str) -> bytes | None:
        """A keyed hash naming one user and password (no secret in it).

        None for an unknown user.
        """
        return self._cache_key(user, password)[1]

    def _cache_key(self, user: str, password: str) -> tuple[bytes | None, bytes | None]:
        hashed = self._users.get(user)
        if hashed is None:
            return None, None
        key = hmac.new(
            self._key, b"\0".join((user.encode(), password.encode(), hashed)), hashlib.sha256
        ).digest()
        return hashed, key

    def remembered(self, user: str, password: str) -> bool:
        """Whether the password was found good moments ago.

        No bcrypt: cheap enough for the event loop.
        """
        self.refresh()
        _, key = self._cache_key(user, password)
        until = self._good.get(key) if key is not None else None
        return until is not None and until > self._clock()

    def check(self, user: str, password: str) -> bool:
        """bcrypt (slow on purpose: run it in a thread), or the cache."""
        import bcrypt

        if self.remembered(user, password):
            return True
        hashed, key = self._cache_key(user, password)
        if hashed is None or key is None:
            return False
        candidate = hashed
        if candidate.startswith(b"$2y$"):
            candidate = b"$2b$" + candidate[4:]
        try:
            ok = bcrypt.checkpw(password.encode(), candidate)
        except ValueError:
            ok = False
        if ok:
            now = self._clock()
            with self._lock:
                if self._users.get(user) == hashed:  # not reloaded meanwhile
                    if len(self._good) >= MAX_REMEMBERED:
                        self._good = {k: t for k, t in self._good.items() if t > now}
                    self._good[key] = now + self.cache_ttl
        return ok


def _signature(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def read_shared_key(path: Path) -> bytes:
    """The signing key in a file the operator made (``openssl rand -hex 32``).

    At least 32 bytes in hex, not readable by other users (a bad file is an error, never
    replaced).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise DockyardError(f"{path}: token key: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_mode & 0o077:
            raise DockyardError(
                f"{path}: token key is readable by other users "
                f"(mode {st.st_mode & 0o777:o}): chmod 600 or 400"
            )
        text = f.read(4096)
    try:
        key = bytes.fromhex(text.decode().strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) < 32:
        raise DockyardError(f"{path}: token key must be at least 32 bytes in hex (64 digits)")
    return key


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

    def __init__(self, key_file: Path, ttl: int = TOKEN_TTL, *, create: bool = True):
        """``create``: make the key if ``key_file`` has none; else the file must hold one
        (:func:`read_shared_key`)."""
        self.ttl = ttl
        self._key = self._load_key(key_file) if create else read_shared_key(key_file)

    @staticmethod
    def _load_key(path: Path) -> bytes:
        """The key in ``path``; a new one if there is none (or it is not a key).

        A new key is written to a temp file created 0600 with ``O_EXCL`` (``mkstemp``),
        synced, then linked into place, so the key is never readable by others, not even
        for a moment, and two servers starting at once agree on one key.
        """
        try:
            return bytes.fromhex(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            pass
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        f, temp = atomic.create_temp(path.parent, path.name)
        try:
            with f:
                f.write(key.hex().encode())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:  # a bad key file, or another server was first
                try:
                    return bytes.fromhex(path.read_text().strip())
                except ValueError:
                    os.replace(temp, path)
            atomic.fsync_dir(path.parent)
        finally:
            temp.unlink(missing_ok=True)
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

    def verify_user(self, token: str) -> tuple[str, list[Access]] | None:
        """Whom a valid, unexpired token was issued to ("" anonymous) and what it grants."""
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
            return str(payload["sub"]), [
                Access(a["type"], a["name"], frozenset(a["actions"])) for a in payload["access"]
            ]
        except (ValueError, KeyError, TypeError):
            return None


def grant(requested: list[Access], user: str | None, anonymous_pull: bool) -> list[Access]:
    """What a user gets of what they asked.

    Everything for a known user; pull for anonymous users when the server allows
    anonymous pulls.
    """
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
