"""Secret values masked as ``********`` in a stream of output, whatever its chunking.

A container writes in chunks that may cut a secret anywhere: ``abc`` in one read,
``def`` in the next. :class:`SecretMasker` therefore holds back the longest tail of
what it has seen that could still be the start of a secret, and releases it once the
next chunk shows whether it was. Overlapping occurrences (of one secret or of several)
are masked as one run. A multi-line secret is masked line by line, so that its lines
are hidden wherever they appear (and the hold-back stays the length of a line).
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = b"********"


def patterns(secrets: Iterable[str | bytes]) -> list[bytes]:
    """What to look for: each secret, or each non-blank line of a multi-line one."""
    found: set[bytes] = set()
    for secret in secrets:
        value = secret.encode() if isinstance(secret, str) else secret
        if b"\n" in value:
            found.update(line.strip(b"\r") for line in value.split(b"\n") if line.strip())
        elif value:
            found.add(value)
    return sorted(found, key=len, reverse=True)


class SecretMasker:
    """Masks secrets in one stream: :meth:`feed` chunks, then :meth:`flush` at its end."""

    def __init__(self, secrets: Iterable[str | bytes]):
        self._patterns = patterns(secrets)
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Add ``data``; return what can be released, masked (possibly nothing)."""
        if not self._patterns:
            return data
        buffer = self._pending + data
        intervals = self._matches(buffer)
        release = len(buffer) - max(_prefix_tail(buffer, p) for p in self._patterns)
        for start, end in intervals:  # never release part of a match: hold it all back
            if start < release < end:
                release = start
        self._pending = buffer[release:]
        return _mask(buffer[:release], [(s, e) for s, e in intervals if e <= release])

    def flush(self) -> bytes:
        """The end of the stream: release everything held back, masked."""
        buffer, self._pending = self._pending, b""
        return _mask(buffer, self._matches(buffer))

    def mask(self, data: bytes) -> bytes:
        """Mask a complete text (no stream state involved)."""
        return _mask(data, self._matches(data)) if self._patterns else data

    def _matches(self, buffer: bytes) -> list[tuple[int, int]]:
        """Every occurrence of every pattern, overlapping ones merged, in order."""
        found = []
        for pattern in self._patterns:
            start = buffer.find(pattern)
            while start != -1:
                found.append((start, start + len(pattern)))
                start = buffer.find(pattern, start + 1)
        found.sort()
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged


def _prefix_tail(buffer: bytes, pattern: bytes) -> int:
    """The length of the longest tail of ``buffer`` that is a proper prefix of ``pattern``."""
    first = pattern[:1]
    index = buffer.find(first, max(0, len(buffer) - len(pattern) + 1))
    while index != -1:
        if pattern.startswith(buffer[index:]):
            return len(buffer) - index
        index = buffer.find(first, index + 1)
    return 0


def _mask(data: bytes, intervals: list[tuple[int, int]]) -> bytes:
    if not intervals:
        return data
    parts, position = [], 0
    for start, end in intervals:
        parts += [data[position:start], MASK]
        position = end
    parts.append(data[position:])
    return b"".join(parts)
