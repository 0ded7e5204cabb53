"""One source's output (a step or a service): masked, cut into lines, saved and passed on.

Container output arrives as chunks of stdout and stderr. Each stream has its own
:class:`~.masking.SecretMasker` (a secret is cut across chunks of one stream, not
across streams) and its own partial line, so that lines of the two never mix. Whole
lines go to the log file and to :meth:`.Events.line`. A line that never ends is cut
every ``MAX_LINE`` bytes.

Each line is written to the file as it comes, with one ``write`` (so a reader
following the file, ``dockyard ci logs -f``, sees whole lines), after the time it
arrived: ``2026-12-07T13:17:43.123456Z <line>`` (UTC). :func:`saved_lines` reads a log
back, with or without those times.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from dockyard.ci.masking import SecretMasker
from dockyard.ci.results import Events

MAX_LINE = 64 << 10
NOTE_PREFIX = b"--- "  # marks dockyard's own lines in a saved log


class OutputLog:
    """The output of ``source``, saved to ``path`` (appended).

    An output callback for :class:`dockyard.runtime.Container` (``log(stream, chunk)``)."""

    def __init__(self, source: str, path: Path, secrets: Sequence[str], events: Events):
        self.source = source
        self._secrets = secrets
        self._events = events
        self._maskers: dict[str, SecretMasker] = {}
        self._line_masker = SecretMasker(secrets)  # for whole lines: no stream state
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()

    def __call__(self, stream: str, data: bytes) -> None:
        """A chunk of a container's ``stream``."""
        with self._lock:
            masker = self._maskers.get(stream)
            if masker is None:
                masker = self._maskers[stream] = SecretMasker(self._secrets)
            self._add(stream, masker.feed(data))

    def note(self, text: str) -> None:
        """A line dockyard says about this source."""
        self._whole_line(text, note=True)

    def line(self, text: str) -> None:
        """A whole line of output produced in-process (a build's log)."""
        self._whole_line(text, note=False)

    def flush(self) -> None:
        """The streams have ended: release what the maskers hold and partial lines."""
        with self._lock:
            for stream, masker in self._maskers.items():
                self._add(stream, masker.flush())
                rest = self._partial.pop(stream, b"")
                if rest:
                    self._emit(rest)
            self._maskers.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()

    def _whole_line(self, text: str, *, note: bool) -> None:
        masked = self._line_masker.mask(text.encode())
        with self._lock:
            self._emit(masked, note=note)

    def _add(self, stream: str, data: bytes) -> None:
        if not data:
            return
        buffer = self._partial.get(stream, b"") + data
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            self._emit(line)
        while len(rest) >= MAX_LINE:
            self._emit(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial[stream] = rest

    def _emit(self, line: bytes, *, note: bool = False) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode()
        self._file.write(stamp + (NOTE_PREFIX if note else b"") + line + b"\n")
        self._events.line(self.source, line.decode("utf-8", "replace"), note=note)


def saved_lines(data: bytes, *, timestamps: bool = False) -> Iterator[str]:
    """The lines of a saved log's ``data`` (whole lines only).

    Each is without the time it was written unless ``timestamps``."""
    for raw in data.split(b"\n")[:-1]:  # after the last newline: still being written
        line = raw.decode("utf-8", "replace")
        yield line if timestamps else line.partition(" ")[2]
