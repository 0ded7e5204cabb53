"""Package versions: Debian's ordering, and deny-list entries such as ``openssl <3.0.7``.

:func:`compare` is dpkg's algorithm (``deb-version(7)``): epoch, then upstream version
and revision compared part by part, digits as numbers, ``~`` before everything (even
the end). Alpine's versions (``1.2.3-r4``) order the same way in all but exotic
suffixes (``_alpha``, ``_p``), where this is an approximation.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPS: dict[str, Callable[[int, int], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
    "==": operator.eq,
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*")
_TERM = re.compile(r"\s*(<=|>=|==|<|>|=)\s*([A-Za-z0-9.+:~_-]+)\s*")


@dataclass(frozen=True)
class Constraint:
    """A package name and the versions of it denied (all of them if ``terms`` is empty)."""

    name: str
    terms: tuple[tuple[str, str], ...]

    def matches(self, name: str, version: str) -> bool:
        if name != self.name:
            return False
        return all(_OPS[op](compare(version, bound), 0) for op, bound in self.terms)

    def __str__(self) -> str:
        return " ".join([self.name, ", ".join(f"{op}{v}" for op, v in self.terms)]).strip()


def parse_constraint(text: str) -> Constraint:
    """``telnet``, ``openssl <3.0.7``, ``libssl3 >=3.0.0, <3.0.7``; ValueError if not."""
    match = _NAME.match(text.strip())
    if not match:
        raise ValueError(f"invalid package {text!r}: expected NAME [OP VERSION[, ...]]")
    rest = text.strip()[match.end() :]
    terms = []
    for part in rest.split(",") if rest.strip() else []:
        term = _TERM.fullmatch(part)
        if not term:
            raise ValueError(f"invalid version constraint {part.strip()!r} in {text!r}")
        terms.append((term[1], term[2]))
    return Constraint(match[0], tuple(terms))


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` sorts before, with or after ``b`` (dpkg's order)."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def _split(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.partition(":")
    if not sep or not epoch.isdigit():
        epoch, rest = "0", version
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return int(epoch), upstream, revision


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            cb = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i += 1
            j += 1
        na = nb = ""
        while i < len(a) and a[i].isdigit():
            na += a[i]
            i += 1
        while j < len(b) and b[j].isdigit():
            nb += b[j]
            j += 1
        if int(na or 0) != int(nb or 0):
            return -1 if int(na or 0) < int(nb or 0) else 1
    return 0
