"""Transfer progress on stderr: rich bars on a terminal, one line per blob otherwise."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from dockyard.oci.descriptor import Descriptor
from dockyard.transfer.copy import CopyProgress


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class PlainProgress:
    """A line when each blob finishes: for CI logs, where bars are noise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def blob_started(self, desc: Descriptor) -> None:
        pass

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        pass

    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None:
        state = "exists" if skipped else "done"
        with self._lock:
            print(f"blob {short(desc.digest)} {desc.size:>12} bytes  {state}", file=sys.stderr)


class QuietProgress(PlainProgress):
    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None:
        pass


class RichProgress:
    """One bar per blob, transfer speed and a total; rich is thread-safe."""

    def __init__(self, progress) -> None:
        self._progress = progress
        self._tasks: dict[str, int] = {}
        self._lock = threading.Lock()

    def _task(self, desc: Descriptor) -> int:
        with self._lock:
            if desc.digest not in self._tasks:
                self._tasks[desc.digest] = self._progress.add_task(
                    short(desc.digest), total=desc.size
                )
            return self._tasks[desc.digest]

    def blob_started(self, desc: Descriptor) -> None:
        self._task(desc)

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        self._progress.advance(self._task(desc), nbytes)

    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None:
        task = self._task(desc)
        self._progress.update(
            task,
            completed=desc.size,
            description=f"{short(desc.digest)} {'exists' if skipped else 'done'}",
        )


@contextmanager
def progress_display(mode: str = "auto") -> Iterator[CopyProgress]:
    """The display ``mode`` asks for (auto: bars on a terminal, plain lines otherwise)."""
    if mode == "auto":
        mode = "tty" if sys.stderr.isatty() else "plain"
    if mode == "quiet":
        yield QuietProgress()
        return
    if mode == "plain":
        yield PlainProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bars:
        yield RichProgress(bars)
