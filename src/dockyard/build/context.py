"""The build context: the files a build may read, with content checksums for cache keys.

Hashing is incremental, like git's index: a stat cache remembers each file's
(inode, size, mtime, ctime) and digest, so an unchanged 10k-file context costs a walk
of stats, not a read of every byte. Checksums cover name, type, permissions, owner,
link target and content, never times, so a fresh checkout hits the same cache keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import BuildError
from dockyard.layout import atomic

PAGE = 4096
HASH_THREADS = 4

IgnoreCheck = Callable[[str, bool], bool]
"""``(relative path, is_dir) -> excluded?``; paths use ``/`` and have no leading ``./``."""


@dataclass
class Entry:
    """One file, directory or link of the context (after .dockerignore)."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    link: str | None = None
    digest: str | None = None  # sha256 of a regular file's content, filled on demand
    stamp: tuple[int, int, int, int] = (0, 0, 0, 0)  # ino, size, mtime_ns, ctime_ns

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

    ``ignore`` excludes paths (the .dockerignore rules); ``may_contain`` tells whether an
    excluded directory could still hold an included path (a ``!`` exception), so the
    walk only enters such directories. ``index_file`` is the stat cache (None: no cache).
    """

    def __init__(
        self,
        root: Path,
        ignore: IgnoreCheck | None = None,
        may_contain: Callable[[str], bool] | None = None,
        index_file: Path | None = None,
    ):
        self.root = root.resolve()
        if not self.root.is_dir():
            raise BuildError(f"build context {root} is not a directory")
        self._ignore = ignore or (lambda path, is_dir: False)
        self._may_contain = may_contain or (lambda path: False)
        self._index_file = index_file
        self._entries: dict[str, Entry] | None = None
        self._children: dict[str, list[str]] = {}
        self._cached = self._load_index()

    # walking

    @property
    def entries(self) -> dict[str, Entry]:
        """Every included entry by relative path (the root itself is ``""``)."""
        if self._entries is None:
            self._entries = {}
            self._children = {}
            root_stat = os.lstat(self.root)
            self._entries[""] = self._entry("", root_stat, None)
            self._walk(self.root, "")
        return self._entries

    def _entry(self, rel: str, st: os.stat_result, link: str | None) -> Entry:
        entry = Entry(rel, st.st_mode, st.st_uid, st.st_gid, st.st_size, link)
        if stat.S_ISREG(st.st_mode):
            entry.stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            cached = self._cached.get(rel)
            if cached and tuple(cached[:4]) == entry.stamp:
                entry.digest = cached[4]
        return entry

    def _walk(self, directory: Path, prefix: str) -> None:
        children = self._children.setdefault(prefix, [])
        try:
            scan = list(os.scandir(directory))
        except OSError as e:
            raise BuildError(f"cannot read build context {directory}: {e.strerror}") from None
        for item in scan:
            rel = f"{prefix}/{item.name}" if prefix else item.name
            st = item.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            item_excluded = self._ignore(rel, is_dir)
            if is_dir:
                if item_excluded and not self._may_contain(rel):
                    continue
                if not item_excluded:
                    self._entries[rel] = self._entry(rel, st, None)
                    children.append(rel)
                self._walk(Path(item.path), rel)
                continue
            if item_excluded:
                continue
            link = os.readlink(item.path) if stat.S_ISLNK(st.st_mode) else None
            self._entries[rel] = self._entry(rel, st, link)
            children.append(rel)

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
        """About the bytes a copy of the selected paths takes on a filesystem of 4 KiB
        pages: file data rounded up to pages, at least a page per entry."""
        total = 0
        for path in paths:
            for entry in self.tree(path):
                total += max(PAGE, -(-entry.size // PAGE) * PAGE) if entry.is_file else PAGE
        return total

    # checksums

    def _hash_file(self, entry: Entry) -> None:
        with open(self.root / entry.path, "rb", buffering=0) as f:  # one reused buffer
            entry.digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()

    def fill_digests(self, entries: Iterable[Entry]) -> None:
        """Hash the regular files the stat cache did not know, in parallel."""
        missing = [e for e in entries if e.is_file and e.digest is None]
        if len(missing) > 1:
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

    def _load_index(self) -> dict[str, list]:
        if self._index_file is None:
            return {}
        try:
            doc = json.loads(self._index_file.read_bytes())
        except (OSError, ValueError):
            return {}
        return doc.get("files", {}) if doc.get("root") == str(self.root) else {}

    def save_index(self) -> None:
        """Remember the digests computed, for the next build of this context."""
        if self._index_file is None or self._entries is None:
            return
        files = {
            e.path: [*e.stamp, e.digest]
            for e in self._entries.values()
            if e.is_file and e.digest is not None
        }
        if files == self._cached:
            return
        self._index_file.parent.mkdir(parents=True, exist_ok=True)
        doc = {"root": str(self.root), "files": files}
        atomic.write_bytes(self._index_file, json.dumps(doc, separators=(",", ":")).encode())


def index_file_for(store_root: Path, context_root: Path) -> Path:
    """Where the stat cache of a context directory lives in the store."""
    key = hashlib.sha256(str(context_root.resolve()).encode()).hexdigest()[:32]
    return store_root / "build" / "context-index" / f"{key}.json"
