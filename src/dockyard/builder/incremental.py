"""An edited COPY rebuilt from its last run: the unchanged files linked, the changed written.

A COPY of many build-context files that reruns because a few of them changed would
write every file again, pack them, and compare each with its last run's snapshot to
share inodes. When the last run left a :class:`CopyRecord` (it started from the same
state, ran the same instruction, and noted where each source landed and the stat stamp
of every entry it copied), the new snapshot is instead the last one cloned
(:func:`.treecopy.clone_tree`: every file linked, nothing read) with only what changed
written by the COPY writer, then packed. What changed is told by the context's stamps
(inode, size, mtime, ctime: a write to a file, its mode or its xattrs moves its ctime),
so nothing unchanged is read or compared; an entry whose stamp the context smudged
(racily clean) counts as changed.

The result is the layer a full run gives: the same state below and the same
instruction place every entry where the last run did, and the writer gives each
rewritten entry what a full run gives it; the directories holding a rewritten entry
get their source's times again, as the writer sets them after their children. What
the record cannot vouch for goes the full way (:class:`Unsure`): a directory added,
removed, or with a new mode or xattrs; hardlinks; heredocs, downloads, archives,
an excluded directory holding included paths (``--exclude``, ``.dockerignore``),
``--link``; a path added where the state below may hold something; sources landing in
one another.
"""

from __future__ import annotations

import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.builder.context import SMUDGED, STAMPS, Entry
from dockyard.builder.frontend import records

if TYPE_CHECKING:
    from dockyard.builder.copier import CopyPlan, Placement
    from dockyard.builder.copier.writer import Writer

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SKIPPED_XATTRS = ("security.selinux",)


class Unsure(Exception):
    """The record cannot vouch for this rebuild: run the COPY in full."""


Stamp = tuple[int, int, int, int, int]  # mode, inode, size, mtime_ns, ctime_ns


@records.record
class CopyRecord(records.Record):
    """What a run of a COPY noted for the next one (kept in its lineage record).

    ``parent``: the identity of the state it started from; ``shape``: a digest of its
    inputs but the content of its sources; ``owner``: the ``--chown`` it resolved;
    ``items``: per source, the real path (components) it landed at and the stamp of
    every entry copied, by path relative to the source.
    """

    parent: str
    shape: str
    owner: tuple[int, int] | None
    items: list[tuple[list[str], dict[str, Stamp]]]

    def to_json(self) -> dict[str, Any]:
        return {
            "stamps": STAMPS,
            "parent": self.parent,
            "shape": self.shape,
            "owner": list(self.owner) if self.owner is not None else None,
            "items": [[top, stamps] for top, stamps in self.items],
        }

    @classmethod
    def from_json(cls, doc: Any) -> CopyRecord | None:
        """The record in ``doc``; None if it is not one (or its stamps were saved unchecked)."""
        try:
            if doc["stamps"] != STAMPS:
                return None
            owner = doc["owner"]
            items = [
                ([str(c) for c in top], {str(k): _stamp(v) for k, v in stamps.items()})
                for top, stamps in doc["items"]
            ]
            return cls(
                str(doc["parent"]),
                str(doc["shape"]),
                None if owner is None else (int(owner[0]), int(owner[1])),
                items,
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return None


def _stamp(value: Any) -> Stamp:
    stamp = tuple(map(int, value))
    if len(stamp) != 5:
        raise ValueError(f"a stamp has 5 numbers, not {len(stamp)}")
    return stamp  # type: ignore[return-value]


def _entry_stamp(entry: Entry) -> Stamp:
    ino, size, mtime, ctime = entry.stamp
    return (entry.mode, ino, size, mtime, ctime)


def _sources(plan: CopyPlan) -> list[tuple[str, dict[str, Entry]]] | None:
    """Per item of ``plan``, its real path in the context and its entries by relative
    path; None if an item is not a plain copy of context files without hardlinks."""
    from dockyard.builder.copier.sources import ContextTree

    out = []
    for item in plan.items:
        node = item.node
        if item.kind != "tree" or not isinstance(item.tree, ContextTree) or node is None:
            return None
        if item.unpack and node.kind == stat.S_IFREG:
            return None
        entries = item.tree.entries
        found: dict[str, Entry] = {}
        for rel, child in [("", node), *node.walk()]:
            entry = entries.get(_join(item.real, rel))
            if not child.included or entry is None or stat.S_IFMT(entry.mode) != child.kind:
                return None
            if entry.is_file and entry.nlink > 1:
                return None
            found[rel] = entry
        out.append((item.real, found))
    return out


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def record(plan: CopyPlan, parent: str, shape: str, placement: Placement) -> CopyRecord | None:
    """The record of a full run of ``plan`` that wrote as ``placement`` says; None if
    a rebuild could not use it."""
    sources = _sources(plan)
    if sources is None or any(top is None for top in placement.tops):
        return None
    items = []
    for top, (_, entries) in zip(placement.tops, sources, strict=True):
        assert top is not None
        items.append((list(top), {rel: _entry_stamp(e) for rel, e in entries.items()}))
    return CopyRecord(parent, shape, placement.owner, items)


@dataclass
class _ItemChanges:
    top: list[str]
    real: str  # the source's path in the context
    writes: list[str]  # changed or added non-directories, relative to the source
    added: set[str]
    removed: list[str]
    dirs: list[str]  # directories whose stamp changed (their mode did not)
    modes: dict[str, int]  # the recorded mode of every directory


@dataclass
class Changes:
    """What a rebuild from a record writes: see :func:`changes`."""

    record: CopyRecord  # this run's
    owner: tuple[int, int] | None
    items: list[_ItemChanges]


def changes(last: CopyRecord, plan: CopyPlan, parent: str, shape: str) -> Changes | None:
    """What differs between the sources ``last`` recorded and ``plan``'s, if a rebuild
    from ``last`` can make this run's layer; None if it cannot (see the module doc)."""
    if last.parent != parent or last.shape != shape:
        return None
    sources = _sources(plan)
    if sources is None or len(sources) != len(last.items):
        return None
    items, stamped = [], []
    for (top, old), (real, entries) in zip(last.items, sources, strict=True):
        new = {rel: _entry_stamp(e) for rel, e in entries.items()}
        stamped.append((top, new))
        old_dirs = {rel for rel, s in old.items() if stat.S_ISDIR(s[0])}
        if old_dirs != {rel for rel, s in new.items() if stat.S_ISDIR(s[0])}:
            return None
        item = _ItemChanges(top, real, [], set(), [], [], {r: old[r][0] for r in old_dirs})
        for rel, now in new.items():
            before = old.get(rel)
            if before == now and now[4] != SMUDGED:  # a racily-clean entry always changed
                continue
            if before is not None and stat.S_IFMT(before[0]) != stat.S_IFMT(now[0]):
                return None
            if rel in old_dirs:
                if stat.S_IMODE(before[0]) != stat.S_IMODE(now[0]):  # type: ignore[index]
                    return None
                item.dirs.append(rel)
                continue
            item.writes.append(rel)
            if before is None:
                item.added.add(rel)
        item.removed = [rel for rel in old if rel not in new]
        items.append(item)
    if _overlap(last):
        return None
    return Changes(CopyRecord(parent, shape, last.owner, stamped), last.owner, items)


def _overlap(found: CopyRecord) -> bool:
    """Does a source land in or on another's? Then the order of the writes would tell
    the times of the directories they share."""
    tops = sorted("".join(f"{c}/" for c in top) for top, _ in found.items)  # the root: ""
    return any(b.startswith(a) for a, b in itertools.pairwise(tops))


def _dest(top: list[str], rel: str) -> list[str]:
    return [*top, *rel.split("/")] if rel else list(top)


def rebuild(
    found: Changes, plan: CopyPlan, context_root: int, donor: Path, target: Path, lowers: list[Path]
) -> set[str]:
    """Fill the empty dir ``target`` with what a full run of ``plan`` would leave in its
    upper dir: the snapshot ``donor`` (the last run's) cloned, ``found``'s changes
    written by the COPY writer. Return the paths written or left out (relative).

    ``context_root`` is an fd of the build context, ``lowers`` the snapshot dirs of the
    state below. Unsure if a source changed kind, or an added path exists below."""
    from dockyard.builder.copier.writer import CopyError, Writer
    from dockyard.runtime.treecopy import clone_tree

    for item in found.items:
        for rel in item.added:
            dest = _dest(item.top, rel)
            if any(_below(lower, dest) for lower in lowers):
                raise Unsure(f"/{'/'.join(dest)} may exist below")
    skip = {"/".join(_dest(i.top, rel)) for i in found.items for rel in (*i.writes, *i.removed)}
    try:
        clone_tree(str(donor), str(target), skip=skip)
        with Writer(target, found.owner, plan.chmod) as writer:
            for item in found.items:
                for rel in item.writes:
                    _write(writer, context_root, item, rel)
                touched = set(item.dirs)
                for rel in (*item.writes, *item.removed):
                    if rel:
                        touched.add(rel.rpartition("/")[0])
                for rel in sorted(touched, key=len, reverse=True):  # children first
                    _dir_times(writer, context_root, item, rel, check_xattrs=rel in item.dirs)
    except (CopyError, OSError) as e:  # the full run tells what is wrong, at its line
        raise Unsure(str(e)) from e
    return skip


def _below(lower: Path, comps: list[str]) -> bool:
    """May the snapshot dir ``lower`` hold something at ``comps``? Walked one directory
    at a time, never through a symlink: one on the way counts as yes."""
    fd = os.open(lower, _DIR)
    try:
        for name in comps[:-1]:
            try:
                child = os.open(name, _DIR, dir_fd=fd)
            except FileNotFoundError:
                return False
            except OSError:  # a symlink or a file on the way
                return True
            os.close(fd)
            fd = child
        try:
            os.lstat(comps[-1], dir_fd=fd)
        except FileNotFoundError:
            return False
        except OSError:  # cannot tell
            return True
        return True
    finally:
        os.close(fd)


def _write(writer: Writer, context_root: int, item: _ItemChanges, rel: str) -> None:
    """Copy the source entry ``rel`` of ``item`` as the full run would."""
    from dockyard.builder.copier.sources import open_parent

    parent, name = open_parent(context_root, _join(item.real, rel))
    assert name is not None  # a non-directory, so not the context's root
    try:
        st = os.lstat(name, dir_fd=parent)
        if stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
            raise Unsure(f"{_join(item.real, rel)} changed kind or got hardlinks")
        writer.copy(
            _dest(item.top, rel),
            st,
            content=lambda: os.open(name, _READ, dir_fd=parent),
            link=os.readlink(name, dir_fd=parent) if stat.S_ISLNK(st.st_mode) else None,
            reset_owner=True,
            xattrs_from=f"/proc/self/fd/{parent}/{name}",
        )
    finally:
        os.close(parent)


def _dir_times(
    writer: Writer, context_root: int, item: _ItemChanges, rel: str, *, check_xattrs: bool
) -> None:
    """Give the directory ``rel`` of ``item`` its source's times, which the full run
    sets once its children are in; ``check_xattrs``: its stamp changed, so its xattrs
    may have: Unsure unless neither it nor the clone has any."""
    from dockyard.builder.copier.sources import open_parent

    parent, name = open_parent(context_root, _join(item.real, rel))
    try:
        fd = os.open(name, _DIR, dir_fd=parent) if name is not None else os.dup(parent)
    finally:
        os.close(parent)
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != stat.S_IMODE(item.modes[rel]):
            raise Unsure(f"{_join(item.real, rel)} changed mode")
        target = writer.open_dir(_dest(item.top, rel))
        try:
            if check_xattrs and (_xattrs(fd) or _xattrs(target)):
                raise Unsure(f"{_join(item.real, rel)} has xattrs")
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(target)
    finally:
        os.close(fd)


def _xattrs(fd: int) -> list[str]:
    try:
        return [a for a in os.listxattr(fd) if a not in _SKIPPED_XATTRS]
    except OSError:
        return []
