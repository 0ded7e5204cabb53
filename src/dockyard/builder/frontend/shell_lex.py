r"""Variable expansion and word splitting, exactly as BuildKit's Dockerfile shell lexer.

Supported: ``$V``, ``${V}``, ``${V:-word}``, ``${V-word}``, ``${V:+word}``, ``${V+word}``,
``${V:?msg}``, ``${V?msg}`` (errors), ``${V#pat}``, ``${V##pat}``, ``${V%pat}``,
``${V%%pat}`` (``*``/``?`` globs), ``${V/pat/repl}`` and ``${V//pat/repl}``. The ``:``
forms treat an empty value like an unset one. Outside quotes the escape character (``\``
or the ``# escape=`` one) makes the next character literal; single quotes keep everything
literal; double quotes expand ``$`` and let the escape character protect ``"``, ``$`` and
itself. Unset variables expand to nothing. Positional and special parameters (``$1``,
``$@``, ``$#`` ...) are never set.

Word splitting (:meth:`Lex.words`) happens after expansion, on unquoted whitespace only,
which is what EXPOSE and heredoc detection use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from dockyard.builder.frontend.golang import quote
from dockyard.builder.frontend.records import Record, record


class ExpansionError(ValueError):
    """A malformed expression (``${V``, ``${V:=x}``) or ``${V?msg}`` with V unset."""


@record
class Expansion(Record):
    """The outcome of expanding one string."""

    result: str
    words: list[str]
    matched: frozenset[str]  # variables looked up and found
    unmatched: frozenset[str]  # variables looked up and not set


_SPECIAL_PARAMS = "@*#?-$!0"


def _is_space(ch: str) -> bool:
    return ch.isspace()


def _is_digit(ch: str) -> bool:
    return unicodedata.category(ch) == "Nd"


class _Words:
    """Collects words while expanding; unquoted whitespace separates them."""

    def __init__(self, buf: list[str]):
        # BuildKit shares one buffer between nested ``${...}`` scans (a prefix written
        # before a nested modifier expression is dropped from the word); we keep that.
        self.buf = buf
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if _is_space(ch):
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        if text:
            self.buf.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()
            self.in_word = False
        return self.words


class _Scan:
    """One expansion run over ``text``: a cursor plus the variables seen."""

    def __init__(self, lex: Lex, text: str, env: Mapping[str, str]):
        self.lex = lex
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes
        self.words_buf: list[str] = []
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def until(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        """Expand up to (and consuming) ``stop``, or to the end when ``stop`` is None."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._until(stop)
        finally:
            self.raw_escapes = saved

    def _until(self, stop: str | None) -> tuple[str, list[str]]:
        lex = self.lex
        result: list[str] = []
        self.words_buf.clear()
        words = _Words(self.words_buf)
        while self.peek():
            ch = self.peek()
            if stop is not None and ch == stop:
                self.next()
                return "".join(result), words.finish()
            if ch == "$":
                value = self.dollar()
                result.append(value)
                words.add_string(value)
            elif ch == "<":
                value = self.possible_heredoc()
                result.append(value)
                words.add_raw(value)
            elif ch in "'\"" and not lex.skip_process_quotes:
                value = self.single_quote() if ch == "'" else self.double_quote()
                result.append(value)
                words.add_raw(value)
            else:
                ch = self.next()
                if ch == lex.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def single_quote(self) -> str:
        out = []
        opening = self.next()
        if self.lex.raw_quotes:
            out.append(opening)
        while True:
            ch = self.next()
            if not ch:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        out = []
        opening = self.next()
        if self.lex.raw_quotes:
            out.append(opening)
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.lex.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.lex.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        """A variable name: letters/digits/_ , a run of digits, or one special parameter."""
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if not out and _is_digit(ch):
                while self.peek() and _is_digit(self.peek()):
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or _is_digit(ch) or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def dollar(self) -> str:
        lex = self.lex
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and lex.skip_unset_env:
                return "$" + name
            return value

        self.next()
        if not self.peek():
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        modifier = ch
        if ch == "}":
            value, found = self.get_env(name)
            if not found and lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self.replace(name)
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch not in ("+", "-", "?", "#", "%") or not ch:
            if not ch and not null_is_unset:
                raise ExpansionError("syntax error: missing '}'")
            if not null_is_unset:
                raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        trims = ch in ("#", "%")
        if null_is_unset and trims:
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = self.until("}", trims)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value, is_set = self.get_env(name)
        if lex.skip_unset_env and not is_set:
            return "${" + name + modifier + word + "}"
        unset = not is_set or (null_is_unset and value == "")
        if ch == "-":
            return word if unset else value
        if ch == "+":
            return "" if unset else word
        if ch == "?":
            if not is_set:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("#", "%"):
            greedy = word[:1] == ch
            if greedy:
                word = word[1:]
            return (
                _trim_suffix(word, value, greedy)
                if ch == "%"
                else _trim_prefix(word, value, greedy)
            )
        raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")

    def replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.until("/", True)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.until("}", True)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        value, is_set = self.get_env(name)
        if self.lex.skip_unset_env and not is_set:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda m: _go_expand(replacement, m), value)
        m = regex.search(value)
        if m:
            value = value[: m.start()] + replacement + value[m.end() :]
        return value

    def possible_heredoc(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        space = []
        while self.peek() in ("\t", "\r", " "):
            space.append(self.next())
        return "<<" + "".join(space)


_GO_TEMPLATE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _go_expand(template: str, m: re.Match[str]) -> str:
    """Go's Regexp.Expand for ReplaceAllString: ``$0``/``${0}`` the match, ``$$`` a dollar,
    other ``$name`` references nothing (our patterns have no groups)."""

    def ref(t: re.Match[str]) -> str:
        name = t.group(1) or t.group(2)
        if name is None:
            return "$"
        return m.group(0) if name.isascii() and name.isdigit() and int(name) == 0 else ""

    return _GO_TEMPLATE.sub(ref, template)


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell glob (``*``, ``?``, ``\\`` escapes; no ``[...]``) as a regex."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i : i + 1]
            if following in ("}", "/"):
                continue
            i += 1
            if following not in ("*", "?", "\\"):
                raise ExpansionError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'"
                )
            out.append("\\" + following)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a glob keeping escapes in front of what they escape (``a\\*c`` -> ``c\\*a``)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(reversed(out))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # a regex finds the leftmost match, so reverse both to find the rightmost suffix
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


class Lex:
    """A configured lexer; ``escape`` is the Dockerfile's escape character.

    The flags mirror BuildKit's: ``raw_quotes`` keeps quote characters in the result,
    ``raw_escapes`` keeps escape characters, ``skip_process_quotes`` treats quotes as
    ordinary characters, ``skip_unset_env`` leaves references to unset variables as
    written.
    """

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_process_quotes: bool = False,
        skip_unset_env: bool = False,
    ):
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_process_quotes = skip_process_quotes
        self.skip_unset_env = skip_unset_env

    def process(self, text: str, env: Mapping[str, str]) -> Expansion:
        """Expand ``text``; raise :class:`ExpansionError` naming the input on bad syntax."""
        scan = _Scan(self, text, env)
        try:
            result, words = scan.until(None, self.raw_escapes)
        except ExpansionError as e:
            raise ExpansionError(f"failed to process {quote(text)}: {e}") from None
        return Expansion(result, words, frozenset(scan.matched), frozenset(scan.unmatched))

    def expand(self, text: str, env: Mapping[str, str]) -> str:
        """``ProcessWord``: the expanded string with quotes removed."""
        return self.process(text, env).result

    def words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """``ProcessWords``: the expanded text split on unquoted whitespace."""
        return self.process(text, env).words
