"""Cache directories that outlive a run: ``cache: [/root/.cache/pip]`` in a step.

Each is a directory of the store, ``<store root>/ci/cache/<name>/``, bind-mounted
read-write at its path in every step that names it. The name is a hash of the pipeline
(its ``name``, else its file's path) and the path in the container, so two pipelines
never share a cache by accident and one pipeline's steps share theirs. Steps of one
run that name the same path see one directory at once, as with BuildKit's default
``sharing=shared`` cache mounts. Nothing is written into a cache but by the steps.

A cache keyed by files (``cache: {key: {files: [requirements.txt]}, paths: [...]}``)
has one directory per content of those files, read from the workspace when the step
starts (:func:`files_key`): the cache a changed ``requirements.txt`` needs starts
empty, and the old one is kept for the old content. The files are opened beneath the
workspace (a symlink out of it counts as missing, a FIFO is not read), as steps may
have put anything there.

A cache with ``sharing: locked`` is used by one step at a time, whatever run it is
in: the step holds an ``flock`` on the directory itself while its container runs
(:func:`locked`), and another step waits for it (apt, for one, locks its archive dir
and fails at once if another apt holds it).

Each use sets the directory's mtime, so that ``dockyard ci prune`` can tell the caches
nobody has used for a while (see :mod:`.prune`).

Steps fill caches, and dockyard never reads what is in them: it mounts them (runc
resolves the destination inside the container's rootfs) and prune deletes them
(``shutil.rmtree``, which never follows a symlink). A cache dir itself must be a real
directory: a symlink found in its place is refused, never mounted, so that no host
directory can become a cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from dockyard.ci.pipeline import open_regular
from dockyard.errors import DockyardError
from dockyard.store.dirs import PIPELINE_CACHE_DIR as CACHE_DIR


def cache_name(pipeline_key: str, path: str, files_key: str = "") -> str:
    """The directory name of the cache ``path`` of the pipeline ``pipeline_key``.

    It covers the content ``files_key`` of its key files, if it has any."""
    text = f"{pipeline_key}\0{path}" + (f"\0{files_key}" if files_key else "")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def files_key(workspace: Path, files: Sequence[str]) -> str:
    """A digest of the content of ``files`` (paths in ``workspace``); "" for none."""
    if not files:
        return ""
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0")
        try:
            fd = open_regular(workspace / name, workspace)
        except OSError:
            digest.update(b"missing\0")  # as another content would be
            continue
        content = hashlib.sha256()
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(1 << 20):
                content.update(chunk)
        digest.update(content.digest())
    return digest.hexdigest()


def cache_dir(store_root: Path, pipeline_key: str, path: str, files: str = "") -> Path:
    """The store directory for the cache ``path`` of the pipeline ``pipeline_key``.

    Keyed by the key files' content ``files`` too; created if missing, and marked as used now."""
    parent = store_root / CACHE_DIR
    parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    directory = parent / cache_name(pipeline_key, path, files)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o755)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise DockyardError(f"cache {path}: {directory} is not a directory") from e
    try:
        os.utime(fd)
    finally:
        os.close(fd)
    return directory


LOCK_POLL = 0.1  # seconds between tries of a locked cache another step holds
_LOCKED_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def locked(
    caches: Mapping[str, Path], wait: Callable[[float], None], note: Callable[[str], None]
) -> Iterator[None]:
    """Hold the cache dirs ``caches`` (by their path in the container) for the block, one
    holder at a time.

    Taken in one order (by directory), so that two steps never wait for each other.
    While another holds one, ``note`` says so once and ``wait(LOCK_POLL)`` runs between
    tries: it raises to give up (cancelled, timed out)."""
    with contextlib.ExitStack() as held:
        for path, directory in sorted(caches.items(), key=lambda item: item[1]):
            try:
                fd = os.open(directory, _LOCKED_DIR)
            except OSError as e:
                raise DockyardError(f"cache {path}: {directory} is not a directory") from e
            held.callback(os.close, fd)  # closing it lets the lock go
            if not _try_lock(fd):
                note(f"cache {path} is in use by another step: waiting for it")
                while not _try_lock(fd):
                    wait(LOCK_POLL)
        yield


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
