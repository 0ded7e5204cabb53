"""``registries.toml``: per-registry settings, in the shape of containers-registries.conf.

```toml
[[registry]]
location = "registry.lan:5000"
insecure = true      # plain HTTP or TLS without certificate verification
```

The first file found wins: ``$DOCKYARD_CONFIG_DIR/registries.toml`` (or
``~/.config/dockyard/registries.toml`` when that variable is unset), then
``/etc/dockyard/registries.toml``. ``location`` is a ``host[:port]``, or ``*.domain`` to
match every host under a domain.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import RegistryError

SYSTEM_FILE = Path("/etc/dockyard/registries.toml")


@dataclass(frozen=True)
class RegistryEntry:
    location: str
    insecure: bool = False

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
        return (exact or [e for e in self.registries if e.matches(host)] or [None])[0]

    def insecure(self, host: str) -> bool:
        entry = self.entry(host)
        return entry is not None and entry.insecure


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
        out.append(RegistryEntry(location, insecure))
    return RegistriesConfig(tuple(out))


def load() -> RegistriesConfig:
    """The first ``registries.toml`` found (see :func:`config_files`), else an empty one."""
    for path in config_files():
        try:
            text = path.read_text()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise RegistryError(f"{path}: cannot read: {e.strerror}") from None
        return parse(text, str(path))
    return RegistriesConfig()
