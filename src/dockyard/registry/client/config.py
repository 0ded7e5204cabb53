"""``registries.toml``: per-registry settings, in the shape of containers-registries.conf.

```toml
[[registry]]
location = "registry.lan:5000"
insecure = true      # plain HTTP or TLS without certificate verification

[[registry]]
location = "docker.io"
[[registry.mirror]]  # pulls try each mirror in order, then docker.io itself
location = "mirror.lan:5000/hub"   # host[:port][/namespace]: docker.io/x/y -> hub/x/y
insecure = true
pull-from-mirror = "all"           # or "digest-only", "tag-only"
```

The first file found wins: ``$DOCKYARD_CONFIG_DIR/registries.toml`` (or
``~/.config/dockyard/registries.toml`` when that variable is unset), then
``/etc/dockyard/registries.toml``. ``location`` is a ``host[:port]``, or ``*.domain`` to
match every host under a domain. A registry's ``mirror-by-digest-only = true`` makes
all its mirrors ``digest-only``. Mirrors serve pulls only; pushes always go to the
registry itself.

Mirrors given on the command line (``dockyard --registry-mirror HOST=URL``, or
``$DOCKYARD_REGISTRY_MIRROR``) come before the file's, see :func:`parse_mirror_option`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import RegistryError

SYSTEM_FILE = Path("/etc/dockyard/registries.toml")
PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


@dataclass(frozen=True)
class Mirror:
    """Where pulls of a registry's images may be served from instead.

    ``location`` is ``host[:port]`` with an optional namespace path put in front of
    every repository; ``tls_verify`` as for a client (None: the usual rules for the
    mirror's host); ``pull_from_mirror`` says which pulls use it: ``all``, only pulls by
    ``digest-only`` (which a mirror cannot fake), or ``tag-only``.
    """

    location: str
    tls_verify: bool | None = None
    pull_from_mirror: str = "all"

    @property
    def host(self) -> str:
        return self.location.split("/", 1)[0]

    @property
    def namespace(self) -> str:
        """The path in front of repositories on the mirror ('' for none)."""
        return self.location.partition("/")[2].strip("/")

    def serves(self, by_digest: bool) -> bool:
        """Does this mirror serve a pull by digest (``by_digest``) or by tag?"""
        if self.pull_from_mirror == "digest-only":
            return by_digest
        if self.pull_from_mirror == "tag-only":
            return not by_digest
        return True


@dataclass(frozen=True)
class RegistryEntry:
    location: str
    insecure: bool = False
    mirrors: tuple[Mirror, ...] = ()

    def matches(self, host: str) -> bool:
        if self.location.startswith("*."):
            return host.split(":", 1)[0].endswith(self.location[1:])
        return self.location == host


@dataclass(frozen=True)
class RegistriesConfig:
    """The parsed file: a list of registry entries (empty when there is no file)."""

    registries: tuple[RegistryEntry, ...] = ()

    def entry(self, host: str) -> RegistryEntry | None:
        """The entry for ``host``: an exact location beats a wildcard."""
        exact = [e for e in self.registries if e.location == host]
        found = exact or [e for e in self.registries if e.matches(host)]
        return found[0] if found else None

    def insecure(self, host: str) -> bool:
        entry = self.entry(host)
        return entry is not None and entry.insecure

    def mirrors(self, host: str) -> tuple[Mirror, ...]:
        """The mirrors of registry ``host`` (its canonical name: ``docker.io``), in order."""
        entry = self.entry(host)
        return entry.mirrors if entry is not None else ()


def config_files() -> list[Path]:
    """Where ``registries.toml`` is looked for, in order."""
    user_dir = os.environ.get("DOCKYARD_CONFIG_DIR")
    user = Path(user_dir) if user_dir else Path.home() / ".config" / "dockyard"
    return [user / "registries.toml", SYSTEM_FILE]


def parse(text: str, where: str = "registries.toml") -> RegistriesConfig:
    """Parse the file's text; raise :class:`RegistryError` naming ``where`` if it is invalid."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"{where}: invalid TOML: {e}") from None
    entries = doc.get("registry", [])
    if not isinstance(entries, list):
        raise RegistryError(f"{where}: 'registry' must be an array of tables ([[registry]])")
    out = []
    for i, entry in enumerate(entries):
        location = entry.get("location") if isinstance(entry, dict) else None
        insecure = entry.get("insecure", False) if isinstance(entry, dict) else None
        if not isinstance(location, str) or not location or not isinstance(insecure, bool):
            raise RegistryError(
                f"{where}: registry[{i}] needs a 'location' string and a boolean 'insecure'"
            )
        assert isinstance(entry, dict)
        mirrors = _parse_mirrors(entry, f"{where}: registry[{i}] ({location})")
        out.append(RegistryEntry(location, insecure, mirrors))
    return RegistriesConfig(tuple(out))


def _parse_mirrors(entry: dict, where: str) -> tuple[Mirror, ...]:
    """A ``[[registry]]``'s ``[[registry.mirror]]`` tables."""
    by_digest_only = entry.get("mirror-by-digest-only", False)
    if not isinstance(by_digest_only, bool):
        raise RegistryError(f"{where}: 'mirror-by-digest-only' must be a boolean")
    tables = entry.get("mirror", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RegistryError(f"{where}: 'mirror' must be an array of tables ([[registry.mirror]])")
    mirrors = []
    for n, table in enumerate(tables):
        here = f"{where}: mirror[{n}]"
        location = table.get("location")
        insecure = table.get("insecure", False)
        pull_from = table.get("pull-from-mirror", "digest-only" if by_digest_only else "all")
        if not isinstance(location, str) or not _valid_location(location):
            raise RegistryError(f"{here}: 'location' must be HOST[:PORT][/NAMESPACE]")
        if not isinstance(insecure, bool):
            raise RegistryError(f"{here}: 'insecure' must be a boolean")
        if pull_from not in PULL_FROM_MIRROR:
            raise RegistryError(
                f"{here}: 'pull-from-mirror' must be one of {', '.join(PULL_FROM_MIRROR)}"
            )
        if by_digest_only and pull_from != "digest-only":
            raise RegistryError(
                f"{here}: 'pull-from-mirror = {pull_from}' contradicts the registry's "
                "'mirror-by-digest-only = true'"
            )
        mirrors.append(Mirror(location.strip("/"), False if insecure else None, pull_from))
    return tuple(mirrors)


def _valid_location(location: str) -> bool:
    host, _, namespace = location.strip("/").partition("/")
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-._:[]")
    return (
        bool(host)
        and set(host.lower()) <= allowed
        and "//" not in namespace
        and set(namespace) <= allowed | {"/"}
    )


def load() -> RegistriesConfig:
    """The first ``registries.toml`` found (see :func:`config_files`), else an empty one.

    Parsed once per process, and again only when the file is another (a new inode,
    size or times): every pull and every client asks, so asking costs one ``stat``.
    """
    global _loaded
    for path in config_files():
        try:
            signature = _signature(os.stat(path))
        except FileNotFoundError:
            continue
        except OSError as e:
            raise RegistryError(f"{path}: cannot read: {e.strerror}") from None
        loaded = _loaded
        if loaded is not None and loaded[:2] == (path, signature):
            return loaded[2]
        try:
            with open(path, "rb") as f:
                signature = _signature(os.fstat(f.fileno()))
                text = f.read().decode()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise RegistryError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise RegistryError(f"{path}: not UTF-8 text: {e.reason}") from None
        config = parse(text, str(path))
        _loaded = (path, signature, config)
        return config
    return RegistriesConfig()


_loaded: tuple[Path, tuple[int, ...], RegistriesConfig] | None = None  # path, stat, parsed


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# Mirrors from the command line: ``dockyard --registry-mirror HOST=URL`` (repeatable).

_command_line_mirrors: dict[str, tuple[Mirror, ...]] = {}


def parse_mirror_option(text: str) -> tuple[str, Mirror]:
    """``HOST=URL`` as (the registry's canonical host, its mirror).

    ``URL`` is ``http://`` (plain HTTP), ``https://`` (verified TLS) or bare (the usual rules), then
    ``host[:port][/namespace]``; ``HOST`` is a registry as in references (``docker.io``)."""
    from dockyard.registry.client.credentials import canonical_host

    host, sep, url = text.partition("=")
    scheme, has_scheme, rest = url.partition("://")
    if not has_scheme:
        scheme, rest = "", url
    if (
        not sep
        or not host
        or "/" in host
        or scheme not in ("", "http", "https")
        or not _valid_location(rest)
    ):
        raise RegistryError(
            f"registry mirror {text!r}: expected HOST=URL, e.g. docker.io=http://127.0.0.1:5001"
        )
    tls_verify = {"http": False, "https": True}.get(scheme)
    return canonical_host(host.lower()), Mirror(rest.strip("/"), tls_verify)


def use_command_line_mirrors(options: list[str] | tuple[str, ...]) -> None:
    """Make ``--registry-mirror`` values the mirrors every pull of this process tries first.

    The values are ``HOST=URL``; raise :class:`RegistryError` for a malformed one."""
    mirrors: dict[str, list[Mirror]] = {}
    for text in options:
        for item in text.replace(",", " ").split():
            host, mirror = parse_mirror_option(item)
            mirrors.setdefault(host, []).append(mirror)
    _command_line_mirrors.clear()
    _command_line_mirrors.update({h: tuple(m) for h, m in mirrors.items()})


def mirrors_for(registry: str) -> tuple[Mirror, ...]:
    """Every mirror of ``registry`` (a reference's canonical host), command line first."""
    return _command_line_mirrors.get(registry, ()) + load().mirrors(registry)
