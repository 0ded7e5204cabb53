"""Server settings: command-line flags over a config file (TOML, or YAML if PyYAML is there).

```toml
addr = "0.0.0.0:5000"
root = "/var/lib/dockyard-registry"
tag_ttl = 300            # seconds a mirrored tag is served before asking upstream again
read_only = false
gc_grace = 3600          # seconds: younger blobs survive gc
header_timeout = 20      # seconds for a request's line and headers to arrive in full
body_timeout = 30        # a request body must bring body_min_rate bytes/s over each
body_min_rate = 1024     #   body_timeout seconds, else it is cut off (408)
max_uploads_per_client = 16   # upload requests in flight per client address (else 429)
allow_upstreams = ["ghcr.io"] # hosts a client may name with ?ns= (cached as ns/<host>/...)
storage = "s3://bucket/prefix"   # keep everything in an S3-compatible object store, not root
s3_endpoint = "http://127.0.0.1:8333"  # (credentials: the AWS environment variables/files)
s3_region = "us-east-1"
redirect = false         # with storage: answer blob GETs with a 307 to a pre-signed URL

[auth]
htpasswd = "/etc/dockyard/htpasswd"   # bcrypt entries (htpasswd -B)
mode = "basic"                        # or "token": the server is its own token realm
anonymous_pull = false
failure_limit = 10                    # failed logins per client address, and per user, a minute
token_key = "/etc/dockyard/token.key" # token mode: the signing key (64 hex digits, mode 600),
                                      #   the same file on every replica; needed with storage

[tls]
cert = "/etc/dockyard/tls.crt"
key = "/etc/dockyard/tls.key"

[[upstream]]
name = "quay"                # HOST/quay/org/repo mirrors quay.io/org/repo
url = "https://quay.io"
username = "robot"           # optional; else docker's config.json is consulted
password = "..."
tag_ttl = 60                 # optional, overrides the global one
```
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dockyard.errors import DockyardError
from dockyard.registry.server import slowclients
from dockyard.registry.server.names import valid_name

DEFAULT_ADDR = "127.0.0.1:5000"
DEFAULT_TAG_TTL = 300.0
DEFAULT_GC_GRACE = 3600.0
DEFAULT_UPLOAD_MAX_AGE = 7 * 24 * 3600.0
HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class ConfigError(DockyardError):
    """A bad flag or config file entry."""


@dataclass(frozen=True)
class UpstreamConfig:
    """One mirrored registry: requests for ``<name>/<path>`` go to ``<url>/v2/<path>``."""

    name: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tag_ttl: float | None = None
    insecure: bool = False
    trusted: bool = True  # False: named by a client (?ns=), see nshosts

    @property
    def host(self) -> str:
        """``host[:port]`` as references and the client spell it."""
        return urlsplit(self.url).netloc

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def is_docker_hub(self) -> bool:
        return self.host in HUB_HOSTS

    @property
    def canonical_host(self) -> str:
        """The registry part of a reference to this upstream (``docker.io`` for Hub)."""
        return "docker.io" if self.is_docker_hub else self.host


@dataclass(frozen=True)
class ServerConfig:
    root: Path
    addr: str = DEFAULT_ADDR
    upstreams: tuple[UpstreamConfig, ...] = ()
    tag_ttl: float = DEFAULT_TAG_TTL
    htpasswd: Path | None = None
    auth_mode: str = "basic"  # with an htpasswd file: "basic" or "token"
    token_realm: str | None = None  # default: <scheme>://<Host header>/token
    token_key: Path | None = None  # default: <root>/auth/token.key, made on first start
    anonymous_pull: bool = False
    auth_failure_limit: int = 10  # failed logins per client, and per user, per minute (burst)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    read_only: bool = False
    gc_grace: float = DEFAULT_GC_GRACE
    upload_max_age: float = DEFAULT_UPLOAD_MAX_AGE
    upstream_attempts: int = 2  # tries per upstream request: fail over to stale fast
    access_log: bool = False
    header_timeout: float = slowclients.DEFAULT_HEADER_TIMEOUT
    body_timeout: float = slowclients.DEFAULT_BODY_TIMEOUT
    body_min_rate: float = slowclients.DEFAULT_BODY_MIN_RATE
    max_uploads_per_client: int = slowclients.DEFAULT_MAX_UPLOADS_PER_CLIENT
    allow_upstreams: tuple[str, ...] = ()  # hosts a client may name with ?ns=; "*": any
    storage: str | None = None  # s3://BUCKET/PREFIX: an object store instead of root
    s3_endpoint: str | None = None  # default: AWS's (or AWS_ENDPOINT_URL)
    s3_region: str | None = None
    redirect: bool = False  # with storage: blob GETs answered by a pre-signed URL (307)

    def upstream(self, name: str) -> UpstreamConfig | None:
        return next((u for u in self.upstreams if u.name == name), None)


def parse_upstream(text: str) -> UpstreamConfig:
    """``NAME=URL`` as ``--upstream`` takes it."""
    name, sep, url = text.partition("=")
    if not sep:
        raise ConfigError(f"--upstream {text!r}: expected NAME=URL (quay=https://quay.io)")
    return make_upstream(name.strip(), url.strip(), where=f"--upstream {text!r}")


def make_upstream(name: str, url: str, where: str, **kw: Any) -> UpstreamConfig:
    if not valid_name(name):
        raise ConfigError(f"{where}: {name!r} is not a valid repository name prefix")
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: {url!r} is not an http(s) URL")
    if parts.path.strip("/") not in ("", "v2"):
        raise ConfigError(f"{where}: {url!r}: a registry URL has no path")
    return UpstreamConfig(name, f"{parts.scheme}://{parts.netloc}", **kw)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected seconds (a number, or '5m', '2h', '30s')")
    if isinstance(value, str):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        text = value.strip()
        try:
            if text and text[-1] in units:
                return float(text[:-1]) * units[text[-1]]
            return float(text)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a duration") from None
    return float(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number")
    return float(value)


def load_file(path: Path) -> dict[str, Any]:
    """Parse a config file: YAML for ``.yml``/``.yaml``, TOML otherwise."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if path.suffix in (".yml", ".yaml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: YAML needs PyYAML; use TOML instead") from None
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a table at the top level")
    return doc


def from_document(doc: dict[str, Any], where: str, base: ServerConfig) -> ServerConfig:
    """``base`` with the settings a parsed config document gives."""
    known = {
        "addr",
        "root",
        "tag_ttl",
        "read_only",
        "gc_grace",
        "upload_max_age",
        "auth",
        "tls",
        "upstream",
        "upstreams",
        "access_log",
        "header_timeout",
        "body_timeout",
        "body_min_rate",
        "max_uploads_per_client",
        "allow_upstreams",
        "storage",
        "s3_endpoint",
        "s3_region",
        "redirect",
    }
    unknown = set(doc) - known
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s): {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    if "addr" in doc:
        changes["addr"] = str(doc["addr"])
    if "root" in doc:
        changes["root"] = Path(doc["root"])
    for key in ("tag_ttl", "gc_grace", "upload_max_age", "header_timeout", "body_timeout"):
        if key in doc:
            changes[key] = _seconds(doc[key], f"{where}: {key}")
    if "body_min_rate" in doc:
        changes["body_min_rate"] = _number(doc["body_min_rate"], f"{where}: body_min_rate")
    if "max_uploads_per_client" in doc:
        value = doc["max_uploads_per_client"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: max_uploads_per_client must be a whole number >= 1")
        changes["max_uploads_per_client"] = value
    if "allow_upstreams" in doc:
        hosts = doc["allow_upstreams"]
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ConfigError(f"{where}: allow_upstreams must be a list of hosts")
        changes["allow_upstreams"] = tuple(hosts)
    for key in ("storage", "s3_endpoint", "s3_region"):
        if key in doc:
            if not isinstance(doc[key], str):
                raise ConfigError(f"{where}: {key} must be a string")
            changes[key] = doc[key]
    for key in ("read_only", "access_log", "redirect"):
        if key in doc:
            if not isinstance(doc[key], bool):
                raise ConfigError(f"{where}: {key} must be true or false")
            changes[key] = doc[key]
    auth = doc.get("auth") or {}
    if not isinstance(auth, dict):
        raise ConfigError(f"{where}: [auth] must be a table")
    if "htpasswd" in auth:
        changes["htpasswd"] = Path(auth["htpasswd"])
    if "mode" in auth:
        if auth["mode"] not in ("basic", "token"):
            raise ConfigError(f"{where}: auth.mode must be 'basic' or 'token'")
        changes["auth_mode"] = auth["mode"]
    if "realm" in auth:
        changes["token_realm"] = str(auth["realm"])
    if "token_key" in auth:
        changes["token_key"] = Path(auth["token_key"])
    if "anonymous_pull" in auth:
        changes["anonymous_pull"] = bool(auth["anonymous_pull"])
    if "failure_limit" in auth:
        limit = auth["failure_limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"{where}: auth.failure_limit must be a whole number above 0")
        changes["auth_failure_limit"] = limit
    tls = doc.get("tls") or {}
    if not isinstance(tls, dict):
        raise ConfigError(f"{where}: [tls] must be a table")
    if "cert" in tls:
        changes["tls_cert"] = Path(tls["cert"])
    if "key" in tls:
        changes["tls_key"] = Path(tls["key"])
    entries = doc.get("upstream", doc.get("upstreams", []))
    if isinstance(entries, dict):  # [upstreams.quay] url = ... form
        entries = [
            {"name": k, **(v if isinstance(v, dict) else {"url": v})} for k, v in entries.items()
        ]
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'upstream' must be a list of tables ([[upstream]])")
    upstreams = list(base.upstreams)
    for i, entry in enumerate(entries):
        at = f"{where}: upstream[{i}]"
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not (isinstance(entry.get("url"), str))
        ):
            raise ConfigError(f"{at}: needs 'name' and 'url' strings")
        extra = set(entry) - {"name", "url", "username", "password", "tag_ttl", "insecure"}
        if extra:
            raise ConfigError(f"{at}: unknown setting(s): {', '.join(sorted(extra))}")
        upstream = make_upstream(
            entry["name"],
            entry["url"],
            at,
            username=entry.get("username"),
            password=entry.get("password"),
            tag_ttl=_seconds(entry["tag_ttl"], f"{at}: tag_ttl") if "tag_ttl" in entry else None,
            insecure=bool(entry.get("insecure", False)),
        )
        upstreams = [u for u in upstreams if u.name != upstream.name] + [upstream]
    changes["upstreams"] = tuple(upstreams)
    return replace(base, **changes)


def check(config: ServerConfig) -> ServerConfig:
    """Raise :class:`ConfigError` for settings that cannot work together."""
    names = [u.name for u in config.upstreams]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"upstream {name!r} is given twice")
        for other in names:
            if other != name and other.startswith(name + "/"):
                raise ConfigError(f"upstream {other!r} lies inside upstream {name!r}")
    if config.allow_upstreams:
        from dockyard.registry.server import nshosts

        for host in config.allow_upstreams:
            if host != nshosts.ANY_HOST and nshosts.normalize_host(host) is None:
                raise ConfigError(f"allowed upstream {host!r}: expected HOST[:PORT] or '*'")
        for name in names:
            if name == nshosts.NS_PREFIX or name.startswith(nshosts.NS_PREFIX + "/"):
                raise ConfigError(
                    f"upstream {name!r}: {nshosts.NS_PREFIX}/ holds the caches of the hosts "
                    "clients name with ?ns= (allowed upstreams): choose another name"
                )
    if config.storage is not None:
        parse_storage_url(config.storage)
    elif config.s3_endpoint or config.s3_region:
        raise ConfigError("s3_endpoint and s3_region need storage = 's3://BUCKET/PREFIX'")
    elif config.redirect:
        raise ConfigError("redirect needs storage = 's3://BUCKET/PREFIX' (files have no URL)")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("TLS needs both a certificate and a key")
    if config.auth_mode == "token" and not config.htpasswd:
        raise ConfigError("token auth needs an htpasswd file for its users")
    if config.auth_mode == "token" and config.storage and not config.token_key:
        raise ConfigError(
            "token auth with storage needs auth.token_key (--token-key): a key file that "
            "every replica shares (kept out of the bucket); make one with "
            "`openssl rand -hex 32 > FILE; chmod 600 FILE`"
        )
    if config.tag_ttl < 0:
        raise ConfigError("tag_ttl must not be negative")
    for key in ("header_timeout", "body_timeout"):
        if not 0 < getattr(config, key) < math.inf:
            raise ConfigError(f"{key} must be a positive number of seconds")
    if not 0 <= config.body_min_rate < math.inf:
        raise ConfigError("body_min_rate must be a number of bytes per second, 0 or more")
    return config


def parse_storage_url(url: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of ``s3://BUCKET[/PREFIX]``.

    The prefix is without slashes at its ends, maybe empty.
    """
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    valid_bucket = 3 <= len(bucket) <= 63 and all(c.isalnum() or c in "-." for c in bucket)
    if parts.scheme != "s3" or not valid_bucket or parts.query or parts.fragment:
        raise ConfigError(f"storage {url!r}: expected s3://BUCKET/PREFIX")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise ConfigError(f"storage {url!r}: the prefix has an empty, '.' or '..' part")
    return bucket, prefix
