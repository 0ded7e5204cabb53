"""COPY and ADD, executed into a container rootfs exactly as BuildKit executes them.

Two steps, so that the build cache can be probed between them:

- :func:`plan_copy` resolves the sources (globs, ``--exclude``, ``--parents``, symlinks
  inside their tree), downloads ADD's URLs that have no ``--checksum``, and returns a
  :class:`CopyPlan` whose ``key`` is what the cache key needs (content digests for
  context sources and downloads; for ``--from`` sources the resolved paths: the source
  stage's identity stands for their content).
- :func:`execute_copy` writes the plan into a rootfs (the overlay's merged dir).

:func:`make_dirs` is WORKDIR's directory creation, which follows the same rules.

BuildKit semantics kept here (fsutil ``copy.Copy`` as dockerfile2llb calls it): the
source path itself is followed if it is a symlink, symlinks below it are copied as
symlinks; a directory source copies its contents; the destination is made first when
it ends with ``/``, else its parent; a non-directory copied onto an existing directory
lands inside it; directories made on the way get mode 0755 (or the octal ``--chmod``)
and the ``--chown`` owner; copied entries keep mode bits and times, take ``--chmod``
(directories too) and the ``--chown`` owner, else the source's owner (0:0 for the build
context); hardlinks within one source stay hardlinks; a file never replaces a directory
nor a directory a file. A glob matching nothing copies nothing (BuildKit allows empty
wildcards). See the submodules for sources, destination, archives and downloads.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.builder.context import BuildContext
from dockyard.builder.copier import remote
from dockyard.builder.copier.modes import Chmod, resolve_owner
from dockyard.builder.copier.sources import (
    ContextTree,
    Filters,
    Node,
    NotFound,
    RootfsTree,
    Tree,
    clean_source,
    glob,
    has_wildcards,
    open_parent,
    rootfs_digest,
)
from dockyard.builder.frontend.commands import Add, Copy
from dockyard.builder.frontend.golang import clean_path
from dockyard.errors import BuildError, DockyardError

if TYPE_CHECKING:
    import tempfile

    from dockyard.builder.copier.writer import Writer

__all__ = ["CopyPlan", "Placement", "execute_copy", "make_dirs", "plan_copy"]

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_SUBDIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class _Item:
    """One thing to copy, in the order BuildKit copies them (sources, then heredocs)."""

    kind: str  # "tree" | "inline" | "url"
    name: str  # its name inside a destination directory
    tree: Tree | None = None
    real: str = ""  # its path in the tree, symlinks resolved
    node: Node | None = None
    data: bytes = b""
    url: str = ""
    download: remote.Download | None = None
    unpack: bool = False  # ADD: extracted if it turns out to be an archive


@dataclass
class CopyPlan:
    """A COPY/ADD with its sources resolved.

    ``key`` (JSON-able) identifies its result given the destination state and workdir,
    but for the content of ``--from`` sources (see :meth:`from_digest`).
    ``context_paths``: the context paths the sources resolved to; ``from_sources``: the
    sources in a ``--from`` stage or image. Holds downloads in a temp dir until
    :meth:`close` (or garbage collection).
    """

    instr: Copy | Add
    key: dict[str, Any]
    context_paths: list[str]
    chmod: Chmod | None
    items: list[_Item] = field(default_factory=list)
    from_sources: list[tuple[str, str, Node]] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = None
    _tmp_parent: Path | None = None

    def from_digest(self, source_root: Path) -> str:
        """The content digest of what the plan copies from ``source_root``, for the cache key.

        ``source_root`` is its ``--from`` stage or image, mounted.
        """
        tree = RootfsTree(source_root)
        try:
            return rootfs_digest(tree, self.from_sources)
        finally:
            tree.close()

    def inline_bytes(self) -> int | None:
        """The bytes of the heredocs the plan copies, if all else it copies is build-context files.

        That is, if it copies nothing else but build-context files as they are (no
        archive extracted, no download, no ``--from``); else None.
        """
        total = 0
        for item in self.items:
            if item.kind == "inline":
                total += len(item.data)
            elif item.kind != "tree" or item.unpack or not isinstance(item.tree, ContextTree):
                return None
        return total

    def close(self) -> None:
        """Remove downloads (the plan cannot be executed afterwards if it had any)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> CopyPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _download_dir(self) -> Path:
        if self._tmp is None:
            import tempfile  # here: with shutil, random, bz2, lzma, ~5 ms a plan without ADD skips

            self._tmp = tempfile.TemporaryDirectory(prefix="dockyard-add-", dir=self._tmp_parent)
        return Path(self._tmp.name)


@dataclass
class Placement:
    """Where :func:`execute_copy` wrote: the ``--chown`` owner it resolved (None: the
    sources'), and per item of the plan the real path (components) its source landed
    at, None for heredocs, downloads and unpacked archives."""

    owner: tuple[int, int] | None
    tops: list[list[str] | None] = field(default_factory=list)


def plan_copy(
    instr: Copy | Add,
    context: BuildContext | None,
    source_root: Path | None,
    *,
    tmp_dir: Path | None = None,
) -> CopyPlan:
    """Resolve ``instr``'s sources, from a ``--from`` stage or image or the build context.

    From ``source_root`` (the ``--from`` stage or image, mounted) if given, else from
    the build ``context``. ``tmp_dir`` holds downloads. BuildError (at the instruction's
    line) for missing sources and invalid flags.
    """
    add = isinstance(instr, Add)
    parents = isinstance(instr, Copy) and instr.parents
    unpack_flag = instr.unpack if isinstance(instr, Add) else None
    try:
        chmod = Chmod.parse(instr.chmod)
        filters = Filters.make(instr.exclude)
    except ValueError as e:
        raise instr.error(str(e)) from None
    plan = CopyPlan(instr, {}, [], chmod, _tmp_parent=tmp_dir)
    tree: Tree | None = None
    try:
        for source in instr.sources:
            if remote.is_git(source):
                raise instr.error(
                    "ADD of git repositories is not supported yet"
                    if add
                    else "source can't be a git ref for COPY"
                )
            if remote.is_url(source):
                if not add:
                    raise instr.error("source can't be a URL for COPY")
                plan.items.append(_url_item(plan, source))
                continue
            if tree is None:
                tree = _tree(instr, context, source_root)
            unpack = add if unpack_flag is None else unpack_flag
            plan.items += _local_items(instr, tree, source, filters, parents, unpack)
        for inline in instr.inline:
            data = inline.data.encode("utf-8", "surrogateescape")
            plan.items.append(_Item("inline", posixpath.basename(inline.path), data=data))
        plan.key = _key(plan, parents, unpack_flag)
    except BaseException:
        plan.close()
        raise
    finally:
        if isinstance(tree, RootfsTree):
            tree.close()  # execute_copy opens its own fd: no fd outlives a plan
    return plan


def _tree(instr, context: BuildContext | None, source_root: Path | None) -> Tree:
    if source_root is not None:
        return RootfsTree(source_root)
    if context is None:
        raise instr.error(f"{instr.keyword} needs a build context or --from")
    return ContextTree.of(context)


def _url_item(plan: CopyPlan, url: str) -> _Item:
    instr = plan.instr
    assert isinstance(instr, Add)
    item = _Item("url", remote.file_name(url), url=url, unpack=bool(instr.unpack))
    if instr.checksum:
        try:
            remote.parse_checksum(instr.checksum)
        except ValueError as e:
            raise instr.error(str(e)) from None
    else:  # the content digest is the cache key: fetch it now, as BuildKit does
        item.download = _download(plan, url)
    return item


def _download(plan: CopyPlan, url: str) -> remote.Download:
    instr = plan.instr
    checksum = instr.checksum if isinstance(instr, Add) else ""
    try:
        return remote.download(url, plan._download_dir(), checksum)
    except (remote.DownloadError, ValueError) as e:
        raise instr.error(str(e)) from None


def _local_items(
    instr, tree: Tree, source: str, filters: Filters, parents: bool, unpack: bool
) -> list[_Item]:
    """The items one local source (maybe a glob) stands for, as dockerfile2llb and
    fsutil resolve it."""
    required = None
    if parents:  # the part after an optional "/./" pivot is kept under the destination
        parent, pivot, pattern = source.partition("/./")
        if not pivot:
            parent, pattern = "/", source
        pattern = clean_source(pattern).lstrip("/")
        if not has_wildcards(parent) and not has_wildcards(pattern):
            required = clean_path(f"{clean_source(parent)}/{pattern}")
        try:
            filters = Filters.make(tuple(instr.exclude), (pattern,))
        except ValueError as e:
            raise instr.error(str(e)) from None
        source = parent
    path = clean_source(source)
    if required is not None and tree.resolve(required.lstrip("/")) is None:
        raise _not_found(instr, required)
    if has_wildcards(path):
        try:
            matches = glob(tree, path)
        except NotFound as e:
            raise instr.error(f"lstat {e}: no such file or directory") from None
        except ValueError as e:
            raise instr.error(str(e)) from None
    else:
        matches = [path.lstrip("/")]
    items = []
    for match in matches:
        real = tree.resolve(match)
        if real is None:
            if match == path.lstrip("/"):
                raise _not_found(instr, path)
            raise instr.error(f"lstat /{match}: no such file or directory")
        name = posixpath.basename(match) or "/"
        node = tree.node(real, name, filters)
        items.append(_Item("tree", name, tree=tree, real=real, node=node, unpack=unpack))
    return items


def _not_found(instr, path: str) -> BuildError:
    return instr.error(f'failed to compute cache key: "{path}": not found')


def _key(plan: CopyPlan, parents: bool, unpack_flag: bool | None) -> dict[str, Any]:
    instr = plan.instr
    sources: list[Any] = []
    context_sources: list[tuple[str, str, Node]] = []
    context_tree: ContextTree | None = None
    for item in plan.items:
        if item.kind == "tree":
            assert item.node is not None
            sources.append(["path", item.name, item.real])
            if isinstance(item.tree, ContextTree):
                context_tree = item.tree
                context_sources.append((item.real, item.name, item.node))
                plan.context_paths.append(item.real)
            else:
                plan.from_sources.append((item.real, item.name, item.node))
        elif item.kind == "url":
            if item.download is not None:
                d = item.download
                sources.append(["url", d.url, d.name, d.digest, d.mtime_ns])
            else:
                sources.append(["url", item.url, item.name, instr.checksum])  # type: ignore[union-attr]
        else:
            sources.append(["inline", item.name, hashlib.sha256(item.data).hexdigest()])
    return {
        "op": instr.keyword,
        "written": list(instr.sources),  # --parents keeps what follows "/./": the text counts
        "dest": instr.dest,
        "chown": instr.chown,
        "chmod": instr.chmod,
        "link": instr.link,
        "parents": parents,
        "unpack": unpack_flag,
        "exclude": list(instr.exclude),
        "sources": sources,
        "context": context_tree.digest(context_sources) if context_tree else None,
    }


# -- execution ---------------------------------------------------------------------------


def execute_copy(
    plan: CopyPlan,
    merged_root: Path,
    *,
    workdir: str,
    user_lookup_root: Path | None = None,
    now_ns: int | None = None,
) -> Placement:
    """Write ``plan`` into the rootfs ``merged_root``, the destination relative to ``workdir``.

    ``--chown`` names resolve in ``user_lookup_root``'s passwd/group files (default:
    ``merged_root``, the destination, as BuildKit does). Heredoc files get mtime
    ``now_ns`` (default: now; the layer packer clamps to SOURCE_DATE_EPOCH). BuildError
    at the instruction's line for anything BuildKit refuses. Return where it wrote.
    """
    from dockyard.builder.copier.writer import CopyError, Writer  # not on a cached build

    instr = plan.instr
    dest = instr.resolve_dest(workdir)
    try:
        owner = resolve_owner(instr.chown, user_lookup_root or merged_root, strict=True)
    except ValueError as e:
        raise instr.error(str(e)) from None
    now = time.time_ns() if now_ns is None else now_ns
    roots: dict[int, int] = {}
    placement = Placement(owner)
    try:
        with Writer(merged_root, owner, plan.chmod) as writer:
            _check_many(plan, writer, dest, roots)
            for item in plan.items:
                placement.tops.append(_execute(plan, item, writer, dest, roots, now))
    except CopyError as e:
        raise instr.error(str(e)) from None
    except DockyardError as e:
        if isinstance(e, BuildError):
            raise
        raise instr.error(str(e)) from None
    except OSError as e:
        raise instr.error(f"failed to copy files: {e}") from None
    finally:
        for fd in roots.values():
            os.close(fd)
    return placement


def _root_fd(tree: Tree, roots: dict[int, int]) -> int:
    fd = roots.get(id(tree))
    if fd is None:
        fd = roots[id(tree)] = tree.open()
    return fd


def _dir_like(plan: CopyPlan, item: _Item, roots: dict[int, int]) -> bool:
    """Does the item fill a directory (a directory, or an archive ADD unpacks)?"""
    if item.kind == "tree":
        assert item.node is not None
        if item.node.kind == stat.S_IFDIR:
            return True
        if item.unpack and item.node.kind == stat.S_IFREG:
            return _with_source_file(item, roots, _is_archive)
        return False
    if item.kind == "url" and item.unpack:
        return _with_download(plan, item, _is_archive)
    return False


def _is_archive(fd: int) -> bool:
    from dockyard.builder.copier import archive  # tarfile and co.: only for ADD

    return archive.is_archive(fd)


def _check_many(plan: CopyPlan, writer: Writer, dest: str, roots: dict[int, int]) -> None:
    """Several files into a destination that is not a directory: docker's classic rule
    ("must be a directory and end with a /"). BuildKit lets each file overwrite the
    last (moby/buildkit#4550); copying several into an existing directory, or several
    directories' contents into a new one, works in both and is allowed."""
    from dockyard.builder.copier.writer import CopyError

    if len(plan.items) < 2 or dest.endswith(("/", "/.")):
        return
    if all(_dir_like(plan, item, roots) for item in plan.items):
        return
    real, missing = writer.resolve(clean_path(dest))
    if not missing and writer.is_dir(real):
        return
    raise CopyError(
        f"When using {plan.instr.keyword} with more than one source file, the destination "
        "must be a directory and end with a /"
    )


def _with_source_file(item: _Item, roots: dict[int, int], use):
    assert item.tree is not None
    parent, name = open_parent(_root_fd(item.tree, roots), item.real)
    assert name is not None  # a regular file, so not the root
    try:
        fd = os.open(name, _READ, dir_fd=parent)
        try:
            return use(fd)
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def _with_download(plan: CopyPlan, item: _Item, use):
    if item.download is None:
        item.download = _download(plan, item.url)
    fd = os.open(item.download.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return use(fd)
    finally:
        os.close(fd)


def _execute(
    plan: CopyPlan, item: _Item, writer: Writer, dest: str, roots: dict[int, int], now: int
) -> list[str] | None:
    """Write one item; return the real path its source landed at (a tree's, copied as it
    is), else None."""
    from dockyard.builder.copier.writer import Meta

    if item.kind == "inline":  # BuildKit's Mkfile: 0644, root-owned, made just now
        meta = Meta(stat.S_IFREG | 0o644, st_atime_ns=now, st_mtime_ns=now)
        writer.copy(writer.place(dest, item.name, False), meta, content=item.data)
        return None
    if item.kind == "url":
        if item.unpack and _with_download(plan, item, _is_archive):
            _with_download(plan, item, lambda fd: _unpack(plan, writer, dest, fd))
            return None
        if item.download is None:
            item.download = _download(plan, item.url)
        d = item.download
        meta = Meta(stat.S_IFREG | 0o600, st_atime_ns=d.mtime_ns, st_mtime_ns=d.mtime_ns)
        writer.copy(
            writer.place(dest, item.name, False),
            meta,
            content=lambda: os.open(d.path, os.O_RDONLY | os.O_CLOEXEC),
        )
        return None
    return _execute_tree(plan, item, writer, dest, roots)


def _execute_tree(
    plan: CopyPlan, item: _Item, writer: Writer, dest: str, roots: dict[int, int]
) -> list[str] | None:
    from dockyard.builder.copier.writer import CopyError

    tree, node = item.tree, item.node
    assert tree is not None and node is not None
    parent, name = open_parent(_root_fd(tree, roots), item.real)
    try:
        st = os.lstat(name, dir_fd=parent) if name else os.fstat(parent)
        if stat.S_IFMT(st.st_mode) != node.kind:
            raise CopyError(f"/{item.real}: source changed during the build")
        xattrs_from = f"/proc/self/fd/{parent}" + (f"/{name}" if name else "")
        if node.kind == stat.S_IFDIR:
            src_dir = os.open(name, _SUBDIR, dir_fd=parent) if name else os.dup(parent)
            try:
                comps = writer.place(dest, item.name, True)
                writer.copy(
                    comps,
                    st,
                    node=node,
                    src_dir=src_dir,
                    reset_owner=tree.reset_owner,
                    xattrs_from=xattrs_from,
                )
            finally:
                os.close(src_dir)
            return comps
        assert name is not None
        if item.unpack and node.kind == stat.S_IFREG:
            fd = os.open(name, _READ, dir_fd=parent)
            try:
                if _is_archive(fd):
                    _unpack(plan, writer, dest, fd)
                    return None
            finally:
                os.close(fd)
        comps = writer.place(dest, item.name, False)
        writer.copy(
            comps,
            st,
            content=lambda: os.open(name, _READ, dir_fd=parent),
            link=os.readlink(name, dir_fd=parent) if node.kind == stat.S_IFLNK else None,
            reset_owner=tree.reset_owner,
            xattrs_from=xattrs_from,
        )
        return comps
    finally:
        os.close(parent)


def _unpack(plan: CopyPlan, writer: Writer, dest: str, fd: int) -> None:
    """BuildKit's ``unpack``: the destination (slash or not) is the directory to extract
    into, made (0755, --chown owner) if missing."""
    from dockyard.builder.copier import archive  # tarfile: only to unpack
    from dockyard.builder.copier.writer import CopyError

    clean = clean_path(dest)
    writer.mkdir_all(clean, 0o755, writer.owner)
    real, _ = writer.resolve(clean)
    dest_fd = writer.open_dir(real)
    try:
        archive.extract(fd, dest_fd, writer.owner)
    except DockyardError as e:
        raise CopyError(f"failed to extract archive into {clean}: {e}") from None
    finally:
        os.close(dest_fd)


def make_dirs(
    rootfs: str | os.PathLike[str], path: str, user: str = "", *, mtime_ns: int | None = None
) -> None:
    """WORKDIR: make ``path`` and its missing parents inside ``rootfs``.

    Symlinks are resolved inside it. The directories get mode 0755, owned by ``user``
    (the stage's USER; names looked up in the rootfs, unknown ones meaning root as in
    BuildKit), times ``mtime_ns`` if given (BuildKit uses SOURCE_DATE_EPOCH). Existing
    directories are left alone.
    """
    from dockyard.builder.copier.writer import CopyError, Writer

    try:
        owner = resolve_owner(user, rootfs, strict=False)
        with Writer(rootfs) as writer:
            writer.mkdir_all(path, 0o755, owner, mtime_ns)
    except (CopyError, ValueError) as e:
        raise BuildError(str(e)) from None
