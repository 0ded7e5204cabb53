"""What a working container is on disk: ``container.json``, written atomically.

``head`` is the image manifest the container stands on (None: ``scratch``), ``chain``
the chain IDs of its layers, bottom first: the snapshots under its upper dir. A commit
moves both to the new image. ``pending`` is a commit between naming its image and
freezing the upper dir into a snapshot; whoever next locks the container finishes it
(see :func:`.commit.finish_pending`), so a killed commit loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import ContainerError
from dockyard.files import atomic

RECORD_FILE = "container.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def check_name(name: str) -> str:
    """``name`` if it can name a container (docker's rule: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``)."""
    if not _NAME.match(name):
        raise ContainerError(
            f"invalid container name {name!r}: use letters, digits, '_', '.' and '-' "
            "(not first), at most 128"
        )
    return name


@dataclass
class Record:
    """One working container."""

    id: str
    name: str
    image: str  # what it was created from, as the user wrote it ("scratch")
    head: dict[str, Any] | None  # the image manifest's descriptor (None: scratch)
    chain: list[str]  # snapshots below the upper dir, bottom first
    platform: dict[str, Any]  # for a commit from scratch
    created: str
    committed: str | None = None  # the image it was last committed as
    mounted: bool = False  # left mounted for the host by ``container mount``
    pending: dict[str, Any] | None = None  # see the module doc
    command: list[str] = field(default_factory=list)  # the last one run in it
    exit_code: int | None = None  # ...and how it ended

    @classmethod
    def load(cls, directory: Path) -> Record:
        path = directory / RECORD_FILE
        try:
            data = json.loads(path.read_bytes())
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except FileNotFoundError:
            raise ContainerError(f"{directory.name}: no container record ({path})") from None
        except (ValueError, TypeError) as e:
            raise ContainerError(f"{path}: not a container record: {e}") from None

    def save(self, directory: Path) -> None:
        data = json.dumps(dataclasses.asdict(self), indent=2) + "\n"
        atomic.write_bytes(directory / RECORD_FILE, data.encode())
