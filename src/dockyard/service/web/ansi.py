"""The ANSI colour state a log line starts in, as the log page's script would have it.

That is the state after rendering every line before it (``static/app.js``: ``applySgr``,
``renderLine``).

The page shows a long log from its tail and loads earlier lines on demand; the lines
it did not render may have set a colour that is still on. The server works that state
out for each source in the lines it sends, reading backwards only the chunks that
hold an escape at all, and only until each attribute (foreground, background, bold)
was last set (a full reset ``ESC[0m`` sets all three).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from dockyard.service.models import LogChunk

# The script's escape pattern: group 1 the CSI parameters, group 2 its final byte.
ESCAPE = re.compile(r"\x1b(?:\[([0-9;?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])?")
BATCH = 200  # chunks read at a time
SCAN_LINES = 20_000  # coloured lines read back at most


DEFAULT: dict[str, Any] = {"fg": 0, "bg": 0, "bold": False}


@functools.lru_cache(maxsize=4096)
def sgr_effect(params: str) -> tuple[tuple[str, Any], ...]:
    """What one SGR sequence's ``params`` do to the state, as the script's ``applySgr``.

    The value each attribute it touches ends with (a reset touches all three)."""
    codes = [int(c) if c.isdigit() else 0 for c in params.split(";")] if params else [0]
    effect: dict[str, Any] = {}
    i = 0
    while i < len(codes):
        c = codes[i]
        if c == 0:
            effect.update(DEFAULT)
        elif c in (1, 22):
            effect["bold"] = c == 1
        elif 30 <= c <= 37 or 90 <= c <= 97 or c == 39:
            effect["fg"] = 0 if c == 39 else c
        elif 40 <= c <= 47 or 100 <= c <= 107 or c == 49:
            effect["bg"] = 0 if c == 49 else c
        elif c in (38, 48):  # 256 colours or RGB: skipped with their arguments
            following = codes[i + 1] if i + 1 < len(codes) else None
            i += 2 if following == 5 else 4 if following == 2 else 0
        i += 1
    return tuple(effect.items())


def sgr_params(text: str) -> list[str]:
    """The parameters of the SGR sequences the script applies for one line.

    Only the last non-empty part after a carriage return is drawn: a progress bar's end."""
    if "\x1b" not in text:
        return []
    drawn = next((part for part in reversed(text.split("\r")) if part), "")
    return [m.group(1) or "" for m in ESCAPE.finditer(drawn) if m.group(2) == "m"]


def states_before(
    db: Session, run_id: int, step: str, bound: int, sources: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The colour state each of ``sources`` is in after the lines of the chunks before ``bound``.

    Only ``step``'s chunks count, if given; sources still at the default are left out.

    Read newest first: an attribute is known from the newest sequence that touched it,
    and a source is done once all three are. At most :data:`SCAN_LINES` coloured lines
    are read: an attribute untouched for that long is taken as the default."""
    known: dict[str, dict[str, Any]] = {source: {} for source in sources}
    unsure = set(known)
    budget, before = SCAN_LINES, bound
    while unsure and budget > 0:
        rows = db.execute(
            select(LogChunk.id, LogChunk.lines)
            .where(
                LogChunk.run_id == run_id,
                LogChunk.id < before,
                cast(LogChunk.lines, Text).contains("\\u001b", autoescape=True),
            )
            .order_by(LogChunk.id.desc())
            .limit(BATCH)
        ).all()
        if not rows:
            break
        before = rows[-1][0]
        for _, lines in rows:
            for source, text, *_ in reversed(lines):
                if source not in unsure or (step and source != step):
                    continue
                sequences = sgr_params(str(text))
                if not sequences:
                    continue
                budget -= 1
                attributes = known[source]
                for params in reversed(sequences):
                    for attribute, value in sgr_effect(params):
                        attributes.setdefault(attribute, value)
                if len(attributes) == len(DEFAULT):
                    unsure.discard(source)
    states = {source: {**DEFAULT, **attributes} for source, attributes in known.items()}
    return {source: state for source, state in states.items() if state != DEFAULT}
