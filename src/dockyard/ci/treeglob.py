"""Glob patterns matched over an untrusted tree (the workspace) through directory fds.

Steps write the workspace, and a parallel step may turn any directory of it into a
symlink to a host directory while reports and artifacts are read from it. The walk
therefore never uses a path: each directory is opened from its parent's fd with
``O_NOFOLLOW``, so a symlink is never entered, even one swapped in mid-walk (the kernel
refuses it), and what a match hands out is the directory fd holding it and its name.

Patterns are relative, components separated by ``/``:

- ``*``, ``?`` and ``[...]`` match within one name, as :func:`fnmatch.fnmatchcase`;
  names starting with a dot are matched like any other;
- a ``**`` component matches zero or more directories; as the last component it also
  matches everything below (``out/**`` matches ``out`` and all it holds);
- ``.`` (the empty pattern) matches the root itself.

This is :func:`glob.glob` with ``recursive=True`` and ``include_hidden=True``, except
that symlinks are matched as entries (like files) and never entered, whatever they
point to: a link loop (``ln -s .. out/a``) costs one entry, and a walk is bounded by
the tree's real size. Directories deeper than :data:`MAX_DEPTH` are refused.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase

from dockyard.frozen import Frozen

MAX_DEPTH = 256
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Why opening a listed directory may fail: another process replaced or removed it.
CHANGED = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT)


class TreeError(Exception):
    """The tree cannot be walked as asked (too deep)."""


class Match(Frozen):
    """One entry a pattern matched; ``dir_fd`` is open until the walk moves on."""

    __slots__ = ("dir_fd", "name", "path", "stat")
    dir_fd: int  # the directory holding it
    name: str  # its name in that directory ("." for the root itself)
    path: str  # relative to the root
    stat: os.stat_result  # not followed; the entry may change after it was taken

    def __init__(self, dir_fd: int, name: str, path: str, stat: os.stat_result):
        self._set(dir_fd=dir_fd, name=name, path=path, stat=stat)


def no_check() -> None:
    """A ``check`` that never stops a walk."""


def split_pattern(pattern: str) -> tuple[str, ...]:
    """The components of ``pattern``; consecutive ``**`` are one."""
    parts: list[str] = []
    for part in pattern.split("/"):
        if part in ("", ".") or (part == "**" and parts[-1:] == ["**"]):
            continue
        parts.append(part)
    return tuple(parts)


def matches(
    root_fd: int,
    pattern: str,
    *,
    enter_matches: bool = True,
    check: Callable[[], None] = no_check,
) -> Iterator[Match]:
    """The entries under the directory ``root_fd`` that ``pattern`` matches, sorted by path.

    A matched directory is entered only if ``enter_matches`` (its contents can match too). ``check``
    is called before each entry is looked at: it stops the walk by raising (a cancelled run, a
    timeout)."""
    parts = split_pattern(pattern)
    if not parts:
        yield Match(root_fd, ".", ".", os.fstat(root_fd))
        return
    yield from _walk(root_fd, "", _closure(parts, {0}), parts, enter_matches, check)


def _walk(
    dir_fd: int,
    rel: str,
    states: frozenset[int],
    parts: tuple[str, ...],
    enter_matches: bool,
    check: Callable[[], None],
) -> Iterator[Match]:
    """Match the entries of ``dir_fd`` (at ``rel``) from the pattern positions
    ``states`` (indexes into ``parts``; ``len(parts)`` means matched)."""
    for name in sorted(os.listdir(dir_fd)):
        check()
        after = _advance(parts, states, name)
        if not after:
            continue
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            continue  # removed meanwhile
        path = f"{rel}/{name}" if rel else name
        matched = len(parts) in after
        if matched:
            yield Match(dir_fd, name, path, st)
        inner = after - {len(parts)}
        if not inner or not stat.S_ISDIR(st.st_mode) or (matched and not enter_matches):
            continue
        if path.count("/") + 1 >= MAX_DEPTH:
            raise TreeError(f"{path}: deeper than {MAX_DEPTH} directories")
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            if e.errno in CHANGED:
                continue  # no longer a directory: a symlink is never entered
            raise
        try:
            yield from _walk(child, path, inner, parts, enter_matches, check)
        finally:
            os.close(child)


def _advance(parts: tuple[str, ...], states: frozenset[int], name: str) -> frozenset[int]:
    """The pattern positions after an entry ``name`` seen from ``states``."""
    after = set()
    for i in states:
        if i == len(parts):
            continue
        if parts[i] == "**":
            after.add(i)  # one more directory (or, last, anything below)
        elif fnmatchcase(name, parts[i]):
            after.add(i + 1)
    return _closure(parts, after)


def _closure(parts: tuple[str, ...], states: set[int]) -> frozenset[int]:
    """``states`` and the positions a ``**`` matching no directory leads to."""
    todo, done = list(states), set(states)
    while todo:
        i = todo.pop()
        if i < len(parts) and parts[i] == "**" and i + 1 not in done:
            done.add(i + 1)
            todo.append(i + 1)
    return frozenset(done)
