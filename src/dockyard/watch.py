"""Rebuild on change (``dockyard watch``).

inotify on a build context, minus what its ``.dockerignore`` leaves out, and a loop that builds
whenever something in it changes.

:class:`ContextWatcher` keeps an inotify watch on every directory of the context a
build can see (an excluded directory is skipped unless an exception could reach into
it, as the context walk does), adds one for each directory that appears and reloads the
ignore rules when the ignore file changes. It never follows a symlink (``IN_DONT_FOLLOW``,
``lstat`` walks): events are only a hint to build again, and the build reads the
context confined to it (:mod:`dockyard.builder.context`). The Dockerfile, when it lives
outside the context, is watched too.

:func:`rebuild_loop` is single-threaded: it builds, then sleeps in ``select`` on the
inotify fd (and on whatever else the caller waits for: a running container's end),
collects changes until none has come for :data:`DEBOUNCE` seconds, and builds again.
So there is one build at a time, and changes made during a build wait in the kernel's
queue and start exactly one more build after it. inotify_simple is the binding: a
literal wrapper of the three syscalls whose fd goes into ``select``; the recursion,
the filtering and the debounce are ours (watchdog would bring threads and an observer
model for the same).
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from inotify_simple import INotify
from inotify_simple import flags as events

from dockyard.builder.confined import ConfinedDir, ConfinedFile
from dockyard.builder.frontend.dockerignore import IgnoreMatcher

# Seconds without a change before a build starts (watchexec's default): an editor's save
# (write, rename, chmod) comes within it; a slower one costs one more build, not a stale
# image, as a change during a build starts another after it.
DEBOUNCE = 0.05
_CHANGES = (
    events.MODIFY
    | events.CLOSE_WRITE
    | events.ATTRIB
    | events.CREATE
    | events.DELETE
    | events.MOVED_FROM
    | events.MOVED_TO
)
_DIR_WATCH = _CHANGES | events.DELETE_SELF | events.MOVE_SELF | events.ONLYDIR | events.DONT_FOLLOW


class ContextWatcher:
    """inotify on the build context ``context`` (and ``dockerfile``, wherever it is).

    :meth:`changes` says which paths a build would see changed."""

    def __init__(self, context: Path, dockerfile: Path | None = None):
        self.context = context.resolve()
        self.dockerfile = dockerfile.resolve() if dockerfile is not None else None
        self._inotify = INotify()
        self._dirs: dict[int, str] = {}  # watch descriptor -> context path ("" the root)
        self._files: dict[int, Path] = {}  # a Dockerfile outside the context
        self._matcher = self._load_matcher()
        self._add_tree("")
        if self.dockerfile is not None and not self.dockerfile.is_relative_to(self.context):
            # Its directory: an editor saving it replaces the file (a rename onto it).
            wd = self._inotify.add_watch(self.dockerfile.parent, _DIR_WATCH)
            self._files[wd] = self.dockerfile

    def fileno(self) -> int:
        return self._inotify.fileno()

    def close(self) -> None:
        self._inotify.close()

    def __enter__(self) -> ContextWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def changes(self, timeout: float | None = 0) -> list[str]:
        """The changed paths among the events that came within ``timeout`` seconds.

        Paths are context-relative; the Dockerfile is its own path. ``timeout`` None waits for one
        event; excluded paths are dropped. An overflowed queue reads as a change of the whole
        context."""
        found: list[str] = []
        pending = self._inotify.read(timeout=None if timeout is None else int(timeout * 1000))
        for event in pending:
            if event.mask & events.Q_OVERFLOW:
                self._rescan()
                found.append(".")
                continue
            if event.wd in self._files:
                dockerfile = self._files[event.wd]
                name = dockerfile.name
                if event.name == f"{name}.dockerignore":
                    self._matcher = self._load_matcher()
                    self._rescan()
                if event.name in (name, f"{name}.dockerignore"):
                    found.append(str(dockerfile.parent / event.name))
                continue
            base = self._dirs.get(event.wd)
            if base is None:
                continue
            if event.mask & events.IGNORED:
                del self._dirs[event.wd]
                continue
            path = f"{base}/{event.name}" if base and event.name else base or event.name
            if self._is_ignore_file(path):
                self._matcher = self._load_matcher()
                self._rescan()
                found.append(path)
                continue
            if path and self._matcher.excluded(path) and not self._is_dockerfile(path):
                if event.mask & events.ISDIR and self._matcher.may_contain(path):
                    self._add_tree(path)
                continue
            if event.mask & events.ISDIR and event.mask & (events.CREATE | events.MOVED_TO):
                self._add_tree(path)
            found.append(path or ".")
        return list(dict.fromkeys(found))

    # -- internals ----------------------------------------------------------------

    def _load_matcher(self) -> IgnoreMatcher:
        """The ignore rules a build reads now (read confined, as the build does)."""
        with contextlib.ExitStack() as stack:
            context = stack.enter_context(ConfinedDir.open(self.context))
            dockerfile = ConfinedFile(context, "Dockerfile")
            if self.dockerfile is not None:
                directory = stack.enter_context(
                    ConfinedDir.open(self.dockerfile.parent, "Dockerfile directory")
                )
                dockerfile = ConfinedFile(directory, self.dockerfile.name)
            return IgnoreMatcher.load(context, dockerfile)

    def _is_ignore_file(self, path: str) -> bool:
        dockerfile = self.dockerfile or self.context / "Dockerfile"
        specific = dockerfile.parent / f"{dockerfile.name}.dockerignore"
        return path == ".dockerignore" or self.context / path == specific

    def _is_dockerfile(self, path: str) -> bool:
        """Sent with every build, whatever the ignore file says (as docker does)."""
        return self.context / path == (self.dockerfile or self.context / "Dockerfile")

    def _rescan(self) -> None:
        """Watch again from scratch: after an overflow, or new ignore rules."""
        for wd in list(self._dirs):
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(wd)
        self._dirs.clear()
        self._add_tree("")

    def _add_tree(self, path: str) -> None:
        """Watch the directory ``path`` and every one below it a build can see; the
        watch comes before the listing, so nothing created in between goes unseen."""
        pending = [path]
        while pending:
            current = pending.pop()
            try:
                wd = self._inotify.add_watch(self.context / current, _DIR_WATCH)
            except OSError:  # gone, or no longer a directory (a symlink now): no watch
                continue
            self._dirs[wd] = current
            try:
                entries = list(os.scandir(self.context / current))
            except OSError:
                continue
            for entry in entries:
                with contextlib.suppress(OSError):
                    if not stat.S_ISDIR(entry.stat(follow_symlinks=False).st_mode):
                        continue
                    child = f"{current}/{entry.name}" if current else entry.name
                    if not self._matcher.excluded(child, is_dir=True) or self._matcher.may_contain(
                        child
                    ):
                        pending.append(child)


def rebuild_loop(
    watcher: ContextWatcher,
    build: Callable[[Sequence[str], float], None],
    *,
    also_wait: Callable[[], list[int]] = list,
    on_ready: Callable[[int], None] = lambda fd: None,
    debounce: float = DEBOUNCE,
) -> None:
    """Build once, then again after each burst of changes, forever (until interrupted).

    ``build(changed, since)`` gets the changed paths (none the first time) and the
    ``time.monotonic()`` the first of them was seen; it should not raise for a failed
    build. ``also_wait()`` lists more fds to wake up for (a running
    container's pidfd); ``on_ready(fd)`` is called when one of them is readable.
    """
    build((), time.monotonic())
    while True:
        changed = _next_changes(watcher, also_wait, on_ready)
        since = time.monotonic()
        deadline = since + debounce
        while (left := deadline - time.monotonic()) > 0:
            more = watcher.changes(timeout=left)
            if more:
                changed += more
                deadline = time.monotonic() + debounce
        build(list(dict.fromkeys(changed)), since)


def _next_changes(
    watcher: ContextWatcher,
    also_wait: Callable[[], list[int]],
    on_ready: Callable[[int], None],
) -> list[str]:
    """Wait for the first change a build would see, serving the other fds meanwhile."""
    while True:
        changed = watcher.changes(timeout=0)
        if changed:
            return changed
        readable, _, _ = select.select([watcher.fileno(), *also_wait()], [], [])
        for fd in readable:
            if fd != watcher.fileno():
                on_ready(fd)
