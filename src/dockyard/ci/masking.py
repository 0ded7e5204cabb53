"""Secret values masked as ``********`` in a stream of output, whatever its chunking.

What is masked, for each secret (see :func:`patterns`):

- the value itself; a multi-line value line by line (each non-blank line), so that
  its lines are hidden wherever they appear;
- its base64 forms: standard and url-safe alphabets, with or without ``=`` padding,
  and at each of the 3 byte alignments the value can take inside a longer base64
  stream (``base64`` of ``"token=" + secret``); there only the characters the value
  alone determines are masked, so one character at each end (4 bits of the value at
  most) may stay visible;
- its hex forms, lower and upper case;
- its URL-encoded forms (``%2F`` and ``%2f``, ``/`` escaped or not, a space as ``%20``
  or ``+``);
- any of these printed across lines: a single line break (``\\n`` or ``\\r\\n``) may
  fall anywhere inside it, as when ``base64`` wraps at 76 columns or a tool folds long
  lines. Each piece is masked on its own line; a blank line ends a secret.

Encoded forms shorter than ``MIN_ENCODED`` characters are not masked: they would hide
ordinary words (a 3-byte secret's hex form is 6 digits). A value (or line) shorter than
``MIN_SUBSTRING`` characters is masked only as a whole word, on one line: a secret ``a``
hides ``a`` in ``key a set`` but not the ``a`` of ``bash``, which would otherwise be
masked in every log line. Nothing else is: a secret
transformed in any other way (other encodings, JSON or shell escaping, compression,
encryption, reversed, one character per line, or printed in pieces by a script
that wants to leak it) is printed as it comes. Masking keeps honest output clean; it
cannot stop a step that holds a secret from exfiltrating it.

A container writes in chunks that may cut a secret anywhere: ``abc`` in one read,
``def`` in the next. :class:`SecretMasker` therefore holds back the longest tail of
what it has seen that could still be the start of a secret (line breaks included), and
releases it once the next chunk shows whether it was: a line ending in what could
begin a secret is released with the next chunk, or at the end of the stream. What is
held is shorter than three times the longest form. Overlapping occurrences (of one
secret or of several) are masked as one run.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote_from_bytes, quote_plus

MASK = b"********"
MIN_ENCODED = 8
MIN_SUBSTRING = 4  # shorter patterns are masked only as whole words
_WORD = re.compile(rb"\w")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_BREAKS = re.compile(rb"[\r\n]+")
_BREAK_BYTES = b"\r\n"
_ESCAPE = re.compile(rb"%[0-9A-F]{2}")
_HEAD = 4  # prefix length searched for first when looking for a held-back tail
_SMALL = 1024  # below this, one regex search for every head beats a find per pattern


def patterns(secrets: Iterable[str | bytes]) -> list[bytes]:
    """What to look for, longest first: each secret and its encoded forms.

    A multi-line secret counts as each of its non-blank lines."""
    found: set[bytes] = set()
    for secret in secrets:
        value = secret.encode() if isinstance(secret, str) else secret
        if not value:
            continue
        if b"\n" in value or b"\r" in value:  # line breaks are skipped where it is looked for
            lines = value.replace(b"\r", b"\n").split(b"\n")
            found.update(line for line in lines if line.strip())
        else:
            found.add(value)
        found.update(form for form in encoded_forms(value) if len(form) >= MIN_ENCODED)
    return sorted(found, key=len, reverse=True)


def encoded_forms(value: bytes) -> set[bytes]:
    """The base64, hex and URL-encoded forms of ``value`` that differ from it."""
    forms = {value.hex().encode(), value.hex().upper().encode()}
    b64 = {base64.b64encode(value).rstrip(b"=")}  # all of it, where an encoding ends
    for align in range(3):  # after 0, 1 or 2 bytes of something else
        encoded = base64.b64encode(bytes(align) + value)
        start = (0, 2, 3)[align]  # the characters that encode bits of the value only
        end = (align + len(value)) * 8 // 6
        b64.add(encoded[start:end])
    forms |= b64 | {form.translate(_URLSAFE) for form in b64}
    for safe in ("", "/"):
        for quoted in (quote_from_bytes(value, safe), quote_plus(value, safe)):
            upper = quoted.encode()
            forms |= {upper, _ESCAPE.sub(lambda m: m.group().lower(), upper)}
    forms.discard(value)
    forms.discard(b"")
    return forms


class SecretMasker:
    """Masks secrets in one stream: :meth:`feed` chunks, then :meth:`flush` at its end."""

    def __init__(self, secrets: Iterable[str | bytes]):
        self._patterns = patterns(secrets)
        self._pending = b""
        longest = max(map(len, self._patterns), default=0)
        self._max_pending = 3 * longest + 16
        self._heads: dict[bytes, list[bytes]] = {}  # first _HEAD bytes -> longer patterns
        self._short: set[bytes] = set()  # proper prefixes shorter than _HEAD
        for pattern in self._patterns:
            if len(pattern) > _HEAD:
                self._heads.setdefault(pattern[:_HEAD], []).append(pattern)
            self._short.update(pattern[:n] for n in range(1, min(_HEAD, len(pattern))))
            if len(pattern) < MIN_SUBSTRING:  # whole word only if what follows is no letter
                self._short.add(pattern)
        self._before = b""  # the last byte released: what precedes the held-back bytes
        heads = sorted({pattern[:_HEAD] for pattern in self._patterns})
        self._any_head = re.compile(b"|".join(map(re.escape, heads)))

    def feed(self, data: bytes) -> bytes:
        """Add ``data``; return what can be released, masked (possibly nothing)."""
        if not self._patterns:
            return data
        buffer = self._pending + data
        view = _View(buffer)
        if len(view.text) <= _SMALL and not self._any_head.search(view.text):
            intervals, release = [], len(view.text) - self._short_tail(view.text)
        else:  # a match or a tail of _HEAD bytes or more starts with a head
            intervals = self._matches(view, self._before)
            release = len(view.text) - self._tail(view.text)
        for start, end in intervals:  # never release part of a match: hold it all back
            if start < release < end:
                release = start
        done = [view.span(start, end) for start, end in intervals if end <= release]
        cut = view.original(release)
        if len(buffer) - cut > self._max_pending:  # held only for its line breaks
            done, cut = [view.span(s, e) for s, e in intervals], len(buffer)
        self._pending = buffer[cut:]
        self._before = buffer[cut - 1 : cut] or self._before
        return _mask(buffer[:cut], done)

    def flush(self) -> bytes:
        """The end of the stream: release everything held back, masked."""
        buffer, self._pending = self._pending, b""
        before, self._before = self._before, b""
        return self._mask_text(buffer, before)

    def mask(self, data: bytes) -> bytes:
        """Mask a complete text (no stream state involved)."""
        return self._mask_text(data, b"")

    def _mask_text(self, data: bytes, before: bytes) -> bytes:
        if not self._patterns:
            return data
        view = _View(data)
        return _mask(data, [view.span(s, e) for s, e in self._matches(view, before)])

    def _matches(self, view: _View, before: bytes) -> list[tuple[int, int]]:
        """Every occurrence of every pattern, overlapping ones merged, in order; a short
        pattern only where it is a whole word on one line (``before`` precedes the text)."""
        text = view.text
        found = []
        for pattern in self._patterns:
            start = text.find(pattern)
            while start != -1:
                end = start + len(pattern)
                if len(pattern) >= MIN_SUBSTRING or _whole_word(view, start, end, before):
                    found.append((start, end))
                start = text.find(pattern, start + 1)
        found.sort()
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _tail(self, text: bytes) -> int:
        """The length of the longest tail of ``text`` that is a proper prefix of a
        pattern."""
        size = len(text)
        best = 0
        for head, longer in self._heads.items():
            index = text.find(head, max(0, size - len(longer[0]) + 1))
            while index != -1 and size - index > best:
                rest = text[index:]
                if any(p.startswith(rest) and len(p) > len(rest) for p in longer):
                    best = size - index
                    break
                index = text.find(head, index + 1)
        return best or self._short_tail(text)

    def _short_tail(self, text: bytes) -> int:
        """:meth:`_tail`, for tails shorter than ``_HEAD`` bytes only."""
        size = len(text)
        for length in range(min(_HEAD - 1, size), 0, -1):
            if text[size - length :] in self._short:
                return length
        return 0


def _whole_word(view: _View, start: int, end: int, before: bytes) -> bool:
    """Is the text's ``start:end`` one line's whole word in the buffer?"""
    first, last = view.span(start, end)
    if last - first != end - start:  # a line break inside
        return False
    preceding = view.buffer[first - 1 : first] if first else before
    following = view.buffer[last : last + 1]
    return not _WORD.match(preceding) and not _WORD.match(following)


class _View:
    """A buffer without its line breaks (``text``), which is where secrets are looked
    for, and the way back to positions in the buffer."""

    def __init__(self, buffer: bytes):
        self.buffer = buffer
        self.text = buffer.translate(None, _BREAK_BYTES)
        self._at = self._removed = 0  # breaks in buffer[:_at]: _removed

    def original(self, index: int) -> int:
        """The buffer position of the text's byte ``index`` (the buffer's end for the
        text's end). Cheapest asked in increasing order."""
        if len(self.text) == len(self.buffer):
            return index
        if index + self._removed < self._at:
            self._at = self._removed = 0
        position = index + self._removed
        while position > self._at:  # count the breaks before position, until none is new
            chunk = self.buffer[self._at : position]
            self._removed += chunk.count(b"\n") + chunk.count(b"\r")
            self._at = position
            position = index + self._removed
        if index == len(self.text):
            return len(self.buffer)
        while self.buffer[position] in _BREAK_BYTES:  # the kept byte after the breaks
            position += 1
        return position

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The buffer positions of the text's bytes ``start:end`` (non-empty)."""
        return self.original(start), self.original(end - 1) + 1


def _mask(data: bytes, intervals: list[tuple[int, int]]) -> bytes:
    """``data`` with each interval replaced by MASK, line by line (breaks kept)."""
    if not intervals:
        return data
    parts, position = [], 0
    for start, end in intervals:
        parts.append(data[position:start])
        position = start
        for match in _BREAKS.finditer(data, start, end):
            parts += [MASK, match.group()] if match.start() > position else [match.group()]
            position = match.end()
        if end > position:
            parts.append(MASK)
        position = end
    parts.append(data[position:])
    return b"".join(parts)
