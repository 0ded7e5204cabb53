"""The source side of COPY/ADD: trees to copy from, path resolution, globs, filters.

A source tree is the build context as BuildKit receives it (only what .dockerignore
lets through, owners reset to 0:0) or another stage's/image's rootfs (``--from``).
Paths resolve *inside* their tree: a symlink to ``/etc/passwd`` in either means the
tree's own ``/etc/passwd``, never the host's. As in BuildKit (``FollowSymlinks`` for
every local source), the source path itself is followed; symlinks below it are copied
as symlinks.

Globs are resolved as fsutil's ``ResolveWildcards``: the components up to the first
one with a wildcard are resolved (following symlinks), the rest is matched with Go's
``filepath.Match`` against paths under it, walking without following symlinks, a
matched directory not entered. ``--exclude`` and ``--parents`` patterns filter paths
relative to each copied source with patternmatcher rules (the .dockerignore matcher).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import errors
from dockyard.builder.context import BuildContext, Entry
from dockyard.builder.frontend.dockerignore import IgnoreMatcher
from dockyard.builder.frontend.golang import clean_path
from dockyard.errors import DockyardError
from dockyard.runtime import inroot

_MAX_LINKS = 255  # continuity's RootPath limit
_DIR_FD = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_PATH_FD = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FD = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WILDCARDS = "*?["


class NotFound(errors.NotFound):
    """A source path does not exist in its tree (message: the path)."""


# -- trees -----------------------------------------------------------------------------


class Tree:
    """A directory tree to copy from; paths are relative (``""`` is the root)."""

    reset_owner: bool  # the build context: every entry arrives as 0:0

    def kind(self, path: str) -> int | None:
        """``stat.S_IFMT`` of ``path`` (not followed), None if it does not exist."""
        raise NotImplementedError

    def readlink(self, path: str) -> str:
        raise NotImplementedError

    def scan(self, path: str) -> list[tuple[str, int]]:
        """The entries of directory ``path`` as ``(name, kind)``, sorted by name."""
        raise NotImplementedError

    def resolve(self, path: str) -> str | None:
        """``path`` with every symlink resolved inside the tree; None if it leads nowhere.

        Absolute targets start at its root, ``..`` stops there.
        """
        todo = path.split("/")[::-1]
        real: list[str] = []
        links = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if real and self.kind("/".join(real)) != stat.S_IFDIR:
                return None  # ENOTDIR
            if part == "..":
                if real:
                    real.pop()
                continue
            candidate = "/".join((*real, part))
            kind = self.kind(candidate)
            if kind is None:
                return None
            if kind == stat.S_IFLNK:
                links += 1
                if links > _MAX_LINKS:
                    return None
                target = self.readlink(candidate)
                if target.startswith("/"):
                    real.clear()
                todo.extend(target.split("/")[::-1])
                continue
            real.append(part)
        return "/".join(real)

    def open(self) -> int:
        """A directory fd of the root (for :func:`open_parent`)."""
        raise NotImplementedError

    def node(self, real: str, name: str, filters: Filters) -> Node:
        """:func:`build_node` of ``real`` (resolved, existing) copied as ``name``."""
        return build_node(self, real, name, filters)


class ContextTree(Tree):
    """The build context after .dockerignore, as BuildKit's synced copy of it.

    The directories holding re-included paths (``!`` exceptions) exist, owners are 0:0.
    """

    reset_owner = True

    def __init__(self, context: BuildContext):
        self.context = context
        self.entries = context.entries
        # COPYs of one build that copy the same source unfiltered share its node and
        # digest (the context does not change during a build: it is read once)
        self._plain_nodes: dict[tuple[str, str], Node] = {}
        self._digests: dict[tuple[tuple[str, str], ...], str] = {}
        self.children: dict[str, list[str]] = {}
        self.implicit: set[str] = set()  # excluded directories holding included paths
        for path in self.entries:
            if not path:
                continue
            parent, _, name = path.rpartition("/")
            self.children.setdefault(parent, []).append(name)
            while parent and parent not in self.entries and parent not in self.implicit:
                self.implicit.add(parent)
                grand, _, pname = parent.rpartition("/")
                self.children.setdefault(grand, []).append(pname)
                parent = grand
        for names in self.children.values():
            names.sort()

    @classmethod
    def of(cls, context: BuildContext) -> ContextTree:
        """The one tree of ``context`` (stages copying in parallel share it)."""
        with _CONTEXT_TREES_LOCK:
            tree = _CONTEXT_TREES.get(context)
            if tree is None:
                tree = _CONTEXT_TREES[context] = cls(context)
            return tree

    def open(self) -> int:
        return self.context.dir.open_fd("", _DIR_FD)

    def node(self, real: str, name: str, filters: Filters) -> Node:
        if not filters.empty:
            return build_node(self, real, name, filters)
        node = self._plain_nodes.get((real, name))
        if node is None:
            node = self._plain_nodes[real, name] = build_node(self, real, name, filters)
        return node

    def digest(self, sources: list[tuple[str, str, Node]]) -> str:
        """:func:`context_digest` of ``sources``, cached for the build.

        It is computed once per build for the same unfiltered sources (their nodes from
        :meth:`node`).
        """
        key = tuple((real, name) for real, name, _ in sources)
        plain = all(self._plain_nodes.get((real, name)) is node for real, name, node in sources)
        if plain and (known := self._digests.get(key)) is not None:
            return known
        digest = context_digest(self, sources)
        if plain:
            self._digests[key] = digest
        return digest

    def kind(self, path: str) -> int | None:
        entry = self.entries.get(path)
        if entry is not None:
            return stat.S_IFMT(entry.mode)
        return stat.S_IFDIR if path in self.implicit else None

    def entry(self, path: str) -> Entry | None:
        return self.entries.get(path)

    def readlink(self, path: str) -> str:
        return self.entries[path].link or ""

    def scan(self, path: str) -> list[tuple[str, int]]:
        prefix = f"{path}/" if path else ""
        out = []
        for name in self.children.get(path, ()):
            kind = self.kind(prefix + name)
            assert kind is not None
            out.append((name, kind))
        return out


_CONTEXT_TREES: weakref.WeakKeyDictionary[BuildContext, ContextTree] = weakref.WeakKeyDictionary()
_CONTEXT_TREES_LOCK = threading.Lock()


class RootfsTree(Tree):
    """Another stage's or image's filesystem (``COPY --from``): owners kept."""

    reset_owner = False

    def __init__(self, root: Path):
        self.root = Path(root)
        self._fd: int | None = None

    def _root_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.root, _PATH_FD)
        return self._fd

    def open(self) -> int:
        return os.open(self.root, _DIR_FD)  # a mount of dockyard's own: trusted

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def lstat(self, path: str) -> os.stat_result | None:
        """``path``'s own metadata (not followed), None if it does not exist."""
        return inroot.lstat_in_root(self._root_fd(), path)

    def kind(self, path: str) -> int | None:
        st = self.lstat(path)
        return None if st is None else stat.S_IFMT(st.st_mode)

    def file_digest(self, path: str) -> str:
        """sha256 of the regular file ``path`` (not followed if it is a symlink)."""
        fd = inroot.open_in_root(self._root_fd(), path, _READ_FD)
        with open(fd, "rb", buffering=0) as f:  # readinto one reused buffer
            return hashlib.file_digest(f, "sha256").hexdigest()

    def readlink(self, path: str) -> str:
        parent, _, name = path.rpartition("/")
        fd = inroot.open_in_root(self._root_fd(), parent, _PATH_FD)
        try:
            return os.readlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def scan(self, path: str) -> list[tuple[str, int]]:
        try:
            fd = inroot.open_in_root(self._root_fd(), path, _DIR_FD | os.O_NOFOLLOW)
        except OSError:
            return []
        try:
            out = []
            for name in sorted(os.listdir(fd)):
                try:
                    out.append((name, stat.S_IFMT(os.lstat(name, dir_fd=fd).st_mode)))
                except FileNotFoundError:
                    continue
            return out
        finally:
            os.close(fd)

    def resolve(self, path: str) -> str | None:
        try:
            real, missing = inroot.resolve(self._root_fd(), path)
        except (OSError, DockyardError):
            return None
        return None if missing else real


def open_parent(root_fd: int, path: str) -> tuple[int, str | None]:
    """An fd of the directory holding ``path`` and its name there.

    ``path`` is inside the tree whose root is ``root_fd``; for the root itself, a dup of
    it and None.
    """
    if not path:
        return inroot.open_in_root(root_fd, "", _DIR_FD), None
    parent, _, name = path.rpartition("/")
    return inroot.open_in_root(root_fd, parent, _DIR_FD), name


# -- globs -----------------------------------------------------------------------------


def has_wildcards(text: str) -> bool:
    """fsutil's ``containsWildcards``: ``*``, ``?`` or ``[`` not escaped by ``\\``."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in _WILDCARDS:
            return True
        i += 1
    return False


def split_wildcards(path: str) -> tuple[str, str]:
    """``/a/b*/c`` -> (``a``, ``b*/c``): the plain leading components and the rest."""
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        if has_wildcards(part):
            return "/".join(parts[:i]), "/".join(parts[i:])
    return "/".join(parts), ""


def _go_match_pattern(pattern: str) -> str:
    """A ``filepath.Match`` pattern as the .dockerignore matcher reads it: ``**`` is
    just ``*`` for Go, and a leading ``!`` is literal."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if not (ch == "*" and out and out[-1] == "*"):
            out.append(ch)
        i += 1
    text = "".join(out)
    return "\\" + text if text.startswith("!") else text


def glob(tree: Tree, path: str) -> list[str]:
    """Paths matching the glob ``path`` (absolute, cleaned), in Go's walk order.

    They are relative to the tree's root, in the resolved prefix. NotFound if its plain
    prefix does not exist; ValueError for a malformed pattern.
    """
    prefix, pattern = split_wildcards(path)
    base = tree.resolve(prefix)
    if base is None:
        raise NotFound("/" + prefix)
    try:
        matcher = IgnoreMatcher([_go_match_pattern(pattern)])
    except DockyardError:
        raise ValueError(f"syntax error in pattern: {pattern}") from None
    depth = pattern.count("/") + 1
    matches: list[str] = []
    if tree.kind(base) != stat.S_IFDIR:
        return matches

    def walk(real: str, rel: str, level: int) -> None:
        for name, kind in tree.scan(real):
            child_rel = f"{rel}/{name}" if rel else name
            child_real = f"{real}/{name}" if real else name
            if matcher.excluded(child_rel):
                matches.append(child_real)
            elif kind == stat.S_IFDIR and level < depth:
                walk(child_real, child_rel, level + 1)

    walk(base, "", 1)
    return matches


# -- what to copy ----------------------------------------------------------------------


@dataclass
class Node:
    """One entry to copy.

    ``included`` False: a directory only created because something under it is
    (``--parents``/``--exclude`` exceptions), fsutil's delayed parent directories.
    """

    name: str
    kind: int
    included: bool = True
    children: list[Node] = field(default_factory=list)

    def walk(self, rel: str = "") -> Iterator[tuple[str, Node]]:
        """``(path relative to the top, node)`` for everything below this node, depth first.

        A stack, not nested generators: a deep tree costs no more per node.
        """
        stack = [(rel, self.children, 0)]
        while stack:
            base, children, i = stack.pop()
            if i == len(children):
                continue
            child = children[i]
            path = f"{base}/{child.name}" if base else child.name
            yield path, child
            stack.append((base, children, i + 1))
            if child.children:
                stack.append((path, child.children, 0))


def _literal_prefix(pattern: str) -> str:
    for i, ch in enumerate(pattern):
        if ch in "*?[\\":
            return pattern[:i]
    return pattern


@dataclass
class Filters:
    """``--exclude`` patterns and ``--parents`` include patterns, relative to a source."""

    exclude: IgnoreMatcher | None = None
    include: IgnoreMatcher | None = None
    include_prefixes: tuple[str, ...] = ()

    @classmethod
    def make(cls, exclude: tuple[str, ...], include: tuple[str, ...] = ()) -> Filters:
        """ValueError (the matcher's message) for a malformed pattern."""
        try:
            ex = IgnoreMatcher(list(exclude)) if exclude else None
            inc = IgnoreMatcher(list(include)) if include else None
        except DockyardError as e:
            raise ValueError(str(e)) from None
        return cls(ex, inc, tuple(_literal_prefix(p.lstrip("/")) for p in include))

    @property
    def empty(self) -> bool:
        """No pattern: everything under a source is copied."""
        return self.exclude is None and self.include is None

    def may_include_under(self, rel: str) -> bool:
        """Could an include pattern match something under directory ``rel``?"""
        below = rel + "/"
        return any(p.startswith(below) or below.startswith(p) for p in self.include_prefixes)


def build_node(tree: Tree, real: str, name: str, filters: Filters) -> Node:
    """The node of the source at ``real`` (already resolved, existing).

    For a directory, the node also holds what under it gets copied, as fsutil's copier
    decides it.
    """
    kind = tree.kind(real)
    assert kind is not None
    node = Node(name, kind)
    if kind == stat.S_IFDIR:
        if filters.empty and isinstance(tree, ContextTree):
            node.children = _context_children(tree, real)
        else:
            node.children = _children(tree, real, "", filters)
    return node


def _context_children(tree: ContextTree, real: str) -> list[Node]:
    """:func:`_children` of a context directory without filters: everything under it.

    The context's listing is in memory, so no pattern to test and no scan to make (a
    warm rebuild builds this node for every file it copies)."""
    prefix = f"{real}/" if real else ""
    kind_of = tree.kind
    out: list[Node] = []
    for name in tree.children.get(real, ()):
        path = prefix + name
        kind = kind_of(path)
        assert kind is not None
        node = Node(name, kind)
        if kind == stat.S_IFDIR:
            node.children = _context_children(tree, path)
        out.append(node)
    return out


def _children(tree: Tree, real: str, rel: str, filters: Filters) -> list[Node]:
    exclude, include = filters.exclude, filters.include
    exceptions = exclude is not None and exclude.has_exceptions
    out: list[Node] = []
    for name, kind in tree.scan(real):
        child_rel = f"{rel}/{name}" if rel else name
        is_dir = kind == stat.S_IFDIR
        matched = include is None or include.excluded(child_rel, is_dir)
        excluded = exclude is not None and exclude.excluded(child_rel, is_dir)
        included = matched and not excluded
        if not is_dir:
            if included:
                out.append(Node(name, kind))
            continue
        if not included:
            if excluded and not exceptions:
                continue  # fsutil does not even read it
            if not matched and not filters.may_include_under(child_rel):
                continue
            if excluded and not exclude.may_contain(child_rel):  # type: ignore[union-attr]
                continue
        child_real = f"{real}/{name}" if real else name
        children = _children(tree, child_real, child_rel, filters)
        if included or children:
            out.append(Node(name, kind, included, children))
    return out


def context_digest(tree: ContextTree, sources: list[tuple[str, str, Node]]) -> str:
    """A digest of what copying ``sources`` from the context writes.

    ``sources`` are ``(real path, dest name, node)``. The digest covers names, types,
    permissions, link targets and file contents, never times or owners (the context's
    owners are reset to 0:0 anyway).
    """
    records: list[tuple[str, Node, str]] = []  # (label, node, context path)
    for index, (real, name, node) in enumerate(sources):
        records.append((f"{index}\0{name}", node, real))
        # depth first, as Node.walk (a stack too), each level's label and path made once
        stack = [(f"{index}\0{name}/", f"{real}/" if real else "", iter(node.children))]
        while stack:
            label, path, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            child_label, child_path = label + child.name, path + child.name
            records.append((child_label, child, child_path))
            if child.children:
                stack.append((child_label + "/", child_path + "/", iter(child.children)))
    lookup = tree.entries.get
    entries = [lookup(path) for _, _, path in records]
    tree.context.fill_digests([e for e in entries if e is not None and e.digest is None])
    lines = []  # hashed at once: the same digest as line by line, at a fraction of the calls
    middles: dict[tuple[int, int, bool], str] = {}  # kind, mode, included: a few in a context
    for (label, node, path), entry in zip(records, entries, strict=True):
        if entry is not None:
            perm = entry.mode & 0o7777  # stat.S_IMODE
            detail = entry.link if entry.link is not None else (entry.digest or "")
        else:  # an excluded directory holding included paths: only its mode is copied
            st = tree.context.dir.lstat(path)
            if st is None:
                raise NotFound(path)
            perm = stat.S_IMODE(st.st_mode)
            detail = ""
        middle = middles.get((node.kind, perm, node.included))
        if middle is None:
            middle = f"\0{node.kind:o}\0{perm:o}\0{int(node.included)}\0"
            middles[node.kind, perm, node.included] = middle
        lines.append(f"{label}{middle}{detail}\n")
    text = "".join(lines).encode("utf-8", "surrogateescape")
    return "sha256:" + hashlib.sha256(text).hexdigest()


def rootfs_digest(tree: RootfsTree, sources: list[tuple[str, str, Node]]) -> str:
    """A digest of what copying ``sources`` from a stage or image writes.

    ``sources`` are ``(real path, dest name, node)``. The digest covers names, types,
    permissions, owners, device numbers, link targets, hardlinks and file contents,
    never times. Equal digests, equal layers but for mtimes, which BuildKit's content
    cache keys ignore too.
    """
    h = hashlib.sha256()
    for index, (real, name, top) in enumerate(sources):
        first_names: dict[tuple[int, int], str] = {}  # hardlinks stay links per source
        entries = [(f"{index}\0{name}", real, top)]
        entries += [
            (f"{index}\0{name}/{rel}", f"{real}/{rel}" if real else rel, node)
            for rel, node in top.walk()
        ]
        for label, path, node in entries:
            st = tree.lstat(path)
            if st is None:
                raise NotFound(path)
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFLNK:
                detail = tree.readlink(path)
            elif kind != stat.S_IFREG:
                detail = f"{st.st_rdev:x}" if kind in (stat.S_IFCHR, stat.S_IFBLK) else ""
            elif (
                st.st_nlink > 1
                and (first := first_names.setdefault((st.st_dev, st.st_ino), label)) != label
            ):
                detail = f"link\0{first}"
            else:
                detail = tree.file_digest(path)
            record = (
                f"{label}\0{kind:o}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}\0{st.st_gid}"
                f"\0{int(node.included)}\0{detail}\n"
            )
            h.update(record.encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()


def clean_source(path: str) -> str:
    """A local source as BuildKit normalizes it: absolute, cleaned, no trailing ``/``."""
    return clean_path("/" + path)
