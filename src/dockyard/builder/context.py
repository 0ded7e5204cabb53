"""The build context: the files a build may read, with content checksums for cache keys.

Hashing is incremental, like git's index: a stat cache (:class:`ContextIndex`)
remembers each file's (inode, size, mtime, ctime) and digest, so an unchanged 10k-file
context costs a walk of stats, not a read of every byte. It is rewritten only when a
digest was computed or a file went, unsynced (one a crash may have damaged is ignored:
see :mod:`.durability`). A file changed in the tick the walk saw it is *racily clean*
(git's term): a second write in that tick would leave its stamp as it was, so its stamp
is smudged, never matched, and it is read again next time (:func:`racy`); on a filesystem
another machine's clock stamps (NFS, FUSE, ...) every stamp is (:data:`LOCAL_FILESYSTEMS`).
Checksums cover name, type, permissions, owner, link target and content, never times, so
a fresh checkout hits the same cache keys.

Everything is read from the context's directory fd (:class:`.ConfinedDir`), one
component at a time with ``O_NOFOLLOW``: a directory swapped for a symlink while the
context is read is an error, never a way out. Stages run in parallel read one context:
its index is made once, under a lock, and published whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dockyard.builder.confined import ConfinedDir
from dockyard.builder.durability import RecordMarkers
from dockyard.errors import BuildError
from dockyard.runtime import syscalls

PAGE = 4096
HASH_THREADS = 4
INDEX_DIR = Path("build") / "context-index"  # in the store: the stat caches
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

IgnoreCheck = Callable[[str, bool], bool]
"""``(relative path, is_dir) -> excluded?``; paths use ``/`` and have no leading ``./``."""

SMUDGED = -1  # the ctime of a stamp no later stat can match
STAMPS = "racy-smudged"  # what a saved stamp vouches for: older ones were saved unchecked
_CLOCK_REALTIME_COARSE = 5  # Linux's clock id (not in Python's time module)


LOCAL_FILESYSTEMS = frozenset(
    {
        0xEF53,  # ext2/3/4
        0x58465342,  # xfs
        0x9123683E,  # btrfs
        0x01021994,  # tmpfs
        0x858458F6,  # ramfs
        0x794C7630,  # overlayfs
        0x2FC12FC1,  # zfs
        0xF2F52010,  # f2fs
        0xCA451A4E,  # bcachefs
        0x3153464A,  # jfs
        0x52654973,  # reiserfs
        0x3434,  # nilfs2
        0x4D44,  # msdos/vfat (two-second times: see racy)
        0x2011BAB0,  # exfat
        0x5346544E,  # ntfs
        0x7366746E,  # ntfs3
    }
)
"""Filesystems this kernel stamps with its own clock. Elsewhere (NFS, SMB, 9p, FUSE and
virtiofs: a server's or host's clock, maybe behind ours) a same-size change can keep a
stamp :func:`racy` calls settled, so no stamp there is trusted: every file is read."""


def file_clock() -> int:
    """Now, as the kernel stamps a file changed now: its coarse clock (the tick's start),
    never ahead of a later change's time. Tests replace it to place the walk in time."""
    return time.clock_gettime_ns(_CLOCK_REALTIME_COARSE)


def racy(ctime_ns: int, seen_at: int) -> bool:
    """Could a change after ``seen_at`` leave this ctime as it is?

    Yes if it is not before ``seen_at`` (the same tick), or within the granularity of
    a filesystem that rounds its times (told by trailing zeros: whole seconds on some,
    two on FAT), as git's "racily clean" entries. (Linux 6.13's multigrain times give a
    change after a stat a finer ctime on some filesystems; older kernels and the others
    stamp it with the tick.)
    """
    grain = 1
    while grain < 1_000_000_000 and ctime_ns % (grain * 10) == 0:
        grain *= 10
    if grain == 1_000_000_000:
        grain *= 2
    return ctime_ns + grain > seen_at


@dataclass(slots=True)
class Entry:
    """One file, directory or link of the context (after .dockerignore)."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    link: str | None = None
    digest: str | None = None  # sha256 of a regular file's content, filled on demand
    # ino, size, mtime_ns, ctime_ns (any kind); ctime_ns is SMUDGED for a racily-clean entry
    stamp: tuple[int, int, int, int] = (0, 0, 0, 0)
    nlink: int = 1

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    def record(self) -> bytes:
        """What the checksum covers: never times, never inode numbers."""
        detail = self.link if self.link is not None else (self.digest or "")
        return (
            f"{self.path}\0{stat.S_IFMT(self.mode):o}\0{stat.S_IMODE(self.mode):o}\0"
            f"{self.uid}\0{self.gid}\0{detail}\n".encode()
        )


class BuildContext:
    """The context directory ``root`` as the build sees it.

    ``root`` is a path (opened here, and closed by :meth:`close`) or a directory the
    caller holds open. ``ignore`` excludes paths (the .dockerignore rules);
    ``may_contain`` tells whether an excluded directory could still hold an included
    path (a ``!`` exception), so the walk only enters such directories. ``index`` is
    the stat cache (None: no cache).
    """

    def __init__(
        self,
        root: Path | ConfinedDir,
        ignore: IgnoreCheck | None = None,
        may_contain: Callable[[str], bool] | None = None,
        index: ContextIndex | None = None,
    ):
        self._owned = not isinstance(root, ConfinedDir)
        self.dir = ConfinedDir.open(root) if isinstance(root, Path) else root
        self.path = self.dir.path  # for messages and keys: never opened by name
        self._ignore = ignore or (lambda path, is_dir: False)
        self._may_contain = may_contain or (lambda path: False)
        self._index = index
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] | None = None
        self._children: dict[str, list[str]] = {}
        self._cached = index.load(str(self.path)) if index is not None else {}
        self._reused = 0  # digests the walk took from the stat cache
        self._hashed = False  # a digest was computed: the stat cache is out of date
        self._seen_at = 0  # file_clock() before the walk

    def close(self) -> None:
        """Close the context's directory if it was opened here."""
        if self._owned:
            self.dir.close()

    # walking

    @property
    def entries(self) -> dict[str, Entry]:
        """Every included entry by relative path (the root itself is ``""``)."""
        with self._lock:  # parallel stages: one walk, never a half-made index
            if self._entries is None:
                entries: dict[str, Entry] = {}
                children: dict[str, list[str]] = {}
                try:
                    fd = self.dir.open_fd("", _DIR)
                except OSError as e:
                    raise BuildError(f"cannot read build context: {e.strerror}") from None
                try:
                    if syscalls.filesystem_type(fd) in LOCAL_FILESYSTEMS:
                        self._seen_at = file_clock()
                    else:
                        self._seen_at = -(1 << 62)  # no stamp settled: every one smudged
                    entries[""] = self._entry("", os.fstat(fd), None)
                    self._walk(fd, "", entries, children)
                finally:
                    os.close(fd)
                self._children = children
                self._entries = entries
            return self._entries

    def _entry(self, rel: str, st: os.stat_result, link: str | None) -> Entry:
        mode, size, ctime = st.st_mode, st.st_size, st.st_ctime_ns
        stamp = (st.st_ino, size, st.st_mtime_ns, ctime)
        smudged = ctime + 2_000_000_000 > self._seen_at and racy(ctime, self._seen_at)
        if smudged:
            stamp = (st.st_ino, size, st.st_mtime_ns, SMUDGED)
        if not stat.S_ISREG(mode):
            return Entry(rel, mode, st.st_uid, st.st_gid, size, link, None, stamp, st.st_nlink)
        cached = self._cached.get(rel)  # [ino, size, mtime_ns, ctime_ns, digest]
        digest = None
        if not smudged and cached is not None and len(cached) == 5 and stamp == (*cached[:4],):
            digest = cached[4]
            self._reused += 1
        return Entry(rel, mode, st.st_uid, st.st_gid, size, None, digest, stamp, st.st_nlink)

    def _walk(
        self,
        dir_fd: int,
        prefix: str,
        entries: dict[str, Entry],
        children: dict[str, list[str]],
    ) -> None:
        """Add the included entries under the open directory ``dir_fd`` (``prefix``)."""
        listed = children.setdefault(prefix, [])
        try:
            names = os.listdir(dir_fd)
        except OSError as e:
            raise BuildError(f"cannot read build context {prefix or '.'}: {e.strerror}") from None
        base = f"{prefix}/" if prefix else ""
        ignore, lstat, is_dir_mode = self._ignore, os.lstat, stat.S_ISDIR  # hot loop
        for name in names:
            rel = base + name
            try:
                st = lstat(name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue  # removed since it was listed
            is_dir = is_dir_mode(st.st_mode)
            item_excluded = ignore(rel, is_dir)
            if is_dir:
                if item_excluded and not self._may_contain(rel):
                    continue
                sub = _open_subdir(dir_fd, name, rel)
                try:
                    if not item_excluded:
                        entries[rel] = self._entry(rel, os.fstat(sub), None)
                        listed.append(rel)
                    self._walk(sub, rel, entries, children)
                finally:
                    os.close(sub)
                continue
            if item_excluded:
                continue
            link = _readlink(dir_fd, name, rel) if stat.S_ISLNK(st.st_mode) else None
            entries[rel] = self._entry(rel, st, link)
            listed.append(rel)

    def tree(self, path: str) -> list[Entry]:
        """``path`` and everything included under it, in sorted order."""
        entries = self.entries
        if path not in entries:
            return []
        out = [entries[path]]
        for child in sorted(self._children.get(path, ())):
            out += self.tree(child)
        return out

    def footprint(self, paths: Iterable[str]) -> int:
        """About the bytes a copy of the selected paths takes on a filesystem of 4 KiB pages.

        File data rounded up to pages, at least a page per entry.
        """
        total = 0
        for path in paths:
            for entry in self.tree(path):
                total += max(PAGE, -(-entry.size // PAGE) * PAGE) if entry.is_file else PAGE
        return total

    # checksums

    def _hash_file(self, entry: Entry) -> None:
        try:
            fd = self.dir.open_fd(entry.path, _READ)
        except OSError as e:
            raise _changed(entry.path, e) from None
        with open(fd, "rb", buffering=0) as f:  # one reused buffer
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _changed(entry.path)
            entry.digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
        self._hashed = True

    def fill_digests(self, entries: Iterable[Entry]) -> None:
        """Hash the regular files the stat cache did not know, in parallel."""
        missing = [e for e in entries if e.is_file and e.digest is None]
        if len(missing) > 1:
            from concurrent.futures import ThreadPoolExecutor  # not on a warm rebuild

            with ThreadPoolExecutor(HASH_THREADS) as pool:
                list(pool.map(self._hash_file, missing))
        elif missing:
            self._hash_file(missing[0])

    def checksum(self, paths: Iterable[str]) -> str:
        """One digest over the selected paths and everything under them."""
        selected: dict[str, Entry] = {}
        for path in paths:
            for entry in self.tree(path):
                selected[entry.path] = entry
        ordered = [selected[p] for p in sorted(selected)]
        self.fill_digests(ordered)
        h = hashlib.sha256()
        for entry in ordered:
            h.update(entry.record())
        return "sha256:" + h.hexdigest()

    # the stat cache

    def save_index(self) -> None:
        """Remember the digests computed, for the next build of this context.

        A write only if one was computed or a file of the stat cache was not seen again.
        """
        if self._index is None or self._entries is None:
            return
        if not self._hashed and self._reused == len(self._cached):
            return  # every digest came from the stat cache, and all of them were used
        files = {
            e.path: [*e.stamp, e.digest]
            for e in self._entries.values()
            if e.digest is not None and e.is_file and e.stamp[3] != SMUDGED
        }
        if files != self._cached:
            self._index.save(str(self.path), files)


class ContextIndex:
    """The stat cache of one context directory, in the store.

    It is ``build/context-index/<key>.json``, written unsynced (see :mod:`.durability`).
    """

    def __init__(self, store_root: Path, context_root: Path):
        key = hashlib.sha256(str(context_root.resolve()).encode()).hexdigest()[:32]
        self.path = store_root / INDEX_DIR / f"{key}.json"
        self.markers = RecordMarkers(store_root, INDEX_DIR.name)

    def load(self, root: str) -> dict[str, list]:
        """``{path: [ino, size, mtime_ns, ctime_ns, digest]}`` of the context at ``root``.

        Empty if there is none, or a crash may have damaged it.
        """
        if not self.markers.whole(self.path.name):
            return {}
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        ours = isinstance(doc, dict) and doc.get("root") == root and doc.get("stamps") == STAMPS
        files = doc.get("files") if ours else None
        return files if isinstance(files, dict) else {}

    def save(self, root: str, files: dict[str, list]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"root": root, "stamps": STAMPS, "files": files}
        self.markers.write(self.path, json.dumps(doc, separators=(",", ":")).encode())


def _open_subdir(dir_fd: int, name: str, rel: str) -> int:
    """The directory ``name`` in ``dir_fd``, never through a symlink."""
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except OSError as e:
        raise _changed(rel, e) from None


def _readlink(dir_fd: int, name: str, rel: str) -> str:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as e:
        raise _changed(rel, e) from None


def _changed(rel: str, error: OSError | None = None) -> BuildError:
    """A context path that changed kind while the build read it (a directory or file
    swapped for a symlink, say): the build stops rather than follow it."""
    why = f" ({error.strerror})" if error is not None else ""
    return BuildError(f"build context changed while it was read: {rel}{why}")
