"""Transfer progress on stderr: live bars on a terminal, one line per blob otherwise.

The bars are drawn with a few ANSI sequences (cursor up, clear line) rather than a
terminal library: a full one costs tens of milliseconds of imports on every registry
command, and the display needs only one line per blob redrawn a few times a second.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from dockyard.cli.tables import human_bytes

if TYPE_CHECKING:  # annotations only: ``images`` and ``--help`` load no transfer code
    from dockyard.oci.descriptor import Descriptor
    from dockyard.transfer.copy import CopyProgress

REDRAW_SECONDS = 0.1
_UP = "\x1b[{}F"  # cursor to the start of the line n lines up
_CLEAR = "\x1b[2K"


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class PlainProgress:
    """A line when each blob finishes: for CI logs, where bars are noise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def blob_started(self, desc: Descriptor) -> None:
        pass

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        pass

    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None:
        state = "exists" if skipped else "done"
        with self._lock:
            print(f"blob {short(desc.digest)} {desc.size:>12} bytes  {state}", file=self._stream)


class QuietProgress(PlainProgress):
    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None:
        pass


@dataclass
class _Bar:
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    state: str = ""  # "", "done" or "exists"

    def render(self, name: str, width: int) -> str:
        if self.state:
            return f"{name} {self.state:<8} {human_bytes(self.total)}"
        elapsed = max(time.monotonic() - self.started, 1e-6)
        figures = (
            f" {human_bytes(self.done)}/{human_bytes(self.total)}"
            f"  {human_bytes(self.done / elapsed)}/s"
        )
        cells = max(width - len(name) - len(figures) - 3, 10)
        filled = cells * self.done // self.total if self.total else cells
        return f"{name} [{'=' * filled}{' ' * (cells - filled)}]{figures}"


class TerminalProgress:
    """One live bar per blob, redrawn in place by a background thread."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bars: dict[str, _Bar] = {}
        self._lock = threading.Lock()
        self._drawn = 0
        self._stop = threading.Event()
        self._painter = threading.Thread(target=self._paint, name="progress", daemon=True)

    def __enter__(self) -> TerminalProgress:
        self._painter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._painter.join()
        self.redraw()

    def _bar(self, desc: Descriptor) -> _Bar:
        bar = self._bars.get(desc.digest)
        if bar is None:
            bar = self._bars[desc.digest] = _Bar(desc.size)
        return bar

    def blob_started(self, desc: Descriptor) -> None:
        with self._lock:
            self._bar(desc)

    def blob_advanced(self, desc: Descriptor, nbytes: int) -> None:
        with self._lock:
            self._bar(desc).done += nbytes

    def blob_finished(self, desc: Descriptor, *, skipped: bool) -> None:
        with self._lock:
            bar = self._bar(desc)
            bar.done = bar.total
            bar.state = "exists" if skipped else "done"

    def redraw(self) -> None:
        """Overwrite the bars drawn last time with the current ones."""
        width = shutil.get_terminal_size().columns - 1
        with self._lock:
            lines = [bar.render(short(d), width)[:width] for d, bar in self._bars.items()]
            up = _UP.format(self._drawn) if self._drawn else ""
            self._drawn = len(lines)
        if lines:
            self._stream.write(up + "".join(f"{_CLEAR}{line}\n" for line in lines))
            self._stream.flush()

    def _paint(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            self.redraw()


@contextmanager
def progress_display(mode: str = "auto") -> Iterator[CopyProgress]:
    """The display ``mode`` asks for (auto: bars on a terminal, plain lines otherwise)."""
    if mode == "auto":
        mode = "tty" if sys.stderr.isatty() else "plain"
    if mode == "quiet":
        yield QuietProgress()
    elif mode == "plain":
        yield PlainProgress()
    else:
        with TerminalProgress(sys.stderr) as bars:
            yield bars
