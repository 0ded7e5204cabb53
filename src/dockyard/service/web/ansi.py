"""The ANSI colour state a log line starts in, as the log page's script would have it
after rendering every line before it (``static/app.js``: ``applySgr``, ``renderLine``).

The page shows a long log from its tail and loads earlier lines on demand; the lines
it did not render may have set a colour that is still on. The server works that state
out for each source in the lines it sends, reading backwards only as far as that
source's last full reset (``ESC[0m``), and only the chunks that hold an escape at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from dockyard.service.models import LogChunk

# The script's escape pattern: group 1 the CSI parameters, group 2 its final byte.
ESCAPE = re.compile(r"\x1b(?:\[([0-9;?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])?")
BATCH = 200  # chunks read at a time


def _default() -> dict[str, Any]:
    return {"fg": 0, "bg": 0, "bold": False}


def apply_sgr(params: str, state: dict[str, Any]) -> bool:
    """Change ``state`` by one SGR sequence's ``params``, as the script does; True if
    it reset everything (then nothing before it matters)."""
    codes = [int(c) if c.isdigit() else 0 for c in params.split(";")] if params else [0]
    reset, i = False, 0
    while i < len(codes):
        c = codes[i]
        if c == 0:
            state.update(_default())
            reset = True
        elif c == 1:
            state["bold"] = True
        elif c == 22:
            state["bold"] = False
        elif 30 <= c <= 37 or 90 <= c <= 97:
            state["fg"] = c
        elif c == 39:
            state["fg"] = 0
        elif 40 <= c <= 47 or 100 <= c <= 107:
            state["bg"] = c
        elif c == 49:
            state["bg"] = 0
        elif c in (38, 48):
            following = codes[i + 1] if i + 1 < len(codes) else None
            i += 2 if following == 5 else 4 if following == 2 else 0
        i += 1
    return reset


def sgr_params(text: str) -> list[str]:
    """The parameters of the SGR sequences the script applies for one line: only the
    last non-empty part after a carriage return is drawn (a progress bar's end)."""
    if "\x1b" not in text:
        return []
    drawn = next((part for part in reversed(text.split("\r")) if part), "")
    return [m.group(1) or "" for m in ESCAPE.finditer(drawn) if m.group(2) == "m"]


def states_before(
    db: Session, run_id: int, step: str, bound: int, sources: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The colour state each of ``sources`` is in after the lines of the chunks before
    ``bound`` (of ``step`` only, if given); sources left at the default are left out."""
    seen: dict[str, list[str]] = {source: [] for source in sources}  # newest first
    unsure = set(seen)  # sources whose last full reset is not reached yet
    after = bound
    while unsure:
        rows = db.execute(
            select(LogChunk.id, LogChunk.lines)
            .where(
                LogChunk.run_id == run_id,
                LogChunk.id < after,
                cast(LogChunk.lines, Text).contains("\\u001b", autoescape=True),
            )
            .order_by(LogChunk.id.desc())
            .limit(BATCH)
        ).all()
        if not rows:
            break
        after = rows[-1][0]
        for _, lines in rows:
            for source, text, *_ in reversed(lines):
                if source not in unsure or (step and source != step):
                    continue
                for params in reversed(sgr_params(str(text))):
                    seen[source].append(params)
                    if apply_sgr(params, _default()):
                        unsure.discard(source)
                        break
    states = {}
    for source, newest_first in seen.items():
        state = _default()
        for params in reversed(newest_first):
            apply_sgr(params, state)
        if state != _default():
            states[source] = state
    return states
