"""Resolving a USER spec (``uid[:gid]`` or names) against a rootfs's passwd and group files.

The rules are runc's and docker's (``GetExecUser``): an empty spec is root; a name must
exist in ``/etc/passwd``; a numeric uid need not (its gid is then 0 and its home ``/``);
an explicit group replaces the passwd gid and disables supplementary groups, which
otherwise are the ``/etc/group`` entries listing the user by name. The primary gid is
always the first supplementary group too (containerd's ``WithAdditionalGIDs``, which
docker and BuildKit use: ``id`` shows ``groups=0(root),10(wheel)`` for root).

This is the one place users are resolved: RUN steps, ``dockyard run`` and pipeline
steps all run containers through :mod:`.container`, which calls it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dockyard.errors import ContainerError
from dockyard.frozen import Frozen
from dockyard.runtime import inroot

MAX_ID = 2**31 - 1


class User(Frozen):
    """Who the container's process runs as."""

    __slots__ = ("additional_gids", "gid", "home", "uid")
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str

    def __init__(
        self, uid: int = 0, gid: int = 0, additional_gids: tuple[int, ...] = (), home: str = "/"
    ):
        self._set(uid=uid, gid=gid, additional_gids=additional_gids, home=home)


def resolve_user(
    spec: str,
    passwd: str | None,
    group: str | None,
    extra_groups: Sequence[str] = (),
) -> User:
    """Resolve the user ``spec`` given the text of ``/etc/passwd`` and ``/etc/group``.

    ``spec`` is ``""``, ``user``, ``uid``, ``user:group``, ``uid:gid``...; the files are None if the
    rootfs lacks them. ``extra_groups`` (names or gids) are added as supplementary groups."""
    user_arg, _, group_arg = spec.partition(":")
    users = _entries(passwd, 7)
    groups = _entries(group, 4)

    uid, gid, home, name = 0, 0, "/", ""
    if user_arg:
        found = [u for u in users if _matches(u, user_arg)]
    else:
        found = [u for u in users if int(u[2]) == 0]
    if found:
        name, uid, gid, home = found[0][0], int(found[0][2]), int(found[0][3]), found[0][5]
    elif user_arg:
        if not _numeric(user_arg):
            raise ContainerError(f"unable to find user {user_arg}: no matching entries in passwd")
        uid = _checked_id(user_arg, "uid")

    supplementary: list[int] = []
    if group_arg:
        matches = [g for g in groups if _matches(g, group_arg)]
        if matches:
            gid = int(matches[0][2])
        elif _numeric(group_arg):
            gid = _checked_id(group_arg, "gid")
        else:
            raise ContainerError(f"unable to find group {group_arg}: no matching entries in group")
    elif name:
        supplementary = [int(g[2]) for g in groups if name in g[3].split(",")]

    for extra in extra_groups:
        matches = [g for g in groups if extra in (g[0], g[2])]
        if matches:
            extra_gid = int(matches[0][2])
        elif _numeric(extra):
            extra_gid = _checked_id(extra, "gid")
        else:
            raise ContainerError(f"unable to find group {extra}")
        if extra_gid not in supplementary:
            supplementary.append(extra_gid)
    if gid not in supplementary:
        supplementary.insert(0, gid)
    return User(uid, gid, tuple(supplementary), home or "/")


def resolve_in_rootfs(
    rootfs: str | os.PathLike[str], spec: str, extra_groups: Sequence[str] = ()
) -> User:
    """:func:`resolve_user` with the rootfs's own ``/etc/passwd`` and ``/etc/group``.

    They are read safely (their symlinks resolve inside the rootfs)."""
    passwd = _text(inroot.read_file(rootfs, "/etc/passwd"))
    group = _text(inroot.read_file(rootfs, "/etc/group"))
    return resolve_user(spec, passwd, group, extra_groups)


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "surrogateescape")


def _entries(text: str | None, fields: int) -> list[list[str]]:
    """The colon-separated lines of a passwd/group file, padded to ``fields`` fields;
    lines without a valid id are skipped (NIS ``+`` lines, comments, garbage)."""
    entries = []
    for line in (text or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) < 3 or not _numeric(parts[2]) or int(parts[2]) > MAX_ID:
            continue
        if fields == 7 and (len(parts) < 4 or not _numeric(parts[3]) or int(parts[3]) > MAX_ID):
            continue
        entries.append(parts + [""] * (fields - len(parts)))
    return entries


def _checked_id(text: str, kind: str) -> int:
    value = int(text)
    if value > MAX_ID:
        raise ContainerError(f"{kind} {value} is out of range")
    return value


def _matches(entry: list[str], arg: str) -> bool:
    """A numeric ``arg`` is always an id, never a name (as runc does)."""
    return int(entry[2]) == int(arg) if _numeric(arg) else entry[0] == arg


def _numeric(text: str) -> bool:
    return text.isascii() and text.isdigit()
