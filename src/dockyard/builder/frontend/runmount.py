"""``RUN --mount``: a mount spec parsed into its typed value, then validated.

As BuildKit's ``commands_runmount.go``, in two steps: :func:`parse_mount` reads the
csv ``key=value`` fields (expanding each value) into a :class:`MountSpec`, checking
only each field on its own (known key, a bool, a number, a known type); then
:meth:`MountSpec.validate` checks the fields against each other and the mount type and
applies BuildKit's defaults, giving a :class:`Mount`. Where BuildKit checks a key
against the type declared *before* it (``size=1m,type=tmpfs`` is refused), the spec
keeps that type for the second step. A spec with faults of both kinds reports its
field faults first.

Imported only by Dockerfiles that mount something (see :class:`.commands.Run`).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.builder.frontend import golang
from dockyard.builder.frontend.records import Record, record
from dockyard.builder.frontend.suggest import did_you_mean

_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING_MODES = ("shared", "private", "locked")
_MOUNT_KEYS = (  # in BuildKit's order, which decides between equally near suggestions
    *("type", "from", "source", "target", "readonly", "id", "sharing", "required", "size"),
    *("mode", "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env"),
)
_KEYS_OF_TYPE = {"required": ("secret", "ssh"), "size": ("tmpfs",)}
_RAM_SIZE = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@record
class Mount(Record):
    """One ``RUN --mount``, validated, with BuildKit's defaults applied.

    ``id`` is the cache id (default: the cleaned target), the secret id (``source`` or
    ``id`` or the target's base name) or the ssh id (default ``default``). ``target``
    for a secret defaults to ``/run/secrets/<id>`` unless the secret goes to ``env``
    only; for ssh to ``/run/buildkit/ssh_agent.<n>``. ``from_`` is a stage name/index or
    an image ("" = the build context, or an empty dir for a cache). ``read_only``
    defaults to True except for cache and tmpfs. Secrets and ssh sockets default to
    uid/gid 0 and mode 0400/0600; a cache dir gets uid/gid/mode only when given.
    ``size`` is the tmpfs limit in bytes (0: none). ``target`` may be relative to the
    working directory: see :meth:`.commands.Run.mount_target`.
    """

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    read_only: bool = True
    id: str = ""
    sharing: str = "shared"
    required: bool = False
    env: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0


@dataclass(slots=True, eq=False)
class MountSpec:
    """A ``--mount`` value as written, each field typed; None: not given."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    read_only: bool | None = None  # None: by type (read-only unless cache or tmpfs)
    id: str = ""
    sharing: str | None = None
    required: bool = False
    env: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int = 0
    # keys that belong to some types only, each with the type declared before it
    typed_keys: list[tuple[str, str]] = field(default_factory=list)

    def validate(self, ssh_index: int = 0) -> Mount:
        """The mount this spec asks for.

        ValueError (BuildKit's message) when its fields do not go together. ``ssh_index`` numbers
        the ssh sockets of one RUN."""
        for key, kind in self.typed_keys:
            if kind not in _KEYS_OF_TYPE[key]:
                raise ValueError(f"unexpected key '{key}' for mount type '{kind}'")
        kind = self.type
        if kind not in ("secret", "ssh", "cache"):
            for key in ("mode", "uid", "gid"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} not allowed for {golang.quote(kind)} type mounts")
        read_only = kind not in ("cache", "tmpfs") if self.read_only is None else self.read_only
        mount_id, target, mode = self.id, self.target, self.mode
        if kind == "secret":
            if self.from_:
                raise ValueError("secret mount should not have a from")
            if self.sharing is not None:
                raise ValueError("secret mount should not define sharing")
            if not (self.source or target or mount_id):
                raise ValueError("invalid secret mount. one of source, target required")
            if self.source and mount_id:
                raise ValueError("both source and id can't be set")
            mount_id = self.source or mount_id or posixpath.basename(target)
            if self.env is None and not target:
                target = "/run/secrets/" + posixpath.basename(mount_id)
            mode = 0o400 if mode is None else mode
        if self.sharing is not None and kind != "cache":
            raise ValueError(f"invalid cache sharing set for {kind} mount")
        if kind == "cache" and not mount_id:
            mount_id = golang.clean_path(target)
        if kind == "ssh":
            if self.source:
                raise ValueError("ssh does not support source")
            mode = 0o600 if mode is None else mode
            mount_id = mount_id or "default"
            target = target or f"/run/buildkit/ssh_agent.{ssh_index}"
        owner = 0 if kind in ("secret", "ssh") else None
        return Mount(
            type=kind,
            target=target,
            source=self.source,
            from_=self.from_,
            read_only=read_only,
            id=mount_id,
            sharing=self.sharing or "shared",
            required=self.required,
            env=self.env,
            mode=mode,
            uid=owner if self.uid is None else self.uid,
            gid=owner if self.gid is None else self.gid,
            size=self.size,
        )


def parse_mount(spec: str, expand: Callable[[str], str]) -> MountSpec:
    """One ``--mount`` value (csv ``key=value``) as BuildKit reads it at dispatch.

    Each value is expanded with ``expand``; ValueError for a field that is wrong on its own."""
    m = MountSpec()
    for fld in _csv_fields(spec):
        key, eq, value = fld.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                m.read_only = True
            elif key in ("readwrite", "rw"):
                m.read_only = False
            elif key == "required":
                m.typed_keys.append((key, m.type))
                m.required = True
            else:
                raise ValueError(f"invalid field '{fld}' must be a key=value pair")
            continue
        value = expand(value)
        if key == "type":
            if value.lower() not in _MOUNT_TYPES:
                message = f"unsupported mount type {golang.quote(value)}"
                raise ValueError(did_you_mean(message, value, _MOUNT_TYPES))
            m.type = value.lower()
        elif key == "from":
            m.from_ = value
        elif key in ("source", "src"):
            m.source = value
        elif key in ("target", "dst", "destination"):
            m.target = value
        elif key in ("readonly", "ro"):
            m.read_only = _parse_bool_field(key, value)
        elif key in ("readwrite", "rw"):
            m.read_only = not _parse_bool_field(key, value)
        elif key == "required":
            m.typed_keys.append((key, m.type))
            m.required = _parse_bool_field(key, value)
        elif key == "size":
            m.typed_keys.append((key, m.type))
            try:
                m.size = _ram_in_bytes(value)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        elif key == "id":
            m.id = value
        elif key == "sharing":
            if value.lower() not in _SHARING_MODES:
                message = f"unsupported sharing value {golang.quote(value)}"
                raise ValueError(did_you_mean(message, value, _SHARING_MODES))
            m.sharing = value.lower()
        elif key in ("mode", "uid", "gid"):
            try:
                setattr(m, key, golang.parse_uint(value, 8 if key == "mode" else 10))
            except ValueError:
                raise ValueError(f"invalid value {value} for {key}") from None
        elif key == "env":
            m.env = value
        else:
            raise ValueError(did_you_mean(f"unexpected key '{key}' in '{fld}'", key, _MOUNT_KEYS))
    return m


def mount_from(spec: str) -> str:
    """The ``from=`` value of a mount spec, checked the way BuildKit checks at parse time."""
    source = ""
    for fld in _csv_fields(spec):
        key, eq, value = fld.partition("=")
        if eq and key.lower() == "from":
            dollar = value.find("$")
            if dollar not in (-1, len(value) - 1):
                raise ValueError(
                    "'from' doesn't support variable expansion, define alias stage instead"
                )
            source = value
    return source


def _csv_fields(spec: str) -> list[str]:
    import csv  # only for RUN --mount: not on every build's import

    try:
        rows = list(csv.reader([spec], strict=True))
    except csv.Error as e:
        raise ValueError(f"failed to parse csv mounts: {e}") from None
    return rows[0] if rows else [""]


def _parse_bool_field(key: str, value: str) -> bool:
    try:
        return golang.parse_bool(value)
    except ValueError:
        raise ValueError(f"invalid value for {key}: {value}") from None


def _ram_in_bytes(text: str) -> int:
    """docker/go-units RAMInBytes: ``64m``, ``1.5GiB``, ``512`` (binary multiples)."""
    m = re.fullmatch(r"(.*[0-9. ])?([^0-9. ]*)", text, re.DOTALL)
    if not m or not m.group(1):
        raise ValueError(text)
    number, suffix = m.group(1), m.group(2)
    if number.endswith(" "):
        number = number[:-1]
    if not re.fullmatch(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", number):
        raise ValueError(text)
    size = float(number)
    if size < 0:
        raise ValueError(text)
    suffix = suffix.lower()
    if not suffix or suffix == "b":
        return int(size)
    if len(suffix) > 3 or suffix[0] not in _RAM_SIZE or suffix[1:] not in ("", "b", "ib"):
        raise ValueError(text)
    return int(size * _RAM_SIZE[suffix[0]])
