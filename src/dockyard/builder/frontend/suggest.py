"""Suggestions for a misspelt name ("did you mean ...?"), as BuildKit's ``util/suggest``.

BuildKit suggests the closest of the names it knows (instructions, flags, ``--mount``
keys, mount types, sharing modes, ``--target`` stages) by edit distance (insert,
delete, substitute: one each), when that distance is below 3; an exact match means the
name was not the problem, so nothing is suggested. Errors then read
``unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)``.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_DISTANCE = 2
"""The farthest a suggestion may be (BuildKit's ``mindist`` of 3, exclusive)."""


def edit_distance(a: str, b: str) -> int:
    """The Levenshtein distance between ``a`` and ``b``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def closest(value: str, options: Iterable[str], *, case_sensitive: bool = True) -> str | None:
    """The option nearest ``value`` (the first of equally near ones).

    None when none is near enough or ``value`` is one of them. Without ``case_sensitive`` names are
    compared in lower case and the suggestion takes ``value``'s case (all upper, all lower, else
    lower)."""
    wanted = value if case_sensitive else value.lower()
    match, best = None, MAX_DISTANCE + 1
    for option in options:
        candidate = option if case_sensitive else option.lower()
        if candidate == wanted:
            return None
        distance = edit_distance(wanted, candidate)
        if distance < best:
            match, best = candidate, distance
    if match is None or case_sensitive:
        return match
    shouting = value != value.lower() and value == value.upper()
    return match.upper() if shouting else match


def did_you_mean(
    message: str, value: str, options: Iterable[str], *, case_sensitive: bool = True
) -> str:
    """``message`` with `` (did you mean X?)`` added when an option is near ``value``."""
    match = closest(value, options, case_sensitive=case_sensitive)
    return f"{message} (did you mean {match}?)" if match else message
