"""Registry credentials from docker's ``config.json`` and containers' ``auth.json``.

Files are searched in order (:func:`auth_files`); the first that knows the host wins. In a
file, ``credHelpers[host]`` comes first, then a plain ``auths`` entry (``auth`` is base64
``user:password``; ``identitytoken`` is an OAuth2 refresh token), then ``credsStore``.
Helpers are docker's credential helper programs, ``docker-credential-NAME get|store|erase``.
Docker Hub's key is ``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import AuthError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_HELPER_TOKEN_USER = "<token>"  # a helper's Username for "Secret is an identity token"
_HELPER_TIMEOUT = 60


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity (refresh) token."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)


def canonical_host(host: str) -> str:
    """``docker.io`` for every spelling of Docker Hub, else ``host`` unchanged."""
    return "docker.io" if host in _HUB_HOSTS else host


def config_key(host: str) -> str:
    """The ``auths`` key (and credential helper server URL) docker uses for ``host``."""
    return DOCKER_HUB_KEY if canonical_host(host) == "docker.io" else host


def _key_host(key: str) -> str:
    """The host a config key names: ``https://h:5000/v1/`` -> ``h:5000``."""
    return canonical_host(key.split("://", 1)[-1].split("/", 1)[0])


def auth_files() -> list[Path]:
    """The credential files whose variables are set, in order.

    ``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``,
    ``$XDG_RUNTIME_DIR/containers/auth.json``."""
    env = os.environ
    paths = []
    if env.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("DOCKER_CONFIG"):
        paths.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    paths.append(Path.home() / ".docker" / "config.json")
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    return list(dict.fromkeys(paths))


def login_file() -> Path:
    """Where :func:`store` writes.

    The first of ``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``.
    """
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(os.environ["REGISTRY_AUTH_FILE"])
    if os.environ.get("DOCKER_CONFIG"):
        return Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    return Path.home() / ".docker" / "config.json"


def lookup(host: str) -> Credentials | None:
    """The credentials for ``host`` from the first auth file that has some, or None."""
    for path in auth_files():
        doc = _load(path)
        if doc is not None and (found := from_config(doc, host, str(path))):
            return found
    return None


def from_config(doc: dict[str, Any], host: str, where: str = "config.json") -> Credentials | None:
    """The credentials one parsed config file holds for ``host``, or None."""
    host = canonical_host(host)
    if helper := _cred_helper(doc, host, where):
        return helper_get(helper, config_key(host))
    for key, entry in _section(doc, "auths", where).items():
        found = _decode_entry(entry, f"{where}: auths[{key!r}]") if _key_host(key) == host else None
        if found:
            return found
    store = _creds_store(doc)
    return helper_get(store, config_key(host)) if store else None


def from_auth_config(text: str, where: str) -> dict[str, Credentials]:
    """The credentials of a docker-config-style JSON document given as data, by host.

    The document is a pipeline's ``registry_auth`` secret; its ``auths`` entries (``auth``,
    ``identitytoken``) count. Credential helpers are refused: they would hand out the host's own
    logins. Errors name ``where`` and never quote the document."""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("auths"), dict):
        raise AuthError(f'{where}: expected a docker config, a JSON object with "auths"')
    if doc.get("credsStore") or doc.get("credHelpers"):
        raise AuthError(f"{where}: credential helpers (credsStore, credHelpers) are refused")
    found: dict[str, Credentials] = {}
    for key, entry in doc["auths"].items():
        credentials = _decode_entry(entry, f"{where}: auths[{key!r}]")
        if credentials is not None:
            found[_key_host(key)] = credentials
    return found


def _cred_helper(doc: dict[str, Any], host: str, where: str) -> str | None:
    for key, name in _section(doc, "credHelpers", where).items():
        if _key_host(key) == host and isinstance(name, str) and name:
            return name
    return None


def _creds_store(doc: dict[str, Any]) -> str | None:
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _section(doc: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    section = doc.get(name) or {}
    if not isinstance(section, dict):
        raise AuthError(f"{where}: {name!r} must be an object")
    return section


def _decode_entry(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise AuthError(f"{where}: expected an object")
    username = password = ""
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            raise AuthError(f"{where}: 'auth' is not base64 of user:password") from None
        username, _, password = decoded.partition(":")
    token = entry.get("identitytoken") or ""
    if token:
        return Credentials(username, identity_token=token)
    if username or password:
        return Credentials(username, password)
    return None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise AuthError(f"{path}: cannot read: {e.strerror}") from None
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError as e:
        raise AuthError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise AuthError(f"{path}: expected a JSON object")
    return doc


def _run_helper(name: str, action: str, data: str) -> subprocess.CompletedProcess[str] | None:
    """Run ``docker-credential-NAME ACTION``; None when it says the credentials are missing."""
    program = f"docker-credential-{name}"
    try:
        result = subprocess.run(
            [program, action],
            input=data,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
        )
    except FileNotFoundError:
        raise AuthError(f"credential helper {program} is configured but not on PATH") from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {program} {action}: no answer within 60s") from None
    if result.returncode != 0:
        message = (result.stdout.strip() or result.stderr.strip()).splitlines()
        text = message[-1] if message else f"exit status {result.returncode}"
        if "credentials not found" in text.lower():
            return None
        raise AuthError(f"credential helper {program} {action} failed: {text}")
    return result


def helper_get(name: str, server: str) -> Credentials | None:
    """Ask a credential helper for ``server``'s credentials."""
    result = _run_helper(name, "get", server)
    if result is None:
        return None
    try:
        answer = json.loads(result.stdout)
        username, secret = answer.get("Username", ""), answer.get("Secret", "")
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper docker-credential-{name}: invalid answer") from None
    if not secret:
        return None
    if username == _HELPER_TOKEN_USER:
        return Credentials(identity_token=secret)
    return Credentials(username, secret)


def store(host: str, credentials: Credentials) -> Path:
    """Save credentials for ``host`` in :func:`login_file` (or its credential helper)."""
    path = login_file()
    doc = _load(path) or {}
    key = config_key(host)
    auths = _drop_host(doc, host, str(path))
    if helper := _cred_helper(doc, canonical_host(host), str(path)) or _creds_store(doc):
        user = credentials.username
        secret = credentials.password
        if credentials.identity_token:
            user, secret = _HELPER_TOKEN_USER, credentials.identity_token
        payload = {"ServerURL": key, "Username": user, "Secret": secret}
        _run_helper(helper, "store", json.dumps(payload))
    else:
        pair = f"{credentials.username}:{credentials.password}".encode()
        entry = {"auth": base64.b64encode(pair).decode()}
        if credentials.identity_token:
            entry["identitytoken"] = credentials.identity_token
        auths[key] = entry
    doc["auths"] = auths
    write_atomic(path, doc)
    return path


def erase(host: str) -> bool:
    """Forget ``host``'s credentials in :func:`login_file` and its helper; True if any were."""
    path = login_file()
    doc = _load(path)
    if doc is None:
        return False
    before = dict(_section(doc, "auths", str(path)))
    doc["auths"] = _drop_host(doc, host, str(path))
    erased = before != doc["auths"]
    if helper := _cred_helper(doc, canonical_host(host), str(path)) or _creds_store(doc):
        erased = _run_helper(helper, "erase", config_key(host)) is not None or erased
    if before != doc["auths"]:
        write_atomic(path, doc)
    return erased


def _drop_host(doc: dict[str, Any], host: str, where: str) -> dict[str, Any]:
    """``auths`` without any entry for ``host``."""
    host = canonical_host(host)
    return {k: v for k, v in _section(doc, "auths", where).items() if _key_host(k) != host}


def write_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write JSON to ``path`` by temp file + rename, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(doc, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
