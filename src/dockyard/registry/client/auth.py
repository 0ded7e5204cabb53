"""Authorization for one registry host: anonymous, basic, or bearer tokens.

Nothing is sent until the registry challenges us (401 + ``WWW-Authenticate``); from then
on every request carries basic credentials or a bearer token for its scopes. Tokens come
from the challenge's realm (``GET realm?service=&scope=`` with basic credentials, or an
OAuth2 ``POST`` with an identity token) and are cached per scope until ``expires_in``.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass

import httpx

from dockyard.errors import AuthError, RegistryError
from dockyard.registry.client import credentials as creds
from dockyard.registry.client.challenge import Challenge, parse_www_authenticate
from dockyard.registry.client.errors import response_error, transport_error
from dockyard.registry.client.retry import RetryPolicy, call_with_retries, is_transient

CLIENT_ID = "dockyard"
DEFAULT_EXPIRES_IN = 60  # seconds, when the token server does not say (distribution spec)
EARLY_RENEWAL = 5  # seconds before expiry at which a cached token is no longer used


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def delete_scope(repository: str) -> str:
    return f"repository:{repository}:delete"


CATALOG_SCOPE = "registry:catalog:*"


@dataclass(frozen=True)
class _Token:
    value: str
    expires: float  # time.monotonic()

    def fresh(self) -> bool:
        return time.monotonic() < self.expires


class Authenticator:
    """The ``Authorization`` header for each request to one host; thread-safe.

    ``credentials`` None means "look them up in the auth files when first challenged".
    """

    def __init__(
        self,
        host: str,
        http: httpx.Client,
        retry: RetryPolicy,
        credentials: creds.Credentials | None = None,
    ):
        self.host = host
        self._http = http
        self._retry = retry
        self._credentials = credentials
        self._look_up = credentials is None
        self._challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    @property
    def credentials(self) -> creds.Credentials | None:
        if self._look_up:
            self._credentials = creds.lookup(self.host)
            self._look_up = False
        return self._credentials

    def authorization(self, scopes: tuple[str, ...]) -> str | None:
        """The header value for a request needing ``scopes``; None to go anonymous."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "bearer":
            return f"Bearer {self._token(challenge, scopes)}"
        user = self.credentials
        if challenge.scheme == "basic" and user and (user.username or user.password):
            pair = f"{user.username}:{user.password}".encode()
            return f"Basic {base64.b64encode(pair).decode()}"
        return None

    def challenged(
        self, response: httpx.Response, scopes: tuple[str, ...], used: str | None
    ) -> bool:
        """Learn from a 401 answer to a request sent with ``used``.

        True if sending it again with :meth:`authorization` may succeed (a new or refreshed token,
        or credentials)."""
        found = [
            c
            for h in response.headers.get_list("www-authenticate")
            for c in parse_www_authenticate(h)
        ]
        challenge = next((c for c in found if c.scheme == "bearer"), None) or next(
            (c for c in found if c.scheme == "basic"), None
        )
        if challenge is None:
            return False
        with self._lock:
            self._challenge = challenge
            key = " ".join(scopes)
            token = self._tokens.get(key)
            if token is not None and used == f"Bearer {token.value}":
                del self._tokens[key]
        if challenge.scheme == "bearer":
            return True
        return used is None and self.authorization(scopes) is not None

    def _token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        key = " ".join(scopes)
        with self._lock:
            token = self._tokens.get(key)
            if token is None or not token.fresh():
                token = self._fetch_token(challenge, scopes)
                self._tokens[key] = token
            return token.value

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        realm = challenge.realm
        if not realm or not realm.startswith(("https://", "http://")):
            raise AuthError(
                f"registry {self.host}: bearer challenge has no usable realm: {realm!r}"
            )
        what = f"token for {' '.join(scopes) or 'login'} from {realm}"
        user = self.credentials
        service = challenge.params.get("service")

        def request() -> httpx.Request:
            if user and user.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": user.identity_token,
                    "client_id": CLIENT_ID,
                    "scope": " ".join(scopes),
                }
                if service:
                    form["service"] = service
                return self._http.build_request("POST", realm, data=form)
            params: list[tuple[str, str | int | float | bool | None]] = (
                [("service", service)] if service else []
            )
            params += [("scope", s) for s in scopes]
            headers = {}
            if user and (user.username or user.password):
                params += [("offline_token", "true"), ("client_id", CLIENT_ID)]
                pair = f"{user.username}:{user.password}".encode()
                headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
            return self._http.build_request("GET", realm, params=params, headers=headers)

        try:
            response = call_with_retries(self._retry, lambda: self._http.send(request()), what)
        except httpx.TransportError as e:
            tries = self._retry.attempts if is_transient(e) else 1
            raise transport_error(self.host, what, e, tries) from e
        if response.status_code != 200:
            raise response_error(self.host, what, response.status_code, response.content)
        try:
            doc = response.json()
            value = doc.get("token") or doc.get("access_token")
            expires_in = int(doc.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (ValueError, AttributeError, TypeError):
            value = None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"registry {self.host}: {what}: answer holds no token")
        return _Token(value, time.monotonic() + expires_in - EARLY_RENEWAL)
