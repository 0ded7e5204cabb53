"""Dockerfile text -> instruction nodes, split exactly as BuildKit's parser splits them.

This layer is lexical only: parser directives at the top (``# syntax=``, ``# escape=``
with ``\\`` or a backtick, ``# check=``), comments (also between continued lines, which
are dropped), line continuations with the escape character, empty continuation lines (a
warning), the instruction word, its ``--flags``, the JSON (exec) form, and heredoc
bodies (``<<EOF``, ``<<-EOF``, quoted delimiters, several per line). What the arguments
mean is :mod:`dockyard.builder.frontend.parse`' business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace

from dockyard.builder.frontend.records import Record, record
from dockyard.builder.frontend.shell_lex import ExpansionError, Lex
from dockyard.errors import BuildError

DEFAULT_ESCAPE = "\\"

# Instructions whose arguments may be a JSON array (docker's exec form).
JSON_FORM = frozenset({"add", "copy", "cmd", "entrypoint", "run", "shell", "volume"})
_HEREDOC_FORM = frozenset({"add", "copy", "run"})

_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*\Z", re.ASCII)
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"(\d*)<<(-?)\s*([^<]*)\Z", re.ASCII)
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


@record
class BuildWarning(Record):
    """Something docker accepts but warns about (empty continuation line, unused build-arg)."""

    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else ""
        return f"{where}{self.message}"


@record
class Heredoc(Record):
    """One here-document: ``content`` is the body as written, newlines included."""

    name: str
    content: str
    expand: bool  # False when any part of the delimiter was quoted (<<"EOF", <<'EOF')
    chomp: bool  # <<-EOF: leading tabs are stripped from each line
    fd: int = 0  # 2<<EOF

    @property
    def text(self) -> str:
        """The body with ``<<-`` tab stripping applied."""
        return _LEADING_TABS.sub("", self.content) if self.chomp else self.content


@record
class Node(Record):
    """One instruction as written: a logical line plus the heredoc bodies that follow it."""

    command: str  # instruction word as written (any case)
    flags: tuple[str, ...]  # ``--name=value`` words, quotes and escapes removed
    rest: str  # the arguments after the flags, surrounding space trimmed
    original: str  # the logical line (continuations joined)
    start_line: int  # 1-based first physical line
    end_line: int  # last physical line, heredoc bodies included
    json: tuple[str, ...] | None = None  # the exec-form array, for instructions allowing it
    heredocs: tuple[Heredoc, ...] = ()
    sub: Node | None = None  # the instruction ONBUILD wraps

    @property
    def keyword(self) -> str:
        """The lower-cased instruction name."""
        return self.command.lower()


@record
class Dockerfile(Record):
    """A parsed Dockerfile: its nodes and parser directives."""

    nodes: tuple[Node, ...]
    escape: str = DEFAULT_ESCAPE
    syntax: str | None = None
    file: str | None = None
    warnings: tuple[BuildWarning, ...] = ()


def parse_json(rest: str) -> tuple[str, ...] | None:
    """The exec form: ``rest`` as a JSON array of strings, or None when it is not JSON.

    Raises ValueError for a valid JSON array holding anything but strings.
    """
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not all(isinstance(v, str) for v in value):
        raise ValueError("when using JSON array syntax, arrays must be comprised of strings only")
    return tuple(value)


def _reject_constant(name: str) -> float:
    raise ValueError(name)  # Go's JSON has no NaN/Infinity


def split_fields(rest: str) -> list[str]:
    """Arguments separated by whitespace, quotes kept (FROM, EXPOSE, shell-form COPY)."""
    return [w for w in _WHITESPACE.split(rest) if w] if rest else []


def parse_words(rest: str, escape: str) -> list[str]:
    """Whitespace-separated words where quotes group; quotes and escapes are kept.

    Used for ENV/LABEL ``key=value`` pairs and ARG; expansion removes the quotes later.
    """
    return [
        word for _, _, word, quoted in _scan_words(rest, escape, literal=True) if word or quoted
    ]


def _split_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading ``--flag[=value]`` words (quotes and escapes removed) and what follows."""
    flags: list[str] = []
    for start, end, word, quoted in _scan_words(line, escape, literal=False):
        if not line.startswith("--", start):
            return line[start:], flags
        if word == "--":
            return line[end:], flags
        if word or quoted:
            flags.append(word)
    return "", flags


def _scan_words(text: str, escape: str, *, literal: bool) -> Iterator[tuple[int, int, str, bool]]:
    """BuildKit's quote-aware word scanner: ``(start, end, word, quoted)`` for each word.

    Whitespace separates words except inside quotes; ``quoted`` says a quote was seen
    (an empty ``""`` is a word). ``literal`` keeps quotes and escapes in the word, with
    the escape character plain inside single quotes (``parseWords``); otherwise both
    are removed and the escape character escapes in any quote (``extractBuilderFlags``).
    An escape character ending the text is dropped, and ends an open quote.
    """
    word: list[str] = []
    quote = ""
    quoted = False
    start = -1  # -1: between words
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if start < 0:
            if ch.isspace():
                i += 1
                continue
            start = i
        if not quote and ch.isspace():
            yield start, i, "".join(word), quoted
            word, quoted, start = [], False, -1
            i += 1
            continue
        if ch == quote or (not quote and ch in "'\""):
            quote = "" if quote else ch  # a quote closes, or opens
            quoted = True
            if not literal:
                i += 1
                continue
        elif ch == escape and (not literal or quote != "'"):
            if i + 1 == n:
                break
            if literal:
                word.append(ch)
            i += 1
            ch = text[i]
        word.append(ch)
        i += 1
    if start >= 0:
        yield start, n, "".join(word), quoted


def heredoc_word(word: str) -> Heredoc | None:
    """The heredoc a word like ``<<EOF``, ``<<-"EOF"`` or ``2<<EOF`` opens (body empty)."""
    m = _HEREDOC.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    words = Lex(DEFAULT_ESCAPE, skip_unset_env=True).words(rest, {})
    if len(words) != 1:
        return None
    raw = Lex(DEFAULT_ESCAPE, raw_quotes=True, skip_unset_env=True).words(rest, {})
    if len(raw) != len(words):
        raise ExpansionError(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(w: str) -> int:
        return w.count("'") + w.count('"')

    fd = m.group(1)
    return Heredoc(
        name=words[0],
        content="",
        expand=quotes(words[0]) == quotes(raw[0]),
        chomp=m.group(2) == "-",
        fd=int(fd) if fd else 0,
    )


def heredoc_opening(word: str) -> Heredoc | None:
    """:func:`heredoc_word`, with None for a word the shell lexer cannot split either."""
    try:
        return heredoc_word(word)
    except ExpansionError:
        return None


def _heredocs_in(line: str) -> list[Heredoc]:
    lex = Lex(DEFAULT_ESCAPE, raw_quotes=True, raw_escapes=True, skip_unset_env=True)
    try:
        words = lex.words(line, {})
    except ExpansionError:
        return []  # an unbalanced quote: BuildKit finds no heredoc either
    docs = (heredoc_word(w) for w in words)
    return [d for d in docs if d is not None]


class _Directives:
    """The ``# key=value`` lines allowed before anything else."""

    def __init__(self) -> None:
        self.done = False
        self.values: dict[str, str] = {}

    def take(self, line: str) -> bool:
        """True when ``line`` (leading space stripped) is a directive; record it."""
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        m = _DIRECTIVE.match(line[1:].lstrip())
        if not m or m.group(1).lower() not in _KNOWN_DIRECTIVES:
            self.done = True
            return False
        key = m.group(1).lower()
        if key in self.values:
            raise ValueError(f"only one {key} parser directive can be used")
        if key == "escape" and m.group(2) not in ("`", "\\"):
            raise ValueError(f"invalid escape token '{m.group(2)}' does not match ` or \\")
        self.values[key] = m.group(2)
        return True


def _physical_lines(text: str) -> list[str]:
    """Lines with their ``\\n`` kept (a final line may lack one)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


class _Parser:
    def __init__(self, text: str, file: str | None):
        self.lines = _physical_lines(text.removeprefix("\ufeff"))
        self.file = file
        self.pos = 0  # lines consumed so far == number of the last line read
        self.directives = _Directives()
        self.escape = DEFAULT_ESCAPE
        self.continuation = self._continuation_regex()
        self.warnings: list[BuildWarning] = []

    def error(self, message: str, line: int | None) -> BuildError:
        return BuildError(message, self.file, line)

    def _continuation_regex(self) -> re.Pattern[str]:
        e = re.escape(self.escape)
        return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        """Drop a trailing escape character; True when the instruction ends here."""
        m = self.continuation.search(line)
        if not m:
            return line, True
        return line[: m.start()] + (m.group(1) or ""), False

    def _process(self, raw: str, strip_left: bool) -> str:
        line = raw.rstrip("\r\n")
        if strip_left:
            line = line.lstrip()
        try:
            if self.directives.take(line) and "escape" in self.directives.values:
                self.escape = self.directives.values["escape"]
                self.continuation = self._continuation_regex()
        except ValueError as e:
            raise self.error(str(e), self.pos) from None
        return "" if _is_comment(line) else line

    def _next_line(self) -> str:
        self.pos += 1
        return self.lines[self.pos - 1]

    def parse(self) -> Dockerfile:
        nodes: list[Node] = []
        while self.pos < len(self.lines):
            line = self._process(self._next_line(), strip_left=True)
            start = self.pos
            line, ended = self._trim_continuation(line)
            if ended and not line:
                continue
            parts = [line]
            empty_continuation = False
            while not ended and self.pos < len(self.lines):
                raw = self._next_line()
                line = self._process(raw, strip_left=False)
                if _is_comment(raw):
                    continue
                if not line.strip():
                    empty_continuation = True
                    continue
                line, ended = self._trim_continuation(line)
                parts.append(line)
            logical = "".join(parts)
            if empty_continuation:
                self.warnings.append(
                    BuildWarning(
                        f"Empty continuation line found in: {logical}", self.file, self.pos
                    )
                )
            nodes.append(self._node(logical, start))
        if not nodes:
            raise self.error("file with no instructions", None)
        return Dockerfile(
            nodes=tuple(nodes),
            escape=self.escape,
            syntax=self.directives.values.get("syntax"),
            file=self.file,
            warnings=tuple(self.warnings),
        )

    def _node(self, logical: str, start: int) -> Node:
        try:
            node = split_instruction(logical, self.escape, start)
        except ValueError as e:
            raise self.error(str(e), start) from None
        node = replace(node, end_line=self.pos)
        target = node.sub if node.keyword == "onbuild" and node.sub else node
        if target.keyword not in _HEREDOC_FORM or target.json is not None or "<<" not in logical:
            return node
        try:
            openings = _heredocs_in(logical)
        except ExpansionError as e:
            raise self.error(str(e), start) from None
        docs = []
        for doc in openings:
            body = []
            while True:
                if self.pos == len(self.lines):
                    raise self.error("unterminated heredoc", start)
                raw = self._next_line()
                candidate = raw.rstrip("\r\n")
                if doc.chomp:
                    candidate = candidate.lstrip("\t")
                if candidate == doc.name:
                    break
                body.append(raw)
            docs.append(Heredoc(doc.name, "".join(body), doc.expand, doc.chomp, doc.fd))
        return replace(node, end_line=self.pos, heredocs=tuple(docs))


def split_instruction(line: str, escape: str, line_no: int) -> Node:
    """One logical line -> a Node (no heredoc bodies); ValueError for bad exec-form JSON."""
    command, *args = _WHITESPACE.split(line.strip(), maxsplit=1)
    rest, flags = _split_flags(args[0], escape) if args else ("", [])
    rest = rest.strip()
    keyword = command.lower()
    sub = None
    if keyword == "onbuild" and rest:
        sub = split_instruction(rest, escape, line_no)
    return Node(
        command=command,
        flags=tuple(flags),
        rest=rest,
        original=line,
        start_line=line_no,
        end_line=line_no,
        json=parse_json(rest) if keyword in JSON_FORM else None,
        sub=sub,
    )


def parse(text: str, file: str | None = None) -> Dockerfile:
    """Parse Dockerfile ``text``; ``file`` names it in errors (``Dockerfile:3: ...``)."""
    return _Parser(text, file).parse()
