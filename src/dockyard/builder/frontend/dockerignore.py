"""``.dockerignore``: the context paths a build never sees, with docker's exact rules.

Patterns follow moby/patternmatcher as BuildKit's context transfer applies them: each is
cleaned like Go's ``filepath.Clean`` (a leading ``/`` is dropped, ``dir/`` equals
``dir``), uses ``filepath.Match`` syntax (``*`` and ``?`` never cross ``/``, ``[a-c]``,
``[^a-c]``, ``\\`` escapes) plus ``**`` for any number of directories, and a leading
``!`` makes an exception. The last pattern that matches a path decides; a pattern that
matches a directory matches everything under it. An excluded directory must still be
walked when an exception could match inside it: :meth:`IgnoreMatcher.may_contain`.

The ignore file is ``<Dockerfile name>.dockerignore`` next to the Dockerfile when it
exists (``Dockerfile.dockerignore``, ``build.Dockerfile.dockerignore``), else
``.dockerignore`` at the context root. Both are read inside their directory
(:class:`.ConfinedDir`): a symlink to a host file is not followed out of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from dockyard.builder.confined import ConfinedDir, ConfinedFile
from dockyard.builder.frontend.golang import clean_path
from dockyard.builder.frontend.records import Record, record
from dockyard.errors import BuildError

_WILDCARDS = "*?[\\"


@record
class _Pattern(Record):
    text: str  # cleaned, without the "!"
    exception: bool
    match: Callable[[str], bool]
    literal_prefix: str  # every path it can match starts with this


def read_patterns(text: str) -> list[tuple[int, str]]:
    """``(line number, pattern)`` of an ignore file, as docker reads it.

    ``#`` comment lines and blank lines dropped, patterns trimmed and cleaned, leading ``/``
    removed."""
    out = []
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.removesuffix("\r")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append((number, "!" + pattern if invert else pattern))
    return out


def ignore_file(
    context: ConfinedDir, dockerfile: ConfinedFile | None = None
) -> tuple[str, bytes] | None:
    """The ignore file that applies, as (its path for messages, its content).

    The Dockerfile-specific one wins."""
    candidates = [ConfinedFile(context, ".dockerignore")]
    if dockerfile is not None:
        specific = os.path.basename(dockerfile.name) + ".dockerignore"
        candidates.insert(0, dockerfile.sibling(specific))
    for candidate in candidates:
        data = candidate.read()
        if data is not None:
            return str(candidate.path), data
    return None


class IgnoreMatcher:
    """Compiled patterns; ``excluded(path)`` for context paths like ``src/a.go``.

    Results for directories are remembered, so a walk that asks about a directory
    before its entries costs one pass over the patterns per path.
    """

    def __init__(
        self,
        patterns: Sequence[str],
        *,
        file: str | None = None,
        lines: Sequence[int] | None = None,
    ):
        self._patterns: list[_Pattern] = []
        for i, text in enumerate(patterns):
            try:
                pattern = _compile(text)
            except ValueError as e:
                line = lines[i] if lines else None
                raise BuildError(f"invalid ignore pattern {text!r}: {e}", file, line) from None
            if pattern is not None:
                self._patterns.append(pattern)
        self.has_exceptions = any(p.exception for p in self._patterns)
        self._dirs: dict[str, tuple[bool, ...]] = {}

    @classmethod
    def load(cls, context: ConfinedDir, dockerfile: ConfinedFile | None = None) -> IgnoreMatcher:
        """The matcher for a build of ``context`` with ``dockerfile`` (none: no file)."""
        found = ignore_file(context, dockerfile)
        if found is None:
            return cls([])
        path, data = found
        numbered = read_patterns(data.decode("utf-8", errors="surrogateescape"))
        return cls([p for _, p in numbered], file=path, lines=[n for n, _ in numbered])

    def excluded(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` (relative, ``/``-separated) is left out of the context.

        ``is_dir`` only tells the matcher to remember the directory's result for its
        entries; docker's matching itself does not distinguish files from directories.
        """
        if not self._patterns:  # no .dockerignore: nothing to match, per entry or parent
            return False
        return self._state(path, remember=is_dir)[0]

    def may_contain(self, directory: str) -> bool:
        """Whether an exception could include something under ``directory``.

        When this is False an excluded directory can be skipped without reading it."""
        prefix = directory + "/"
        return any(
            p.exception
            and (p.literal_prefix.startswith(prefix) or prefix.startswith(p.literal_prefix))
            for p in self._patterns
        )

    def _state(self, path: str, remember: bool) -> tuple[bool, tuple[bool, ...]]:
        parent = path.rpartition("/")[0]
        parent_matches: tuple[bool, ...] = ()
        if parent:
            parent_matches = self._dirs.get(parent) or self._state(parent, True)[1]
        matched = False
        matches = []
        for i, pattern in enumerate(self._patterns):
            hit = bool(parent_matches) and parent_matches[i]
            if not hit:
                if pattern.exception != matched:
                    matches.append(False)
                    continue
                hit = pattern.match(path)
            matches.append(hit)
            if hit:
                matched = not pattern.exception
        state = tuple(matches)
        if remember:
            self._dirs[path] = state
        return matched, state


def _compile(text: str) -> _Pattern | None:
    """One pattern as patternmatcher compiles it (None for a blank one)."""
    text = text.strip()
    if not text:
        return None
    text = clean_path(text)
    exception = text.startswith("!")
    if exception:
        if len(text) == 1:
            raise ValueError('illegal exclusion pattern: "!"')
        text = text[1:]
    _check_syntax(text)
    prefix = text
    for ch in _WILDCARDS:
        prefix = prefix.partition(ch)[0]
    return _Pattern(text, exception, _matcher(text), prefix)


def _matcher(text: str) -> Callable[[str], bool]:
    """Exact, prefix (``a/**``), suffix (``**/a``) or regex matching, chosen and built as
    patternmatcher does (the kind changes results: ``**.txt`` is a plain suffix test)."""
    regex: list[str] = []
    kind = "exact"
    i, n = 0, len(text)
    first = True
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*" and text[i : i + 1] == "*":
            i += 1
            if text[i : i + 1] == "/":
                i += 1
            if i == n:
                if kind == "exact":
                    kind = "prefix"
                else:
                    regex.append(".*")
                    kind = "regex"
            else:
                regex.append("(?:.*/)?")
                kind = "regex"
            if first:
                kind = "suffix"
        elif ch == "*":
            regex.append("[^/]*")
            kind = "regex"
        elif ch == "?":
            regex.append("[^/]")
            kind = "regex"
        elif ch == "\\":
            regex.append(re.escape(text[i]))
            i += 1
            kind = "regex"
        elif ch == "[":
            cls, i = _char_class(text, i)
            regex.append(cls)
            kind = "regex"
        elif ch == "]":
            regex.append(re.escape(ch))
            kind = "regex"
        else:
            regex.append(re.escape(ch))
        first = False
    if kind == "exact":
        return text.__eq__
    if kind == "prefix":
        head = text[:-2]
        return lambda path: path.startswith(head)
    if kind == "suffix":
        tail = text[2:]
        if tail.startswith("/"):
            return lambda path: path.endswith(tail) or path == tail[1:]
        return lambda path: path.endswith(tail)
    compiled = re.compile("".join(regex))
    return lambda path: compiled.fullmatch(path) is not None


def _char_class(text: str, i: int) -> tuple[str, int]:
    """``[...]`` starting after the ``[`` at ``i`` -> (regex class, index after ``]``)."""
    out = ["["]
    if text[i] == "^":
        out.append("^")
        i += 1
    first = True
    while not (text[i] == "]" and not first):
        lo, i = _class_char(text, i)
        hi = lo
        if text[i] == "-":
            hi, i = _class_char(text, i + 1)
        out.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
        first = False
    out.append("]")
    return "".join(out), i + 1


def _class_char(text: str, i: int) -> tuple[str, int]:
    if text[i] == "\\":
        i += 1
    return text[i], i + 1


def _check_syntax(text: str) -> None:
    """Go's ``filepath.Match`` syntax check: classes closed, not empty, ranges complete,
    no trailing ``\\``."""
    bad = ValueError("syntax error in pattern")
    i, n = 0, len(text)

    def class_char(i: int) -> int:
        if i >= n or text[i] in "-]":
            raise bad
        if text[i] == "\\":
            i += 1
            if i >= n:
                raise bad
        if i + 1 >= n:
            raise bad
        return i + 1

    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                raise bad
            i += 2
        elif ch == "[":
            i += 1
            if i < n and text[i] == "^":
                i += 1
            ranges = 0
            while not (i < n and text[i] == "]" and ranges):
                i = class_char(i)
                if text[i] == "-":
                    i = class_char(i + 1)
                ranges += 1
            i += 1
        else:
            i += 1
